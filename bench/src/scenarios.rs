//! IdP traffic, as the big IdPs send it: an initial sync (existence check, then create),
//! updates by PATCH and PUT, deactivations, group pushes with membership PATCHes, lookups.
//! Every function drives one SCIM endpoint and works against any RFC 7644 server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::load::{Stats, drive};
use crate::servers::Scim;

pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A user as Okta pushes one (name, a primary work email, the enterprise extension).
pub fn user(user_name: &str, i: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": user_name,
        // Unique like the userName: externalIds are unique per connection too.
        "externalId": format!("00u{i:08}{}", run()),
        "active": true,
        "name": {"givenName": "Bench", "familyName": format!("User{i}")},
        "displayName": format!("Bench User{i}"),
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": if i.is_multiple_of(3) { "Engineering" } else { "Sales" }},
    })
}

/// [`user`] as `t` takes it: without the enterprise extension for a server that refuses it
/// (the Rust `scim-server` crate validates against the core schema only).
pub fn user_for(t: &Scim, user_name: &str, i: usize) -> Value {
    let mut u = user(user_name, i);
    if t.core_schema_only {
        if let Some(o) = u.as_object_mut() {
            o.remove(ENTERPRISE);
        }
        u["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User"]);
    }
    u
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A userName of this run: the run's tag keeps a second run against the same server (with
/// `--url`) from colliding with the first.
pub fn name(prefix: &str, i: usize) -> String {
    format!("{prefix}.{i}.{}@bench.example", run())
}

/// This run's tag (its start time in seconds and its process id, in hex).
fn run() -> &'static str {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        format!("{secs:x}{:x}", std::process::id())
    })
}

/// A created user: its id and userName, for the updates that follow.
#[derive(Clone, Debug)]
pub struct Created {
    pub id: String,
    pub user_name: String,
    pub i: usize,
}

/// POSTs user `i` and records it in `out`; whether it was created.
async fn create_one(t: &Scim, user_name: String, i: usize, out: &Mutex<Vec<Created>>) -> bool {
    let Some(body) = t.call(t.send(Method::POST, "/Users", &user_for(t, &user_name, i))).await else { return false };
    let Some(id) = body["id"].as_str() else { return false };
    if let Ok(mut v) = out.lock() {
        v.push(Created { id: id.to_string(), user_name, i });
    }
    true
}

/// POST /Users `n` times from `concurrency` workers; the users created are returned.
pub async fn creates(t: &Scim, concurrency: usize, n: usize, prefix: &str, limit: Duration) -> (Stats, Vec<Created>) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let (t2, prefix, out2) = (t.clone(), prefix.to_string(), out.clone());
    let s = drive(concurrency, n, limit, move |i| {
        let (t, prefix, out) = (t2.clone(), prefix.clone(), out2.clone());
        async move { create_one(&t, name(&prefix, i), i, &out).await }
    })
    .await;
    let created = out.lock().map(|v| v.clone()).unwrap_or_default();
    (s, created)
}

/// The initial sync as Entra and Okta run it: `GET /Users?filter=userName eq "…"`, then
/// POST when nothing matched. One iteration = both requests.
pub async fn initial_sync(t: &Scim, concurrency: usize, n: usize, prefix: &str, limit: Duration) -> (Stats, Vec<Created>) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let (t2, prefix, out2) = (t.clone(), prefix.to_string(), out.clone());
    let s = drive(concurrency, n, limit, move |i| {
        let (t, prefix, out) = (t2.clone(), prefix.clone(), out2.clone());
        async move {
            let user_name = name(&prefix, i);
            let filter = format!("userName eq \"{user_name}\"");
            let Some(found) = t.call(t.get("/Users").query(&[("filter", filter.as_str())])).await else { return false };
            found["totalResults"].as_u64() == Some(0) && create_one(&t, user_name, i, &out).await
        }
    })
    .await;
    let created = out.lock().map(|v| v.clone()).unwrap_or_default();
    (s, created)
}

/// What an update sends: Entra's PATCH (replace two attributes), Okta's full PUT, or a
/// deactivation (PATCH active=false).
#[derive(Clone, Copy, Debug)]
pub enum Update {
    Patch,
    Put,
    Deactivate,
}

/// A PATCH of two attributes (a title and a surname), step `k`'s values: most of what an
/// incremental sync sends.
pub fn two_attributes(k: impl std::fmt::Display) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "title", "value": format!("Title {k}")},
        {"op": "replace", "path": "name.familyName", "value": format!("Renamed{k}")},
    ]})
}

/// User `u` whole again with `title` changed, as a PUT sends it.
pub fn replaced(t: &Scim, u: &Created, title: &str) -> Value {
    let mut body = user_for(t, &u.user_name, u.i);
    body["title"] = json!(title);
    body
}

pub async fn updates(t: &Scim, users: &[Created], how: Update, concurrency: usize, limit: Duration) -> Stats {
    let users: Arc<Vec<Created>> = Arc::new(users.to_vec());
    let t = t.clone();
    let n = users.len();
    drive(concurrency, n, limit, move |k| {
        let (t, users) = (t.clone(), users.clone());
        async move {
            let u = &users[k];
            let path = format!("/Users/{}", u.id);
            let rb = match how {
                Update::Patch => t.send(Method::PATCH, &path, &two_attributes(k)),
                Update::Put => t.send(Method::PUT, &path, &replaced(&t, u, "Replaced")),
                Update::Deactivate => t.send(Method::PATCH, &path, &json!({"schemas": [PATCH_OP], "Operations": [
                    {"op": "replace", "path": "active", "value": false},
                ]})),
            };
            t.ok(rb).await
        }
    })
    .await
}

/// A group push: one group filled by single-member PATCHes (Entra's way), another given
/// every member in one PATCH, then GET of the big group with and without its members.
pub struct GroupFigures {
    pub single: Stats,
    pub one_patch: Duration,
    pub one_patch_ok: bool,
    pub get_full: Stats,
    pub get_excluded: Stats,
}

pub async fn group_push(t: &Scim, members: &[String], concurrency: usize, limit: Duration) -> anyhow::Result<GroupFigures> {
    let mk = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name});
    let tag = std::process::id();
    let a = t.call(t.send(Method::POST, "/Groups", &mk(&format!("single-{tag}")))).await.and_then(|b| b["id"].as_str().map(str::to_string));
    let b = t.call(t.send(Method::POST, "/Groups", &mk(&format!("bulk-{tag}")))).await.and_then(|b| b["id"].as_str().map(str::to_string));
    let (Some(a), Some(b)) = (a, b) else { anyhow::bail!("{}: could not create the groups", t.label) };
    let single = {
        let (t, members, a) = (t.clone(), Arc::new(members.to_vec()), a.clone());
        let n = members.len();
        drive(concurrency, n, limit, move |k| {
            let (t, members, a) = (t.clone(), members.clone(), a.clone());
            async move {
                let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": members[k]}]}]});
                t.ok(t.send(Method::PATCH, &format!("/Groups/{a}"), &body)).await
            }
        })
        .await
    };
    let all: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    let started = Instant::now();
    let one_patch_ok = t.ok(t.send(Method::PATCH, &format!("/Groups/{b}"), &json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": all}]}))).await;
    let one_patch = started.elapsed();
    let gets = |query: &'static str, n: usize| {
        let (t, b) = (t.clone(), b.clone());
        drive(1, n, limit, move |_| {
            let (t, b) = (t.clone(), b.clone());
            async move { t.ok(t.get(&format!("/Groups/{b}{query}"))).await }
        })
    };
    let get_full = gets("", 20).await;
    let get_excluded = gets("?excludedAttributes=members", 500).await;
    Ok(GroupFigures { single, one_patch, one_patch_ok, get_full, get_excluded })
}

/// Fills the endpoint up to `total` users named `prefix.N` (N from `from`), fast.
pub async fn seed(t: &Scim, concurrency: usize, from: usize, total: usize, prefix: &str, limit: Duration) -> Stats {
    let (t, prefix) = (t.clone(), prefix.to_string());
    drive(concurrency, total.saturating_sub(from), limit, move |k| {
        let (t, prefix) = (t.clone(), prefix.clone());
        async move {
            let i = from + k;
            t.ok(t.send(Method::POST, "/Users", &user_for(&t, &name(&prefix, i), i))).await
        }
    })
    .await
}

/// `userName eq` lookups of existing users spread over `0..population` (answered with
/// exactly one user, or counted as an error).
pub async fn lookups(t: &Scim, population: usize, concurrency: usize, n: usize, prefix: &str, limit: Duration) -> Stats {
    let (t, prefix) = (t.clone(), prefix.to_string());
    drive(concurrency, n, limit, move |k| {
        let (t, prefix) = (t.clone(), prefix.clone());
        async move {
            // A deterministic scramble over the whole population.
            let i = k.wrapping_mul(2_654_435_761) % population.max(1);
            let filter = format!("userName eq \"{}\"", name(&prefix, i));
            t.call(t.get("/Users").query(&[("filter", filter.as_str())])).await.is_some_and(|b| b["totalResults"].as_u64() == Some(1))
        }
    })
    .await
}
