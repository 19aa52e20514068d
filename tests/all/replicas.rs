//! Several replicas on one PostgreSQL database. These run in the PostgreSQL run of the suite
//! (`MW_BACKEND=postgres`); an SQLite file belongs to one process, so the SQLite run has no
//! replicas to start and says so.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Client, Server, backend, directory_entry};

const TENANT: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
guard = { max_destructive = 3, window_secs = 3600 }
"#;

/// Whether this run is on PostgreSQL; says why the test does nothing when not.
fn on_postgres() -> bool {
    let yes = backend() == "postgres";
    if !yes {
        eprintln!("replicas need PostgreSQL: run with MW_BACKEND=postgres (scripts/test.sh does)");
    }
    yes
}

/// Two servers on one database, and the connection's client for each.
fn two_replicas() -> Option<(Server, Server, Client, Client)> {
    if !on_postgres() {
        return None;
    }
    let a = Server::start_with(TENANT);
    let b = a.replica(TENANT);
    let okta_a = a.declared("acme", "okta");
    let okta_b = okta_a.rebased(&b);
    Some((a, b, okta_a, okta_b))
}

/// Replicas told to remember the users they last wrote (off by default on PostgreSQL): an
/// update that starts from a remembered user another replica has changed since is not
/// written from it; it is read again, and nothing the other replica wrote is lost.
#[test]
fn an_update_from_a_user_another_replica_changed_reads_it_again() {
    if !on_postgres() {
        return;
    }
    let config = format!("remembered_users_mib = 8\n{TENANT}");
    let a = Server::start_with(&config);
    let b = a.replica(&config);
    let okta_a = a.declared("acme", "okta");
    let okta_b = okta_a.rebased(&b);
    let id = okta_a.post("/Users", &json!({"userName": "stale@acme.com", "title": "Analyst", "active": true})).id();
    let r = okta_b.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "title", "value": "Lead"}]));
    assert_eq!(r.status, 200, "{}", r.body);
    // A remembers version 1 (it created the user); the store has version 2.
    let r = okta_a.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "displayName", "value": "Stale Sam"}]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["title"].as_str(), r.body["displayName"].as_str()), (Some("Lead"), Some("Stale Sam")), "{}", r.body);
    assert_eq!(r.body["meta"]["version"], "W/\"3\"", "{}", r.body);
    let r = okta_b.get(&format!("/Users/{id}"));
    assert_eq!((r.body["title"].as_str(), r.body["displayName"].as_str()), (Some("Lead"), Some("Stale Sam")), "{}", r.body);
    let metric = |s: &Server, name: &str| -> u64 {
        let text = reqwest::blocking::Client::new().get(format!("{}/metrics", s.url)).bearer_auth(a.admin_token()).send().unwrap().text().unwrap();
        text.lines().find_map(|l| l.strip_prefix(&format!("{name}_total ")).or_else(|| l.strip_prefix(&format!("{name} ")))).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert_eq!(metric(&a, "mapwright_remembered_user_stale"), 1);
    // Now A remembers what it wrote: the next update starts from it, and it is current.
    let r = okta_a.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "title", "value": "Head"}]));
    assert_eq!((r.status, r.body["displayName"].as_str()), (200, Some("Stale Sam")), "{}", r.body);
    assert_eq!(metric(&a, "mapwright_remembered_user_stale"), 1);
    assert!(metric(&a, "mapwright_remembered_user_hits") >= 2);
}

#[test]
fn racing_creates_on_two_replicas_make_one_entry() {
    let Some((a, _b, okta_a, okta_b)) = two_replicas() else { return };
    for round in 0..12 {
        let name = format!("race{round}@acme.com");
        let racers: Vec<_> = [okta_a.clone(), okta_b.clone()]
            .into_iter()
            .map(|c| {
                let name = name.clone();
                std::thread::spawn(move || c.post("/Users", &json!({"userName": name})).status)
            })
            .collect();
        let mut statuses: Vec<u16> = racers.into_iter().map(|h| h.join().unwrap()).collect();
        statuses.sort();
        assert_eq!(statuses, [201, 409], "round {round}: one create, one conflict");
        let listed = okta_a.get(&format!("/Users?filter={}", crate::harness::enc(&format!("userName eq \"{name}\"")))).body["totalResults"].as_u64();
        assert_eq!(listed, Some(1), "round {round}");
        assert!(directory_entry(&a.db(), "acme", &name).is_some());
    }
}

#[test]
fn the_guard_window_is_the_connections_not_each_replicas() {
    let Some((a, _b, okta_a, okta_b)) = two_replicas() else { return };
    let ids: Vec<String> = (0..6).map(|i| okta_a.user(&format!("g{i}@acme.com"))).collect();
    // Deactivations alternate between the replicas: the cap of 3 counts them all.
    for (i, id) in ids.iter().enumerate() {
        let c = if i % 2 == 0 { &okta_a } else { &okta_b };
        let r = c.patch(&format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": false}}]));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let active: Vec<bool> = (0..6).map(|i| directory_entry(&a.db(), "acme", &format!("g{i}@acme.com")).unwrap().active).collect();
    assert_eq!(active, [false, false, false, true, true, true], "three went ahead, the rest are held");
    let held = a.cli(&["held", "list", "acme", "--json"]);
    assert_eq!(serde_json::from_slice::<Value>(&held.stdout).unwrap().as_array().unwrap().len(), 3);
}

#[test]
fn a_follower_on_one_replica_sees_every_write_made_on_the_other_once_in_order() {
    let Some((a, b, okta_a, _okta_b)) = two_replicas() else { return };
    let dir = Client::new(format!("{}/directory/v1/acme", b.url), crate::directory::directory_token(&a, "acme"));
    let start = dir.get("/changes").body["cursor"].as_str().unwrap().to_string();
    // A long poll on B wakes for a write on A (PostgreSQL notifies every replica).
    let waiting = {
        let dir = dir.clone();
        let head = start.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            (dir.get(&format!("/changes?since={head}&wait=20")), t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    okta_a.user("first@acme.com");
    let (woke, after) = waiting.join().unwrap();
    assert_eq!(woke.body["changes"][0]["user"]["userName"], "first@acme.com", "{}", woke.body);
    assert!(after < Duration::from_secs(15), "woken by the other replica's write, not by the poll's end ({after:?})");
    // Eight writers on A, a follower on B reading small pages meanwhile.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = {
        let (dir, done) = (dir.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut seen, mut cursor) = (Vec::<Value>::new(), start);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let (page, next) = crate::directory::drain(&dir, &cursor, 7);
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
            let okta = okta_a.clone();
            std::thread::spawn(move || (0..15).map(|i| okta.user(&format!("w{w}.u{i}@acme.com"))).count())
        })
        .collect();
    let written: usize = writers.into_iter().map(|h| h.join().unwrap()).sum::<usize>() + 1;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = follower.join().unwrap();
    let created: Vec<&str> = seen.iter().filter(|c| c["type"] == "user.created").map(|c| c["user"]["userName"].as_str().unwrap()).collect();
    let distinct: HashSet<&str> = created.iter().copied().collect();
    assert_eq!((created.len(), distinct.len()), (written, written), "every create exactly once");
    let positions: Vec<u64> = seen.iter().map(|c| c["cursor"].as_str().unwrap().parse().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order");
}

#[test]
fn a_chain_activated_elsewhere_serves_on_every_replica() {
    let Some((a, b, okta_a, okta_b)) = two_replicas() else { return };
    let file = a.dir.path().join("lower.toml");
    std::fs::write(&file, "[[entry]]\nplugin = \"builtin:username\"\nconfig = { local_part = true, case = \"lower\" }\n").unwrap();
    let out = a.cli(&["chain", "set", "acme", "okta", "--file", file.to_str().unwrap(), "--note", "lower"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (name, c) in [("a", &okta_a), ("b", &okta_b)] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut i = 0;
        loop {
            let r = c.post("/Users", &json!({"userName": format!("{name}.User{i}@Acme.com")}));
            assert_eq!(r.status, 201, "{}", r.body);
            if r.header("x-mapwright-rules") == Some("1") {
                // The request that says version 1 was mapped by it, whole.
                assert!(directory_entry(&b.db(), "acme", &format!("{name}.user{i}")).is_some(), "replica {name}");
                break;
            }
            assert!(Instant::now() < deadline, "replica {name} never ran the new version");
            i += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Creates users through whichever replica answers, moving to the next on a connection error
/// or a 5xx (a replica going down), as a load balancer with retries does. Returns the
/// userNames acknowledged and the requests that never succeeded.
fn write_through(replicas: &std::sync::Arc<std::sync::RwLock<Vec<Client>>>, prefix: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
    for i in 0..n {
        let name = format!("{prefix}{i}@acme.com");
        let mut done = false;
        for attempt in 0..30 {
            let c = {
                let all = replicas.read().unwrap();
                all[(i + attempt) % all.len()].clone()
            };
            match c.try_send("POST", "/Users", Some(&json!({"userName": name}))) {
                // 409 on a retry: the attempt the failure hid was applied.
                Some(r) if r.status == 201 || (r.status == 409 && attempt > 0) => {
                    done = true;
                    break;
                }
                Some(r) if r.status < 500 => panic!("{name}: {} {}", r.status, r.body),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if done { acknowledged.push(name) } else { failed.push(name) }
    }
    (acknowledged, failed)
}

#[test]
fn three_replicas_lose_nothing_to_a_kill_and_serve_through_a_rolling_restart() {
    if !on_postgres() {
        return;
    }
    let a = Server::start_with(TENANT);
    let okta = a.declared("acme", "okta");
    let mut servers = vec![a];
    for _ in 0..2 {
        let r = servers[0].replica(TENANT);
        servers.push(r);
    }
    let clients = std::sync::Arc::new(std::sync::RwLock::new(servers.iter().map(|s| okta.rebased(s)).collect::<Vec<_>>()));
    let load = |phase: &'static str, n: usize| {
        (0..4)
            .map(|w| {
                let clients = clients.clone();
                std::thread::spawn(move || write_through(&clients, &format!("{phase}.w{w}.u"), n))
            })
            .collect::<Vec<_>>()
    };

    // Round robin over three, one killed with SIGKILL mid-load.
    let writers = load("kill", 60);
    std::thread::sleep(Duration::from_millis(400));
    assert!(writers.iter().all(|w| !w.is_finished()), "the kill comes mid-load");
    servers[1].kill();
    let mut acknowledged = Vec::new();
    for w in writers {
        let (ok, failed) = w.join().unwrap();
        assert!(failed.is_empty(), "requests no replica took: {failed:?}");
        acknowledged.extend(ok);
    }
    let restarted = servers.remove(1).crash_and_restart(TENANT);
    servers.insert(1, restarted);
    clients.write().unwrap()[1] = okta.rebased(&servers[1]);

    // A rolling restart of all three, under load.
    let writers = load("roll", 400);
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        let old = servers.remove(i);
        let new = old.restart(TENANT);
        clients.write().unwrap()[i] = okta.rebased(&new);
        servers.insert(i, new);
    }
    assert!(writers.iter().any(|w| !w.is_finished()), "the restarts all happened under load");
    for w in writers {
        let (ok, failed) = w.join().unwrap();
        assert!(failed.is_empty(), "failed IdP requests during the rolling restart: {failed:?}");
        acknowledged.extend(ok);
    }

    // Every acknowledged create is there once, and the IdP view matches the directory.
    let db = servers[0].db();
    for name in &acknowledged {
        assert!(directory_entry(&db, "acme", name).is_some(), "{name} was acknowledged and lost");
    }
    let listed = clients.read().unwrap()[2].get("/Users?count=1").body["totalResults"].as_u64().unwrap();
    assert_eq!(listed as usize, acknowledged.len(), "one IdP user per acknowledged create");
    let entries = db.strings("SELECT CAST(count(*) AS TEXT) FROM entries");
    assert_eq!(entries, [acknowledged.len().to_string()], "one directory entry per IdP user");
}

/// One IdP's traffic, each request sent by the client `via` picks for it: creates, groups with
/// members, deactivations, a rename, a member removed, a user deleted.
fn idp_traffic(via: &dyn Fn(usize) -> Client) {
    let mut n = 0;
    let mut next = || {
        n += 1;
        via(n)
    };
    let users: Vec<String> = (0..24)
        .map(|i| {
            let email = format!("Person.{i:02}@Acme.com");
            let r = next().post("/Users", &json!({
                "userName": email, "active": true, "title": if i % 3 == 0 { "Engineer" } else { "Analyst" },
                "emails": [{"value": email, "type": "work", "primary": true}],
            }));
            assert_eq!(r.status, 201, "{}", r.body);
            r.id()
        })
        .collect();
    let groups: Vec<String> = ["Dev users", "Sales", "Ops", "Finance"]
        .iter()
        .enumerate()
        .map(|(g, name)| {
            let members: Vec<Value> = users.iter().skip(g).step_by(g + 2).map(|u| json!({"value": u})).collect();
            let r = next().post("/Groups", &json!({"displayName": name, "members": members}));
            assert_eq!(r.status, 201, "{}", r.body);
            r.id()
        })
        .collect();
    for u in &users[20..23] {
        let r = next().patch(&format!("/Users/{u}"), json!([{"op": "replace", "path": "active", "value": false}]));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = next().patch(&format!("/Groups/{}", groups[2]), json!([{"op": "replace", "path": "displayName", "value": "Operations"}]));
    assert!(r.status == 200 || r.status == 204, "{}", r.body);
    let r = next().patch(&format!("/Groups/{}", groups[0]), json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", users[0])}]));
    assert!(r.status == 200 || r.status == 204, "{}", r.body);
    let r = next().patch(&format!("/Users/{}", users[5]), json!([{"op": "replace", "path": "title", "value": "Lead"}]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(next().delete(&format!("/Users/{}", users[7])).status, 204);
}

/// The directory as the application reads it, without the ids each database chose.
fn directory_view(s: &Server, token: &str) -> Value {
    let dir = Client::new(format!("{}/directory/v1/acme", s.url), token.to_string());
    let users = dir.get("/Users?count=1000&sortBy=userName");
    assert_eq!(users.status, 200, "{}", users.body);
    let users: Vec<Value> = users.body["Resources"].as_array().unwrap().iter().map(|u| {
        let mut groups: Vec<&str> = u["groups"].as_array().map(|g| g.iter().map(|g| g["display"].as_str().unwrap()).collect()).unwrap_or_default();
        groups.sort();
        json!({"userName": u["userName"], "active": u["active"], "title": u["title"], "groups": groups})
    }).collect();
    let groups = dir.get("/Groups?count=1000&sortBy=displayName");
    assert_eq!(groups.status, 200, "{}", groups.body);
    let groups: Vec<Value> = groups.body["Resources"].as_array().unwrap().iter().map(|g| {
        let mut members: Vec<&str> = g["members"].as_array().map(|m| m.iter().map(|m| m["display"].as_str().unwrap()).collect()).unwrap_or_default();
        members.sort();
        json!({"displayName": g["displayName"], "members": members})
    }).collect();
    json!({"users": users, "groups": groups})
}

#[test]
fn round_robin_over_three_replicas_makes_the_directory_one_process_makes() {
    if !on_postgres() {
        return;
    }
    let single = Server::start_with(crate::directory::RULES);
    let okta = single.declared("acme", "okta");
    idp_traffic(&|_| okta.clone());
    let expected = directory_view(&single, &crate::directory::directory_token(&single, "acme"));

    let a = Server::start_with(crate::directory::RULES);
    let (b, c) = (a.replica(crate::directory::RULES), a.replica(crate::directory::RULES));
    let okta_a = a.declared("acme", "okta");
    let clients = [okta_a.clone(), okta_a.rebased(&b), okta_a.rebased(&c)];
    idp_traffic(&|n| clients[n % 3].clone());
    // Read through each replica: every one serves the same directory.
    let token = crate::directory::directory_token(&a, "acme");
    for s in [&a, &b, &c] {
        assert_eq!(directory_view(s, &token), expected);
    }
    let users = expected["users"].as_array().unwrap();
    assert_eq!(users.len(), 23, "24 created, one deleted");
    let mut groups: Vec<&str> = expected["groups"].as_array().unwrap().iter().map(|g| g["displayName"].as_str().unwrap()).collect();
    groups.sort();
    // A renamed IdP group moves its members to the app group of the new name; the old app
    // group stays, empty (app groups may be fed by several IdP groups).
    assert_eq!(groups, ["Finance", "Operations", "Ops", "Sales", "app-users", "software_dev"], "mapped, renamed, defaulted");
    let ops = expected["groups"].as_array().unwrap().iter().find(|g| g["displayName"] == "Ops").unwrap();
    assert_eq!(ops["members"], json!([]));
    assert_eq!(users.iter().filter(|u| u["active"] == false).count(), 3);
}

/// Delivery runs on one replica at a time (the `delivery` lease, 10 s). That replica killed
/// with SIGKILL: another takes the lease over once it lapses and the webhook target gets
/// every change, the ones the dead replica had not sent included.
#[test]
fn delivery_moves_to_a_surviving_replica_when_its_holder_is_killed() {
    use crate::delivery::{DELIVERY, Receiver, TENANTS, add_webhook, eventually, feed_positions, positions, secret};
    if !on_postgres() {
        return;
    }
    // One secret key for all three: the target's signing secret is stored encrypted.
    let key = {
        use base64::Engine;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).unwrap();
        base64::engine::general_purpose::STANDARD.encode(key)
    };
    let env = [("MAPWRIGHT_SECRET_KEY", key.as_str())];
    let config = format!("{DELIVERY}{TENANTS}");
    let whsec = secret();
    let rx = Receiver::start(&whsec);
    let a = Server::start_env(&config, &env);
    let admin_token = a.admin_token();
    let okta = a.declared("acme", "okta");
    let mut servers = vec![a];
    for _ in 0..2 {
        let r = servers[0].replica_env(&config, &env);
        servers.push(r);
    }
    let start = add_webhook(&servers[0], &rx, "hooks", &whsec, json!({"retry_base_ms": 50}));
    for i in 0..60 {
        okta.rebased(&servers[i % 3]).user(&format!("before{i}@acme.com"));
    }
    eventually(30, "delivery under way", || (!rx.events().is_empty()).then_some(()));

    let db = servers[0].db();
    let holder = db.strings("SELECT holder FROM leases WHERE name = 'delivery'");
    let pid: u32 = holder[0].split('-').next().unwrap().parse().unwrap();
    let at = servers.iter().position(|s| s.pid() == pid).expect("the lease holder is one of the three");
    servers[at].kill();
    let killed = Instant::now();
    let survivor = &servers[(at + 1) % 3];
    let okta = okta.rebased(survivor);
    for i in 0..20 {
        okta.user(&format!("after{i}@acme.com"));
    }
    let expected = feed_positions(survivor, &admin_token, "acme", start);
    eventually(60, "every change, through another replica", || (positions(&rx.events()) == expected).then_some(()));
    let took = killed.elapsed();
    let new_holder = db.strings("SELECT holder FROM leases WHERE name = 'delivery'");
    assert_ne!(new_holder, holder, "another replica holds delivery now");
    eprintln!("delivery resumed {took:?} after the kill (lease 10 s)");
    assert!(took < Duration::from_secs(30), "taken over within the lease and a retry or two ({took:?})");
}

/// An IdP pushing a group member by member (Entra's way) through two replicas: every PATCH
/// lands, though the replicas race for the group's version (each retries after losing).
#[test]
fn member_by_member_group_pushes_through_two_replicas_all_land() {
    let Some((_a, _b, okta_a, okta_b)) = two_replicas() else { return };
    let ids: Vec<String> = (0..120).map(|i| okta_a.user(&format!("m{i}@acme.com"))).collect();
    let group = okta_a.group("Everyone", &[]);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = std::sync::Arc::new(ids);
    let pushers: Vec<_> = (0..8)
        .map(|w| {
            let (next, ids, group) = (next.clone(), ids.clone(), group.clone());
            let c = if w % 2 == 0 { okta_a.clone() } else { okta_b.clone() };
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(id) = ids.get(k) else { return statuses };
                    let r = c.patch(&format!("/Groups/{group}"), json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));
                    statuses.push((r.status, r.body.to_string()));
                }
            })
        })
        .collect();
    let failed: Vec<(u16, String)> = pushers.into_iter().flat_map(|p| p.join().unwrap()).filter(|(s, _)| *s != 204 && *s != 200).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let members = okta_b.get(&format!("/Groups/{group}")).body["members"].as_array().map(Vec::len);
    assert_eq!(members, Some(120));
}
