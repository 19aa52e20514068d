//! Where Mapwright may send requests, and the HTTP client that keeps to it.
//!
//! A delivery target's URL is the one place a tenant admin points the server at the network,
//! so it is checked when the target is added and again at every connection (a name may
//! resolve elsewhere later): no link-local addresses (cloud metadata services live there),
//! no multicast or unspecified addresses, and no loopback or private ranges unless the
//! configuration allows them (`[delivery] allow_private_targets`, for targets on the same
//! network, and for the tests). Redirects are not followed: a target answers where it was
//! configured. Answers are read up to a bound, and every request has a timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

/// The largest answer body read from a target; the rest is not read.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Hosts that name a cloud metadata service whatever they resolve to.
const METADATA_HOSTS: &[&str] = &["metadata.google.internal", "metadata.goog", "metadata"];

/// Where requests may go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Loopback, private (RFC 1918, unique local, CGNAT) addresses allowed.
    pub allow_private: bool,
}

/// A URL or an address Mapwright will not send to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl EgressPolicy {
    /// Checks a target URL as given: an `http` or `https` URL without credentials, whose host
    /// is not a refused address or a metadata host name.
    pub fn check_url(&self, text: &str) -> Result<Url, Refused> {
        let url = Url::parse(text.trim()).map_err(|e| Refused(format!("{text:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused(format!("{text:?}: only http and https URLs are delivered to")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused(format!("{text:?}: put credentials in the target's token, not in its URL")));
        }
        let host = url.host().ok_or_else(|| Refused(format!("{text:?} has no host")))?;
        match host {
            url::Host::Ipv4(ip) => self.check_ip(IpAddr::V4(ip))?,
            url::Host::Ipv6(ip) => self.check_ip(IpAddr::V6(ip))?,
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if METADATA_HOSTS.contains(&name.as_str()) {
                    return Err(Refused(format!("{name} is a cloud metadata service")));
                }
            }
        }
        Ok(url)
    }

    /// Checks one address a target resolves to.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = match ip {
            // An IPv4-mapped IPv6 address is the IPv4 address.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match classify(ip) {
            Class::Public => Ok(()),
            Class::Private if self.allow_private => Ok(()),
            Class::Private => Err(Refused(format!("{ip} is a loopback or private address (allow it with [delivery] allow_private_targets = true)"))),
            Class::Never(why) => Err(Refused(format!("{ip} is {why}: never a delivery target"))),
        }
    }

    /// An HTTP client that keeps to this policy: names resolve only to allowed addresses,
    /// redirects are not followed, every request times out after `timeout`.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, Refused> {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(Resolver(*self)))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .pool_max_idle_per_host(4)
            .user_agent(concat!("mapwright/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Refused(format!("building the HTTP client: {e}")))
    }
}

enum Class {
    Public,
    Private,
    Never(&'static str),
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let o = ip.octets();
    if ip.is_link_local() {
        return Class::Never("link-local (cloud metadata services live there)");
    }
    if ip.is_unspecified() || o[0] == 0 {
        return Class::Never("an unspecified address");
    }
    if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        return Class::Never("a multicast, broadcast or reserved address");
    }
    // Alibaba Cloud's metadata service sits in the shared range.
    if o == [100, 100, 100, 200] {
        return Class::Never("a cloud metadata service");
    }
    let cgnat = o[0] == 100 && (64..128).contains(&o[1]);
    if ip.is_loopback() || ip.is_private() || cgnat {
        return Class::Private;
    }
    Class::Public
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    let s = ip.segments();
    if (s[0] & 0xffc0) == 0xfe80 {
        return Class::Never("link-local");
    }
    if ip.is_unspecified() {
        return Class::Never("an unspecified address");
    }
    if ip.is_multicast() {
        return Class::Never("a multicast address");
    }
    // AWS's metadata service over IPv6.
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Class::Never("a cloud metadata service");
    }
    if ip.is_loopback() || (s[0] & 0xfe00) == 0xfc00 {
        return Class::Private;
    }
    Class::Public
}

/// Resolves names with the system resolver and keeps only the addresses the policy allows,
/// so a name that points at a refused address (now, or after a DNS change) fails to connect.
struct Resolver(EgressPolicy);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        Box::pin(async move {
            let host = name.as_str().to_string();
            if METADATA_HOSTS.contains(&host.trim_end_matches('.').to_ascii_lowercase().as_str()) {
                return Err(Box::new(Refused(format!("{host} is a cloud metadata service"))) as Box<dyn std::error::Error + Send + Sync>);
            }
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check_ip(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.map(|r| r.0).unwrap_or_else(|| "no address".into());
                return Err(Box::new(Refused(format!("{host}: {why}"))) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks the address of a URL whose host is an IP literal (the resolver never sees those).
pub fn check_literal(policy: &EgressPolicy, url: &Url) -> Result<(), Refused> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => policy.check_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => policy.check_ip(IpAddr::V6(ip)),
        _ => Ok(()),
    }
}

/// Reads an answer's body up to [`MAX_ANSWER_BYTES`]; past that, the rest is left unread and
/// the body counts as cut (a target cannot make Mapwright buffer a 100 MB answer).
pub async fn read_bounded(mut resp: reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            body.extend_from_slice(&chunk[..MAX_ANSWER_BYTES - body.len()]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn metadata_link_local_and_odd_urls_are_refused_private_ranges_by_switch() {
        let strict = EgressPolicy::default();
        let lax = EgressPolicy { allow_private: true };
        for bad in [
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
            "http://100.100.100.200/",
            "http://metadata.google.internal/computeMetadata",
            "http://0.0.0.0:8080/",
            "http://224.0.0.1/",
            "ftp://example.com/",
            "not a url",
            "https://user:pw@example.com/",
            "file:///etc/passwd",
        ] {
            assert!(strict.check_url(bad).is_err(), "{bad}");
            assert!(lax.check_url(bad).is_err(), "{bad} is refused even with private targets allowed");
        }
        for private in ["http://127.0.0.1:9000/scim/v2", "http://10.1.2.3/", "http://[::1]/", "http://192.168.0.4/", "http://100.64.0.1/", "http://[fd12::1]/"] {
            assert!(strict.check_url(private).is_err(), "{private}");
            assert!(lax.check_url(private).is_ok(), "{private}");
        }
        assert_eq!(strict.check_url("https://scim.example.com/v2").unwrap().host_str(), Some("scim.example.com"));
        assert!(strict.check_url("http://8.8.8.8/").is_ok());
        assert!(strict.check_url("http://169.254.169.254/").unwrap_err().0.contains("link-local"));
    }

    #[tokio::test]
    async fn names_that_resolve_to_refused_addresses_do_not_connect() {
        let strict = EgressPolicy::default();
        let client = strict.client(Duration::from_secs(2)).unwrap();
        let err = client.get("http://localhost:9/").send().await.unwrap_err();
        let chain = format!("{:?}", err);
        assert!(chain.contains("loopback or private"), "{chain}");
    }
}
