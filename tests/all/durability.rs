//! Crash durability: the server is killed with SIGKILL in the middle of a write load, again
//! and again; after each restart every write that got a success response is there and
//! intact, and a reader running through the kill never saw a half-applied request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Client, Server};

const RULES: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0

[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "email", local_part = true, case = "lower" }

[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { defaults = { all_users = ["app-users"] } }
"#;

/// What the writers know: per IdP user id, its email and the titles it was sent (the last
/// acknowledged one, and one more that may have committed without its answer arriving).
#[derive(Default)]
struct Ledger {
    users: HashMap<String, (String, String, Option<String>)>,
}

/// One directory user as the application sees it is whole: the username rule and the group
/// rule both applied (they are written in the same transaction as the IdP's user).
fn assert_whole(u: &serde_json::Value) {
    let name = u["userName"].as_str().unwrap();
    assert!(name == name.to_lowercase() && !name.contains('@'), "username rule not applied: {u}");
    let groups: Vec<&str> = u["groups"].as_array().unwrap().iter().map(|g| g["display"].as_str().unwrap()).collect();
    assert!(groups.contains(&"app-users"), "half-applied: a user without its rule grant: {u}");
}

#[test]
fn acknowledged_writes_survive_sigkill_and_no_reader_sees_half_a_request() {
    let rounds: usize = std::env::var("MW_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let mut s = Server::start_with(RULES);
    let mut okta = s.declared("acme", "okta");
    let app = s.admin(&s.admin_token()).post("/tenants/acme/tokens", &json!({"name": "app"})).body["token"].as_str().unwrap().to_string();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let (okta, ledger, stop) = (okta.clone(), ledger.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut mine: Vec<String> = Vec::new();
                    for i in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let email = format!("r{round}.w{w}.u{i}@acme.com");
                        let body = json!({"userName": email, "emails": [{"value": email}], "title": "t0"});
                        let Some(r) = okta.try_send("POST", "/Users", Some(&body)).filter(|r| r.status == 201) else {
                            return; // the server is gone
                        };
                        let id = r.id();
                        ledger.lock().unwrap().users.insert(id.clone(), (email, "t0".into(), None));
                        mine.push(id);
                        // Update an earlier user of this writer: the ledger notes the title in
                        // flight before sending, and moves it to acknowledged on success.
                        let target = mine[i % mine.len()].clone();
                        let title = format!("t{}", i + 1);
                        ledger.lock().unwrap().users.get_mut(&target).unwrap().2 = Some(title.clone());
                        let ops = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": title}]});
                        if okta.try_send("PATCH", &format!("/Users/{target}"), Some(&ops)).is_none_or(|r| r.status != 200) {
                            return;
                        }
                        let mut l = ledger.lock().unwrap();
                        let e = l.users.get_mut(&target).unwrap();
                        e.1 = title;
                        e.2 = None;
                    }
                })
            })
            .collect();
        // A reader of the directory through the kill: every user it sees is whole.
        let reader = {
            let (dir, stop) = (Client::new(format!("{}/directory/v1/acme", s.url), app.clone()), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::SeqCst) {
                    let Some(r) = dir.try_send("GET", "/Users?count=50&sortBy=meta.created&sortOrder=descending", None).filter(|r| r.status == 200) else {
                        break;
                    };
                    r.body["Resources"].as_array().unwrap().iter().for_each(assert_whole);
                    reads += 1;
                }
                reads
            })
        };
        std::thread::sleep(Duration::from_millis(400 + 60 * round as u64));
        s = s.crash_and_restart(RULES);
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
        reader.join().unwrap();
        okta = okta.rebased(&s);

        // Every acknowledged create is there with what it was sent; every acknowledged title
        // is the one stored, or the one sent after it whose answer the kill swallowed.
        let l = ledger.lock().unwrap();
        for (id, (email, acked, in_flight)) in &l.users {
            let r = okta.get(&format!("/Users/{id}"));
            assert_eq!(r.status, 200, "round {round}: acknowledged user {email} lost");
            assert_eq!(r.body["userName"], email.as_str());
            let title = r.body["title"].as_str().unwrap();
            assert!(title == acked || Some(title) == in_flight.as_deref(), "round {round}: {email} has title {title}, acknowledged {acked}, in flight {in_flight:?}");
        }
        // Nothing half-applied after the crash either: the IdP's users and the directory's
        // entries match one to one, each entry whole.
        let dir = Client::new(format!("{}/directory/v1/acme", s.url), app.clone());
        let idp_total = okta.get("/Users?count=0").body["totalResults"].as_u64().unwrap();
        let mut start = 1;
        loop {
            let page = dir.get(&format!("/Users?count=1000&startIndex={start}"));
            assert_eq!(page.body["totalResults"].as_u64().unwrap(), idp_total, "round {round}: IdP view and directory disagree");
            let items = page.body["Resources"].as_array().unwrap();
            items.iter().for_each(assert_whole);
            start += items.len();
            if items.is_empty() || start as u64 > idp_total {
                break;
            }
        }
        assert!(idp_total as usize >= l.users.len(), "round {round}");
    }
    assert!(ledger.lock().unwrap().users.len() > rounds * 10, "the load wrote too little to prove anything");
}
