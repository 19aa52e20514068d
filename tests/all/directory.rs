//! The directory API the application reads (`/directory/v1`): effective users and groups
//! after the rules, SCIM filters and paging, the change feed (order, exactly once, across
//! restarts, long poll, expiry) and who may read what.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::harness::{Client, Resp, Server, enc};

pub(crate) const RULES: &str = r#"
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
config = { map = { "dev users" = "software_dev" }, defaults = { all_users = ["app-users"] } }

[[tenant]]
name = "globex"

[[tenant.idp]]
name = "entra"
kind = "entra"
rate_per_second = 0
"#;

/// A directory token for `tenant`, made over the admin API.
pub(crate) fn directory_token(s: &Server, tenant: &str) -> String {
    let r = s.admin(&s.admin_token()).post(&format!("/tenants/{tenant}/tokens"), &json!({"name": "app"}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["role"], "directory");
    let token = r.body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("mwd_"));
    token
}

fn reader(s: &Server, tenant: &str) -> Client {
    Client::new(format!("{}/directory/v1/{tenant}", s.url), directory_token(s, tenant))
}

fn names(r: &Resp, key: &str) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["Resources"].as_array().unwrap().iter().map(|u| u[key].as_str().unwrap().to_string()).collect()
}

fn okta_user(okta: &Client, email: &str, title: &str) -> String {
    let r = okta.post("/Users", &json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email, "title": title, "active": true,
        "emails": [{"value": email, "type": "work", "primary": true}],
    }));
    assert_eq!(r.status, 201, "{}", r.body);
    r.id()
}

#[test]
fn the_application_reads_users_and_groups_as_the_rules_made_them() {
    let s = Server::start_with(RULES);
    let okta = s.declared("acme", "okta");
    let jane = okta_user(&okta, "Jane.Doe@acme.com", "Engineer");
    let bob = okta_user(&okta, "bob@acme.com", "Manager");
    okta_user(&okta, "carol@acme.com", "Engineer");
    okta.group("Dev users", &[&jane, &bob]);
    assert_eq!(okta.patch(&format!("/Users/{bob}"), json!([{"op": "replace", "path": "active", "value": false}])).status, 200);
    let dir = reader(&s, "acme");

    let all = dir.get("/Users?sortBy=userName");
    assert_eq!(names(&all, "userName"), ["bob", "carol", "jane.doe"], "usernames as the username rule made them");
    assert_eq!(all.body["totalResults"], 3);
    assert!(all.body["cursor"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    let jane_dir = all.body["Resources"][2].clone();
    assert_eq!(jane_dir["title"], "Engineer");
    assert_eq!(jane_dir["active"], true);
    assert_ne!(jane_dir["id"], json!(jane), "the directory's id is its own, not the IdP's");
    let groups: Vec<&str> = jane_dir["groups"].as_array().unwrap().iter().map(|g| g["display"].as_str().unwrap()).collect();
    assert_eq!(groups, ["app-users", "software_dev"], "mapped group and default group");
    assert_eq!(jane_dir["meta"]["location"], format!("{}/Users/{}", dir.base, jane_dir["id"].as_str().unwrap()));

    // The SCIM filter language, over the directory.
    let q = |f: &str| names(&dir.get(&format!("/Users?sortBy=userName&filter={}", enc(f))), "userName");
    assert_eq!(q(r#"userName eq "JANE.DOE""#), ["jane.doe"], "userName is case-insensitive");
    assert_eq!(q(r#"groups.display eq "software_dev""#), ["bob", "jane.doe"]);
    assert_eq!(q(r#"groups[display eq "software_dev"] and active eq true"#), ["jane.doe"]);
    assert_eq!(q("active eq false"), ["bob"]);
    assert_eq!(q(r#"title eq "Engineer" and not (userName sw "j")"#), ["carol"]);
    assert_eq!(q(r#"emails[type eq "work" and value ew "@acme.com"]"#).len(), 3);
    assert_eq!(q(&format!(r#"id eq "{}""#, jane_dir["id"].as_str().unwrap())), ["jane.doe"]);
    let page = dir.get("/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=1");
    assert_eq!(names(&page, "userName"), ["carol"]);
    assert_eq!((page.body["totalResults"].as_u64(), page.body["startIndex"].as_u64()), (Some(3), Some(2)));
    let slim = dir.get("/Users?attributes=userName&count=1");
    assert_eq!(slim.body["Resources"][0].as_object().unwrap().keys().collect::<Vec<_>>().len(), 3, "{}", slim.body);

    // One user; groups with members; a group by member.
    let one = dir.get(&format!("/Users/{}", jane_dir["id"].as_str().unwrap()));
    assert_eq!(one.body, jane_dir);
    let gl = dir.get("/Groups?sortBy=displayName");
    assert_eq!(names(&gl, "displayName"), ["app-users", "software_dev"]);
    let dev = &gl.body["Resources"][1];
    let members: Vec<&str> = dev["members"].as_array().unwrap().iter().map(|m| m["display"].as_str().unwrap()).collect();
    assert_eq!(members, ["bob", "jane.doe"]);
    let lean = dir.get("/Groups?excludedAttributes=members");
    assert!(lean.body["Resources"].as_array().unwrap().iter().all(|g| g.get("members").is_none()));
    let by_member = dir.get(&format!("/Groups?filter={}", enc(&format!(r#"members.value eq "{}""#, jane_dir["id"].as_str().unwrap()))));
    assert_eq!(names(&by_member, "displayName").len(), 2);
    let g = dir.get(&format!("/Groups/{}?excludedAttributes=members", dev["id"].as_str().unwrap()));
    assert_eq!((g.status, g.body["displayName"].as_str(), g.body.get("members")), (200, Some("software_dev"), None));

    // Bad input is a clear error.
    for (path, status, needle) in [
        ("/Users?filter=userName%20eq", 400, "expected a value"),
        ("/Users?filter=nonsense%20eq%20%221%22", 400, "nonsense"),
        ("/Users?sortOrder=sideways", 400, "sortOrder"),
        ("/Users/no-such-id", 404, "no user"),
        ("/Groups/no-such-id", 404, "no group"),
        ("/Nothing", 404, "no such directory endpoint"),
    ] {
        let r = dir.get(path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains(needle), "{path}: {}", r.body);
    }
}

/// Reads the feed from `since` in pages of `limit` until it is drained.
pub(crate) fn drain(dir: &Client, since: &str, limit: usize) -> (Vec<Value>, String) {
    let (mut out, mut cursor) = (Vec::new(), since.to_string());
    loop {
        let r = dir.get(&format!("/changes?since={cursor}&limit={limit}"));
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.body["changes"].as_array().unwrap().clone();
        assert!(page.len() <= limit);
        cursor = r.body["cursor"].as_str().unwrap().to_string();
        let more = r.body["more"].as_bool().unwrap();
        out.extend(page);
        if !more {
            return (out, cursor);
        }
    }
}

fn summary(changes: &[Value]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            let parts = [c["type"].as_str(), c["user"]["userName"].as_str(), c["group"]["displayName"].as_str()];
            parts.into_iter().flatten().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

#[test]
fn the_change_feed_gives_every_change_once_in_order_across_restarts() {
    let s = Server::start_with(RULES);
    let okta = s.declared("acme", "okta");
    let globex = s.declared("globex", "entra");
    let dir = reader(&s, "acme");
    let start = dir.get("/Users");
    let cursor = start.body["cursor"].as_str().unwrap().to_string();
    let now = dir.get("/changes");
    assert_eq!((now.body["cursor"].as_str(), now.body["changes"].as_array().map(Vec::len)), (Some(cursor.as_str()), Some(0)), "no since: the cursor of now");

    let jane = okta_user(&okta, "jane@acme.com", "Engineer");
    globex.user("someone@globex.com");
    let dev = okta.group("Dev users", &[&jane]);
    assert_eq!(okta.patch(&format!("/Users/{jane}"), json!([{"op": "replace", "path": "title", "value": "Lead"}])).status, 200);
    // A write that changes nothing the application sees is not news.
    assert_eq!(okta.patch(&format!("/Users/{jane}"), json!([{"op": "replace", "path": "title", "value": "Lead"}])).status, 200);
    assert_eq!(okta.patch(&format!("/Groups/{dev}"), json!([{"op": "remove", "path": format!("members[value eq \"{jane}\"]")}])).status, 204);
    assert_eq!(okta.patch(&format!("/Users/{jane}"), json!([{"op": "replace", "path": "active", "value": false}])).status, 200);

    let (changes, next) = drain(&dir, &cursor, 2);
    assert_eq!(
        summary(&changes),
        [
            "user.created jane",
            "group.created app-users",
            "membership.added jane app-users",
            "group.created software_dev",
            "membership.added jane software_dev",
            "user.updated jane",
            "membership.removed jane software_dev",
            "user.updated jane",
        ],
        "{changes:#?}"
    );
    let seqs: Vec<u64> = changes.iter().map(|c| c["cursor"].as_str().unwrap().parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "strictly ordered: {seqs:?}");
    assert_eq!(changes[0]["user"]["title"], "Engineer", "a user event carries the state it left, not today's");
    assert_eq!(changes[5]["user"]["title"], "Lead");
    assert_eq!(changes[7]["user"]["active"], false);
    assert!(changes.iter().all(|c| c.to_string().find("globex").is_none()), "another tenant's changes never show");
    assert_eq!(dir.get(&format!("/changes?since={next}")).body["changes"], json!([]), "drained");

    // The cursor survives a restart; the feed goes on from it without a gap or a repeat.
    let s = s.restart(RULES);
    let okta = okta.rebased(&s);
    let dir = Client::new(format!("{}/directory/v1/acme", s.url), dir.token.clone());
    assert_eq!(okta.delete(&format!("/Users/{jane}")).status, 204);
    let (after, _) = drain(&dir, &next, 100);
    assert_eq!(summary(&after), ["user.deleted jane"], "{after:#?}");
    let (again, _) = drain(&dir, &cursor, 3);
    assert_eq!(again.len(), changes.len() + 1);
    let unique: HashSet<&str> = again.iter().map(|c| c["cursor"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), again.len(), "never a change twice");

    // Long poll: an empty answer waits for the next change and carries it.
    let (_, head) = drain(&dir, &cursor, 100);
    let waiting = {
        let dir = dir.clone();
        let head = head.clone();
        std::thread::spawn(move || dir.get(&format!("/changes?since={head}&wait=30")))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    okta_user(&okta, "late@acme.com", "Engineer");
    let woke = waiting.join().unwrap();
    assert_eq!(woke.status, 200);
    assert!(summary(woke.body["changes"].as_array().unwrap()).contains(&"user.created late".to_string()), "{}", woke.body);

    for (q, needle) in [("since=abc", "cursor"), ("since=-1", "cursor"), ("since=0&limit=0", "limit"), ("since=0&limit=5000", "limit"), ("since=0&wait=600", "wait"), ("since=0&bogus=1", "bogus")] {
        let r = dir.get(&format!("/changes?{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains(needle), "{q}: {}", r.body);
    }
}

#[test]
fn a_cursor_older_than_the_retained_changes_is_told_to_list_again() {
    let s = Server::start_with(&format!("purge_interval_secs = 1\nchange_retention_secs = 1\n{RULES}"));
    let okta = s.declared("acme", "okta");
    let dir = reader(&s, "acme");
    okta.user("old@acme.com");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let expired = loop {
        let r = dir.get("/changes?since=0");
        if r.status == 410 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(expired.status, 410, "{}", expired.body);
    assert!(expired.body["error"]["message"].as_str().unwrap().contains("list the directory again"));
    // Listing gives a fresh cursor that works.
    let cursor = dir.get("/Users").body["cursor"].as_str().unwrap().to_string();
    okta.user("new@acme.com");
    let (changes, _) = drain(&dir, &cursor, 10);
    assert!(summary(&changes).contains(&"user.created new".to_string()), "{changes:#?}");
}

#[test]
fn only_directory_and_admin_tokens_read_and_only_their_tenant() {
    let s = Server::start_with(RULES);
    let okta = s.declared("acme", "okta");
    okta.user("a@acme.com");
    let url = |t: &str| format!("{}/directory/v1/{t}", s.url);
    let acme_app = directory_token(&s, "acme");
    let read = |tenant: &str, token: &str| Client::new(url(tenant), token.to_string()).get("/Users");
    assert_eq!(read("acme", &acme_app).status, 200);
    assert_eq!(read("globex", &acme_app).status, 403, "a tenant's token stays in its tenant");
    assert_eq!(read("acme", "").status, 401);
    assert!(read("acme", "").headers.get("www-authenticate").is_some());
    assert_eq!(read("acme", &okta.token).status, 401, "an IdP token never reads the directory");
    // A directory token reads; it administers nothing.
    let as_admin = s.admin(&acme_app);
    assert_eq!(as_admin.get("/tenants").status, 401);
    assert_eq!(as_admin.get("/tenants/acme/audit").status, 401);
    let forged = s.admin(&acme_app.replacen("mwd_", "mwa_", 1));
    assert_eq!(forged.get("/tenants/acme/audit").status, 401, "the stored role decides, not the prefix");
    assert_eq!(read("acme", &s.admin_token()).status, 200, "a global admin reads every directory");
    // A tenant-scoped admin reads its own directory and mints tokens for its tenant only.
    let out = s.cli(&["admin-token", "acme-ops", "--tenant", "acme"]);
    let scoped = String::from_utf8_lossy(&out.stdout).split(": ").last().unwrap().trim().to_string();
    assert_eq!(read("acme", &scoped).status, 200);
    assert_eq!(read("globex", &scoped).status, 403);
    let ops = s.admin(&scoped);
    assert_eq!(ops.post("/tenants/globex/tokens", &json!({"name": "x"})).status, 403);
    assert_eq!(ops.post("/tenants/acme/tokens", &json!({"name": "x", "role": "root"})).status, 400);
    assert_eq!(ops.post("/tenants/acme/tokens", &json!({"name": "Bad Name"})).status, 400);
    assert_eq!(ops.post("/tenants/acme/tokens", &json!({"nmae": "x"})).status, 400);
    // The CLI makes directory tokens too.
    let out = s.cli(&["admin-token", "app2", "--tenant", "globex", "--directory"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let globex_app = String::from_utf8_lossy(&out.stdout).split(": ").last().unwrap().trim().to_string();
    assert!(globex_app.starts_with("mwd_"));
    assert_eq!(read("globex", &globex_app).status, 200);
    assert_eq!(read("acme", &globex_app).status, 403);
    assert_eq!(Client::new(url("acme"), globex_app).get("/changes?since=0").status, 403);
}

#[test]
fn a_follower_reading_during_concurrent_writes_misses_nothing_and_sees_nothing_twice() {
    let s = Server::start_with(RULES);
    let okta = s.declared("acme", "okta");
    let dir = reader(&s, "acme");
    let start = dir.get("/changes").body["cursor"].as_str().unwrap().to_string();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The follower reads small pages while the writers commit in groups.
    let follower = {
        let (dir, done) = (dir.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut seen, mut cursor) = (Vec::<Value>::new(), start);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let (page, next) = drain(&dir, &cursor, 7);
                seen.extend(page);
                cursor = next;
                if finished {
                    return seen;
                }
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let okta = okta.clone();
            std::thread::spawn(move || (0..25).map(|i| okta.user(&format!("w{w}.u{i}@acme.com"))).count())
        })
        .collect();
    let written: usize = writers.into_iter().map(|h| h.join().unwrap()).sum();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = follower.join().unwrap();
    let created: Vec<&str> = seen.iter().filter(|c| c["type"] == "user.created").map(|c| c["user"]["userName"].as_str().unwrap()).collect();
    let distinct: HashSet<&str> = created.iter().copied().collect();
    assert_eq!((created.len(), distinct.len()), (written, written), "every create exactly once");
    let seqs: Vec<u64> = seen.iter().map(|c| c["cursor"].as_str().unwrap().parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
}

#[test]
fn a_waiting_follower_does_not_hold_up_a_graceful_shutdown() {
    let mut s = Server::start_with(RULES);
    let dir = reader(&s, "acme");
    let head = dir.get("/changes").body["cursor"].as_str().unwrap().to_string();
    let waiting = std::thread::spawn(move || dir.get(&format!("/changes?since={head}&wait=60")));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // `terminate` fails the test if the server takes more than 10 s to drain and exit.
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    let answered = waiting.join().unwrap();
    assert_eq!((answered.status, answered.body["changes"].as_array().map(Vec::len)), (200, Some(0)), "answered, empty, as the server drained");
}
