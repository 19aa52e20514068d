//! Races between IdPs and retries: exactly one winner, no 500s, no lost updates.

use std::sync::{Arc, Barrier};

use serde_json::json;

use crate::harness::Server;

#[test]
fn concurrent_creates_of_one_username_give_one_201() {
    let s = Server::start();
    let okta = s.idp("acme", "okta", "okta");
    let entra = s.idp("acme", "entra", "entra");
    for round in 0..5 {
        let name = format!("race{round}@acme.com");
        let barrier = Arc::new(Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let c = if i % 2 == 0 { okta.clone() } else { entra.clone() };
                let (b, name) = (barrier.clone(), name.clone());
                std::thread::spawn(move || {
                    b.wait();
                    let r = c.post("/Users", &json!({"userName": name}));
                    if r.status == 409 {
                        assert_eq!(r.body["scimType"], "uniqueness");
                    }
                    r.status
                })
            })
            .collect();
        let mut statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        statuses.sort();
        assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
    }
    let total = okta.get("/Users").body["totalResults"].as_u64().unwrap() + entra.get("/Users").body["totalResults"].as_u64().unwrap();
    assert_eq!(total, 5);
}

#[test]
fn concurrent_patches_lose_no_update() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    let users: Vec<String> = (0..24).map(|i| c.user(&format!("p{i}@acme.com"))).collect();
    let g = c.group("Busy", &[]);
    let target = c.user("target@acme.com");
    let handles: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            let (c, g, target) = (c.clone(), g.clone(), target.clone());
            std::thread::spawn(move || {
                let a = c.patch(&format!("/Groups/{g}"), json!([{"op": "add", "path": "members", "value": [{"value": u}]}]));
                // Each thread also adds its own email to one user: a read-modify-write race.
                let b = c.patch(&format!("/Users/{target}"), json!([{"op": "add", "path": "emails", "value": [{"value": format!("alias{i}@acme.com"), "type": "other"}]}]));
                (a.status, b.status)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), (204, 200));
    }
    assert_eq!(c.get(&format!("/Groups/{g}")).body["members"].as_array().unwrap().len(), 24);
    let emails = c.get(&format!("/Users/{target}")).body["emails"].as_array().unwrap().len();
    assert_eq!(emails, 25, "every concurrent PATCH survived");
}
