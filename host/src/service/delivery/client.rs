//! Talking to one target over HTTP: authentication (bearer or OAuth 2.0 client credentials,
//! refreshed), bounded answers, and what a failure means for the delivery loop.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::egress::{self, EgressPolicy};
use crate::model::TargetCredential;

/// Why a request to a target did not succeed, as the delivery loop needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The target is unreachable, or says it is busy or down for a while (timeouts,
    /// refused connections, 429, 502, 503, 504): the whole target waits and the same event is
    /// tried again. Not the event's fault, so it does not count toward parking it.
    Busy {
        /// How long the target asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
        /// What happened.
        why: String,
    },
    /// The target refused this request: counted toward parking the event.
    Refused {
        /// The status and the start of the answer, or what was wrong with it.
        answer: String,
    },
}

impl Failure {
    /// What happened, for the target's status and the dead letters.
    pub fn describe(&self) -> &str {
        match self {
            Failure::Busy { why, .. } => why,
            Failure::Refused { answer } => answer,
        }
    }
}

/// An answer that succeeded: its status and body (JSON when there is one).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long before its expiry an OAuth token is renewed.
const TOKEN_SLACK: Duration = Duration::from_secs(30);

/// One target's HTTP side: its client, its URL policy and its credential.
pub struct TargetClient {
    http: reqwest::Client,
    policy: EgressPolicy,
    credential: TargetCredential,
    /// The content type of what it sends.
    content_type: &'static str,
    /// The OAuth access token and when it expires.
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

fn excerpt(body: &[u8], cut: bool) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).replace(['\n', '\r'], " ");
    if cut || body.len() > 300 { format!("{text}…") } else { text }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

fn transport(e: &reqwest::Error) -> Failure {
    // The chain says why (refused address, connection refused, timeout…).
    let mut why = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        why = format!("{why}: {s}");
        source = s.source();
    }
    Failure::Busy { retry_after: None, why }
}

impl TargetClient {
    /// A client for a target with this credential, keeping to `policy`, each request bounded by
    /// `timeout`, sending `content_type` bodies.
    pub fn new(policy: EgressPolicy, credential: TargetCredential, timeout: Duration, content_type: &'static str) -> Result<TargetClient, egress::Refused> {
        Ok(TargetClient { http: policy.client(timeout)?, policy, credential, content_type, token: tokio::sync::Mutex::new(None) })
    }

    async fn bearer(&self, fresh: bool) -> Result<Option<String>, Failure> {
        match &self.credential {
            TargetCredential::Bearer { token } => Ok(Some(token.clone())),
            TargetCredential::OAuth { token_url, client_id, client_secret, scope } => {
                let mut cached = self.token.lock().await;
                if !fresh
                    && let Some((t, until)) = cached.as_ref()
                    && Instant::now() < *until
                {
                    return Ok(Some(t.clone()));
                }
                let url = self.policy.check_url(token_url).map_err(|e| Failure::Refused { answer: e.0 })?;
                let mut form = vec![("grant_type", "client_credentials")];
                if let Some(s) = scope {
                    form.push(("scope", s));
                }
                let resp = self.http.post(url).basic_auth(client_id, Some(client_secret)).form(&form).send().await.map_err(|e| transport(&e))?;
                let status = resp.status();
                let (body, cut) = egress::read_bounded(resp).await.map_err(|e| transport(&e))?;
                if !status.is_success() {
                    return Err(Failure::Refused { answer: format!("the token endpoint answered {status}: {}", excerpt(&body, cut)) });
                }
                let v: Value = serde_json::from_slice(&body).map_err(|_| Failure::Refused { answer: format!("the token endpoint's answer is not JSON: {}", excerpt(&body, cut)) })?;
                let token = v["access_token"].as_str().ok_or_else(|| Failure::Refused { answer: "the token endpoint gave no access_token".into() })?.to_string();
                let lifetime = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(300)).saturating_sub(TOKEN_SLACK);
                *cached = Some((token.clone(), Instant::now() + lifetime));
                Ok(Some(token))
            }
            TargetCredential::None | TargetCredential::Webhook { .. } => Ok(None),
        }
    }

    /// Sends a request and reads its answer; a 2xx comes back as an [`Answer`], anything
    /// else as a [`Failure`]. An OAuth token refused with 401 is renewed once.
    pub async fn send(&self, method: Method, url: Url, body: Option<&Value>, headers: &[(&str, String)]) -> Result<Answer, Failure> {
        egress::check_literal(&self.policy, &url).map_err(|e| Failure::Refused { answer: e.0 })?;
        let mut renewed = false;
        loop {
            let mut req = self.http.request(method.clone(), url.clone()).header(reqwest::header::ACCEPT, "application/scim+json, application/json");
            if let Some(token) = self.bearer(renewed).await? {
                req = req.bearer_auth(token);
            }
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(b) = body {
                // Rendered here, not by reqwest: a webhook signs these exact bytes.
                req = req.header(reqwest::header::CONTENT_TYPE, self.content_type).body(b.to_string());
            }
            let resp = req.send().await.map_err(|e| transport(&e))?;
            let status = resp.status();
            let wait = retry_after(&resp);
            if status == StatusCode::UNAUTHORIZED && matches!(self.credential, TargetCredential::OAuth { .. }) && !renewed {
                renewed = true;
                continue;
            }
            let (bytes, cut) = egress::read_bounded(resp).await.map_err(|e| transport(&e))?;
            if status.is_success() {
                let body = if bytes.is_empty() || cut { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
                return Ok(Answer { status, body });
            }
            let answer = format!("HTTP {status}: {}", excerpt(&bytes, cut));
            return Err(match status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => Failure::Busy { retry_after: wait, why: answer },
                s if s.is_redirection() => Failure::Refused { answer: format!("{answer} (redirects are not followed: configure the final URL)") },
                _ => Failure::Refused { answer },
            });
        }
    }
}
