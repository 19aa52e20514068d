//! Resident memory of one server with many IdP connections, each with a three-plugin chain:
//! the plugins identical everywhere, the same plugins configured differently per connection,
//! or a distinct plugin binary per connection (as when every tenant ships its own rules).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::load::drive;
use crate::scenarios::user;
use crate::servers::{self, Scim};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variant {
    Identical,
    DistinctConfigs,
    DistinctBinaries,
}

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Variant::Identical => "identical plugins and configs",
            Variant::DistinctConfigs => "same plugins, a config per connection",
            Variant::DistinctBinaries => "a distinct username plugin binary per connection",
        }
    }
}

pub struct Figures {
    pub empty: u64,
    pub loaded: u64,
    pub connections: usize,
    pub setup: Duration,
    pub errors: usize,
}

fn chain(k: usize, variant: Variant, username: &str) -> Value {
    let map = if variant == Variant::Identical { "software_dev".to_string() } else { format!("software_dev_{k}") };
    json!({"note": "bench", "entries": [
        {"plugin": username, "config": {"source": "email", "local_part": true, "case": "lower"}},
        {"plugin": "builtin:groups", "config": {"map": {"dev users": map}, "defaults": {"all_users": ["app-users"]}}},
        {"plugin": "builtin:attributes", "config": {"mappings": [{"from": "name.familyName", "to": "urn:mapwright:custom:User:surname", "transform": ["upper"]}]}},
    ]})
}

/// A copy of a component that differs only by a custom section: a different content hash,
/// so the server stores and compiles it as a plugin of its own.
pub fn distinct_copy(component: &[u8], k: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"mapwright-bench";
    let payload = k.to_le_bytes();
    let mut content = Vec::new();
    leb(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend_from_slice(&payload);
    let mut out = component.to_vec();
    out.push(0); // custom section
    leb(content.len(), &mut out);
    out.extend(content);
    out
}

/// Starts a server, creates `n` connections with chains, sends one user through each (so
/// every chain has run and holds its instances) and reads the RSS.
pub async fn measure(bin: &Path, username_wasm: &Path, n: usize, variant: Variant, http: &reqwest::Client) -> anyhow::Result<Figures> {
    let config = "[server]\nlisten = \"127.0.0.1:0\"\n\n[[tenant]]\nname = \"mem\"\n";
    let server = servers::mapwright(bin, config)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let empty = server.rss_bytes()?;
    let admin = Scim::new("admin", format!("{}/admin/v1/tenants/mem", server.url), server.admin_token()?, http)?;
    let component = if variant == Variant::DistinctBinaries {
        Some(Arc::new(std::fs::read(username_wasm).with_context(|| format!("reading {}", username_wasm.display()))?))
    } else {
        None
    };
    let started = std::time::Instant::now();
    // Two at a time: distinct binaries are compiled on upload, one core each.
    let setup = {
        let (admin, base) = (admin.clone(), server.url.clone());
        drive(2, n, Duration::from_secs(1800), move |k| {
            let (admin, base, component) = (admin.clone(), base.clone(), component.clone());
            async move {
                let Some(idp) = admin.call(admin.send(Method::POST, "/idps", &json!({"name": format!("idp{k}"), "rate_per_second": 0}))).await else { return false };
                let Some(token) = idp["token"].as_str() else { return false };
                let username = match &component {
                    Some(bytes) => {
                        let up = admin.http.post(format!("{}/plugins", admin.base)).bearer_auth(&admin.token).header("content-type", "application/wasm").body(distinct_copy(bytes, k));
                        match admin.call(up).await.and_then(|p| p["hash"].as_str().map(str::to_string)) {
                            Some(h) => format!("sha256:{h}"),
                            None => return false,
                        }
                    }
                    None => "builtin:username".to_string(),
                };
                if admin.call(admin.send(Method::POST, &format!("/idps/idp{k}/chain"), &chain(k, variant, &username))).await.is_none() {
                    return false;
                }
                let Ok(scim) = Scim::new("idp", format!("{base}/scim/v2/mem/idp{k}"), token.to_string(), &admin.http) else { return false };
                scim.ok(scim.send(Method::POST, "/Users", &user(&format!("first.user{k}@bench.example"), k))).await
            }
        })
        .await
    };
    if setup.done < n {
        bail!("only {} of {n} connections were set up", setup.done);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = server.rss_bytes()?;
    Ok(Figures { empty, loaded, connections: n, setup: started.elapsed(), errors: setup.errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_distinct_copy_appends_one_well_formed_custom_section() {
        let base = b"\0asm\x0d\0\x01\0".to_vec();
        let c = distinct_copy(&base, 300);
        assert_eq!(&c[..base.len()], &base[..]);
        let rest = &c[base.len()..];
        // id 0, size 1 + 15 + 8 = 24, name length 15, the name, 8 payload bytes.
        assert_eq!(rest[0], 0);
        assert_eq!(rest[1] as usize, rest.len() - 2);
        assert_eq!(rest[2], 15);
        assert_eq!(&rest[3..18], b"mapwright-bench");
        assert_ne!(distinct_copy(&base, 1), distinct_copy(&base, 2));
    }
}
