//! Starts the real `mapwright` binary on 127.0.0.1:0 with its own data directory, provisions
//! tenants and IdP connections through the real CLI, and talks to it over HTTP.
//!
//! The database is chosen per run: SQLite in the data directory, or with
//! `MW_BACKEND=postgres` a database of its own for each server on the cluster at
//! `MW_DATABASE_URL` (`scripts/test.sh` runs the suite both ways).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mapwright::store::postgres::scratch::ScratchDb;
use mapwright::store::sql::Sql;

use reqwest::blocking::Client as Http;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_mapwright");

/// Paths of the test-only plugin components (`tests/plugins/*`), built by `host/build.rs`.
pub mod test_plugins {
    include!(concat!(env!("OUT_DIR"), "/test_plugins.rs"));
}

/// Which database the servers of this run use.
pub fn backend() -> &'static str {
    match std::env::var("MW_BACKEND").as_deref() {
        Ok("postgres") => "postgres",
        Ok("sqlite") | Err(_) => "sqlite",
        Ok(other) => panic!("MW_BACKEND={other}: sqlite or postgres"),
    }
}

/// A server's database: its SQLite file, or its scratch PostgreSQL database. Tests reach
/// into it for what no API shows (damage, raw rows), through the store's own SQL interface.
#[derive(Clone)]
pub enum Db {
    Sqlite(PathBuf),
    Postgres(Arc<ScratchDb>),
}

impl Db {
    fn new(dir: &Path) -> Db {
        match backend() {
            "postgres" => {
                let url = std::env::var("MW_DATABASE_URL").expect("MW_BACKEND=postgres needs MW_DATABASE_URL (scripts/test.sh starts a cluster)");
                Db::Postgres(Arc::new(ScratchDb::create(&url).unwrap()))
            }
            _ => Db::Sqlite(dir.join("mapwright.db")),
        }
    }

    /// The flags that point the binary at it.
    fn args(&self) -> Vec<String> {
        match self {
            Db::Sqlite(_) => Vec::new(),
            Db::Postgres(db) => vec!["--database-url".into(), db.url().to_string()],
        }
    }

    /// Runs `f` on a plain connection to it (each statement its own transaction).
    pub fn with<T>(&self, f: impl FnOnce(&dyn Sql) -> T) -> T {
        match self {
            Db::Sqlite(path) => f(&rusqlite::Connection::open(path).unwrap()),
            Db::Postgres(db) => f(&mapwright::store::sql::postgres::PgConn::connect(db.url()).unwrap()),
        }
    }

    /// Runs one statement; the error as the database said it.
    pub fn execute(&self, sql: &str) -> Result<u64, String> {
        self.with(|c| c.execute(sql, &[]).map_err(|e| format!("{e:#}")))
    }

    /// The first column of each row of `sql`, as text.
    pub fn strings(&self, sql: &str) -> Vec<String> {
        self.with(|c| c.query(sql, &[]).unwrap().iter().map(|r| r.get::<String>(0).unwrap()).collect())
    }

    /// Everything stored, as bytes (the file, or every row of every table as text): for
    /// tests that a secret is nowhere in it.
    pub fn dump(&self) -> Vec<u8> {
        match self {
            Db::Sqlite(path) => std::fs::read(path).unwrap(),
            Db::Postgres(_) => {
                let tables = self.strings("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'");
                let mut out = Vec::new();
                for t in tables {
                    for row in self.strings(&format!("SELECT CAST(t AS TEXT) FROM {t} t")) {
                        out.extend_from_slice(row.as_bytes());
                    }
                }
                out
            }
        }
    }

    /// The store over it, for reads through the store's API.
    pub async fn store(&self) -> mapwright::store::SqlStore {
        match self {
            Db::Sqlite(path) => mapwright::store::SqlStore::sqlite(path, Default::default()).unwrap(),
            Db::Postgres(db) => mapwright::store::SqlStore::postgres(db.url(), Default::default(), false).await.unwrap(),
        }
    }
}

pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    /// Its database.
    pub database: Db,
    pub url: String,
    /// What the server printed before it started listening (connections, first tokens).
    pub banner: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_file(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("mapwright.toml");
    std::fs::write(&p, format!("[server]\nlisten = \"127.0.0.1:0\"\nbody_limit = 65536\n{extra}")).unwrap();
    p
}

impl Server {
    pub fn start() -> Server {
        Server::start_with("")
    }

    /// Starts a server whose configuration has `extra` appended (e.g. tenants).
    pub fn start_with(extra: &str) -> Server {
        Server::start_env(extra, &[("RUST_LOG", "warn")])
    }

    /// Starts a server with extra configuration and environment variables.
    pub fn start_env(extra: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(dir.path());
        Server::start_in(dir, db, extra, env)
    }

    /// Starts a server whose virtual address space is limited to `kib` KiB (`ulimit -v`).
    pub fn start_address_space_limited(extra: &str, kib: u64) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(dir.path());
        Server::spawn(dir, db, extra, &[("RUST_LOG", "warn")], Some(kib))
    }

    /// Starts another server on the same database (its own data directory): a replica.
    pub fn replica(&self, extra: &str) -> Server {
        self.replica_env(extra, &[])
    }

    /// Another server on this one's database, with more environment.
    pub fn replica_env(&self, extra: &str, env: &[(&str, &str)]) -> Server {
        let env: Vec<(&str, &str)> = [("RUST_LOG", "warn")].into_iter().chain(env.iter().copied()).collect();
        Server::start_in(tempfile::tempdir().unwrap(), self.database.clone(), extra, &env)
    }

    /// Stops this server and starts another on the same data directory.
    pub fn restart(self, extra: &str) -> Server {
        self.restart_after(extra, |_, _| {})
    }

    /// Kills this server with SIGKILL: no draining, no closing.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Kills this server with SIGKILL (no draining, no closing) and starts another on the same
    /// data directory: a crash.
    pub fn crash_and_restart(mut self, extra: &str) -> Server {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Server::start_in(dir, self.database.clone(), extra, &[("RUST_LOG", "warn")])
    }

    /// Stops this server, lets `meddle` change its data directory and database, and starts
    /// another on them.
    pub fn restart_after(mut self, extra: &str, meddle: impl FnOnce(&Path, &Db)) -> Server {
        let status = self.terminate();
        assert!(status.success(), "exit {status:?}; log: {}", self.log());
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        meddle(dir.path(), &self.database);
        Server::start_in(dir, self.database.clone(), extra, &[("RUST_LOG", "warn")])
    }

    fn start_in(dir: tempfile::TempDir, db: Db, extra: &str, env: &[(&str, &str)]) -> Server {
        Server::spawn(dir, db, extra, env, None)
    }

    fn spawn(dir: tempfile::TempDir, database: Db, extra: &str, env: &[(&str, &str)], address_space_kib: Option<u64>) -> Server {
        let cfg = config_file(dir.path(), extra);
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut command = match address_space_kib {
            None => Command::new(BIN),
            Some(kib) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", "ulimit -v \"$0\" && exec \"$@\"", &kib.to_string(), BIN]);
                sh
            }
        };
        let mut child = command
            .args(["--config", cfg.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()])
            .args(database.args())
            .arg("serve")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let url = loop {
            let line = lines.next().unwrap_or_else(|| panic!("server exited; log: {}", std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default())).unwrap();
            if let Some(u) = line.strip_prefix("Mapwright listening on ") {
                break u.trim().to_string();
            }
            banner.push(line);
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, dir, database, url, banner }
    }

    /// The binary, pointed at this server's configuration, data directory and database.
    pub fn command(&self) -> Command {
        let cfg = self.dir.path().join("mapwright.toml");
        let mut c = Command::new(BIN);
        c.args(["--config", cfg.to_str().unwrap(), "--data-dir", self.dir.path().to_str().unwrap()]).args(self.database.args()).env("RUST_LOG", "warn");
        c
    }

    /// Runs the CLI against this server's data directory and database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command().args(args).output().unwrap()
    }

    /// A client for a connection declared in the configuration, with the token from the banner.
    pub fn declared(&self, tenant: &str, idp: &str) -> Client {
        let at = self.banner.iter().position(|l| l.starts_with(&format!("IdP connection {tenant}/{idp} "))).expect("connection in banner");
        let token = self.banner[at..].iter().find_map(|l| l.split("store it now): ").nth(1)).expect("token in banner").trim().to_string();
        Client::new(format!("{}/scim/v2/{tenant}/{idp}", self.url), token)
    }

    /// The global admin token the first start printed.
    pub fn admin_token(&self) -> String {
        self.banner.iter().find_map(|l| l.split("Admin token (shown once, store it now): ").nth(1)).expect("admin token in banner").trim().to_string()
    }

    /// A client for the admin API with this token.
    pub fn admin(&self, token: &str) -> Client {
        Client::new(format!("{}/admin/v1", self.url), token.to_string())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read(self.dir.path().join("server.log")).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "the server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its database.
    pub fn db(&self) -> Db {
        self.database.clone()
    }

    /// Creates (if needed) `tenant` and a new IdP connection, and returns a client for it.
    pub fn idp(&self, tenant: &str, idp: &str, kind: &str) -> Client {
        self.idp_with(tenant, idp, kind, &[])
    }

    pub fn idp_with(&self, tenant: &str, idp: &str, kind: &str, extra: &[&str]) -> Client {
        let _ = self.cli(&["tenant", "add", tenant]);
        let mut args = vec!["idp", "add", tenant, idp, "--kind", kind, "--json"];
        if !extra.contains(&"--rate-per-second") {
            // Tests send bursts; they get no rate limit unless they test it.
            args.extend(["--rate-per-second", "0"]);
        }
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(out.status.success(), "idp add failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Client::new(format!("{}/scim/v2/{tenant}/{idp}", self.url), v["token"].as_str().unwrap().to_string())
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts an RFC 7644 error body with this status and scimType.
    pub fn assert_error(&self, status: u16, scim_type: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error", "{}", self.body);
        assert_eq!(self.body["status"], status.to_string());
        assert_eq!(self.body["scimType"].as_str(), scim_type, "{}", self.body);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_else(|| panic!("no id in {}", self.body)).to_string()
    }
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: String,
    http: Http,
}

impl Client {
    pub fn new(base: String, token: String) -> Client {
        Client { base, token, http: Http::builder().timeout(Duration::from_secs(30)).build().unwrap() }
    }

    /// The same connection on another server process (a restart binds a new port).
    pub fn rebased(&self, s: &Server) -> Client {
        let path = &self.base[self.base.find("/scim/v2/").unwrap()..];
        Client { base: format!("{}{path}", s.url), ..self.clone() }
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client { token: token.to_string(), ..self.clone() }
    }

    /// Like `send` with no extra headers, but `None` when the server cannot be reached (it
    /// was killed) instead of failing the test.
    pub fn try_send(&self, method: &str, path: &str, body: Option<&Value>) -> Option<Resp> {
        self.request(method, path, body, &[]).send().ok().and_then(read)
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> reqwest::blocking::RequestBuilder {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.base) };
        let mut req = self.http.request(method.parse().unwrap(), url).bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        req
    }

    pub fn send(&self, method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Resp {
        read(self.request(method, path, body, headers).send().unwrap()).unwrap()
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None, &[])
    }
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.send("POST", path, Some(body), &[])
    }
    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.send("PUT", path, Some(body), &[])
    }
    /// Sends raw bytes (a plugin upload).
    pub fn post_bytes(&self, path: &str, bytes: Vec<u8>) -> Resp {
        read(self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).header("content-type", "application/wasm").body(bytes).send().unwrap()).unwrap()
    }

    pub fn patch(&self, path: &str, ops: Value) -> Resp {
        let body = serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
        self.send("PATCH", path, Some(&body), &[])
    }
    /// Sends a complete PATCH body (a sample payload) as it is.
    pub fn patch_raw(&self, path: &str, body: &Value) -> Resp {
        self.send("PATCH", path, Some(body), &[])
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None, &[])
    }

    /// Creates a user with this userName (and a work email) and returns its id.
    pub fn user(&self, user_name: &str) -> String {
        let r = self.post("/Users", &serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "emails": [{"value": user_name, "type": "work", "primary": true}],
            "active": true,
        }));
        assert_eq!(r.status, 201, "{}", r.body);
        r.id()
    }

    pub fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| serde_json::json!({"value": m})).collect();
        let r = self.post("/Groups", &serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": members,
        }));
        assert_eq!(r.status, 201, "{}", r.body);
        r.id()
    }

    /// userNames of a list response, in order.
    pub fn names(&self, query: &str) -> Vec<String> {
        let r = self.get(&format!("/Users?{query}"));
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        r.body["Resources"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap().to_string()).collect()
    }
}

/// A response as tests look at it: status, headers, and the body as JSON (a string when it
/// is not JSON, null when empty). `None` if the body could not be read.
fn read(resp: reqwest::blocking::Response) -> Option<Resp> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().ok()?;
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Some(Resp { status, headers, body })
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The directory entry (after rules) of a userName, read through the store API.
pub fn directory_entry(db: &Db, tenant: &str, user_name: &str) -> Option<mapwright::model::DirectoryEntry> {
    use mapwright::store::{DirectoryStore, TenantStore};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = db.store().await;
        let t = store.list_tenants().await.unwrap().into_iter().find(|t| t.name == tenant).unwrap();
        store.directory_entry(t.id, user_name).await.unwrap()
    })
}

/// The directory entry an IdP user maps to (by the user's SCIM id, any connection), read
/// from the database file.
pub fn directory_entry_of(db: &Db, tenant: &str, user_id: &str) -> Option<mapwright::model::DirectoryEntry> {
    use mapwright::store::{DirectoryStore, TenantStore};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = db.store().await;
        let t = store.list_tenants().await.unwrap().into_iter().find(|t| t.name == tenant).unwrap();
        for idp in store.list_idps(Some(&t.name)).await.unwrap() {
            if let Some(e) = store.entry_of_user(&idp, user_id).await.unwrap() {
                return Some(e);
            }
        }
        None
    })
}
