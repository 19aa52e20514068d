//! The SQLite writer's cost of one user create, straight into the store (no HTTP, no
//! plugins): as the identity mapping writes it, and as the example chain's decisions do (a
//! mapped username, a custom attribute, the default group `app-users`, three decisions in the
//! audit record). Not a test: nothing here asserts a timing.
//!
//! Wall time on a shared machine is noisy; instruction counts are not. Count them with
//! callgrind, each mode in its own run:
//!
//! ```sh
//! cargo bench -p mapwright --bench writer --no-run        # prints the binary's path
//! valgrind --tool=callgrind target/release/deps/writer-<hash> plain 1000
//! valgrind --tool=callgrind target/release/deps/writer-<hash> rules 1000
//! ```
//!
//! (`username` writes only what a username rule changes: another name and one decision.)
//!
//! `MW_BENCH_SQLITE_ALLOC=system` leaves SQLite on its default allocator (the server routes it
//! to mimalloc). `MW_BENCH_DDL='…'` runs SQL on the fresh database first (try dropping an index or
//! replacing a trigger and count again). `callgrind_annotate --inclusive=yes` splits the
//! total by function (`users::create`, `rule_grants`, `audit::record`, commit).
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

use mapwright::model::*;
use mapwright::store::SqlStore;
use mapwright::store::*;
use serde_json::json;

// The server binary's allocator (SQLite keeps the system one).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // As the server does (main.rs); `MW_BENCH_SQLITE_ALLOC=system` keeps SQLite's default
    // allocator, to compare.
    if std::env::var("MW_BENCH_SQLITE_ALLOC").as_deref() != Ok("system") {
        assert!(mapwright::store::sqlite::alloc::install(), "SQLite was initialised before its allocator was set");
    }
    // `cargo bench` passes `--bench`; the mode and count are the first other arguments.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let mode = args.first().map(String::as_str).unwrap_or("plain");
    // `username`: only what a username rule changes (another name, one decision); `rules`:
    // that, and the attributes, group and decisions of the other two plugins.
    let rules: &[&str] = match mode {
        "plain" => &[],
        "username" => &["username"],
        "rules" => &["username", "attributes", "groups"],
        other => panic!("unknown mode {other:?}: plain, username or rules"),
    };
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writer.db");
        let store = SqlStore::sqlite(&path, Default::default()).unwrap();
        store.create_tenant("t").await.unwrap();
        if let Ok(ddl) = std::env::var("MW_BENCH_DDL") {
            rusqlite::Connection::open(&path).unwrap().execute_batch(&ddl).unwrap();
        }
        let idp = store.create_idp("t", NewIdp { name: "i".into(), kind: IdpKind::Generic, settings: Default::default(), rate: RateLimit { per_second: 0.0, burst: 1 } }).await.unwrap();
        let started = std::time::Instant::now();
        for i in 0..n {
            let email = format!("user{i}.x@bench.example");
            let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": email, "externalId": email, "active": true,
                "name": {"givenName": "Bench", "familyName": email}, "emails": [{"value": email, "type": "work", "primary": true}]});
            let mut entry = EntryWrite { user_name: email.clone(), active: true, attributes: body.clone(), ..Default::default() };
            let mut decisions = Vec::new();
            if !rules.is_empty() {
                entry.user_name = format!("user{i}.x");
            }
            if rules.contains(&"attributes") {
                entry.attributes["urn:mapwright:custom:User"] = json!({"surname": email.to_uppercase()});
                entry.grant.push("app-users".into());
            }
            for plugin in rules {
                decisions.push(Decision { plugin: plugin.to_string(), rule: format!("{plugin}.rule"), reason: "what the example chain records".into() });
            }
            let w = UserWrite { body: std::sync::Arc::new(body), entry, matching: MatchPolicy::Conflict, reactivate: None };
            let audit = AuditInfo { actor: "idp:t/i".into(), request_id: format!("r{i}"), operation: "create".into(), chain_version: (!rules.is_empty()).then_some(1), decisions };
            store.create_user(&idp, w, audit).await.unwrap();
        }
        println!("{} creates ({}): {:.1} µs each, one commit per create", n, mode, started.elapsed().as_secs_f64() * 1e6 / n as f64);
        store.close();
    });
}
