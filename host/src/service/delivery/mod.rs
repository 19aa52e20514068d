//! Delivery: the tenant's directory pushed into the applications people run.
//!
//! A tenant has any number of **targets**: a downstream SCIM 2.0 service provider (the
//! directory is provisioned into it: users, groups, memberships as deltas, deactivations), or
//! a webhook endpoint (each change as a JSON event signed per Standard Webhooks). The change
//! feed is the outbox: every target follows it from a cursor of its own ([`worker`]), so a
//! change reaches every target at least once, in feed order per resource, off the request
//! path; failures are retried with backoff, then parked for an admin.
//!
//! [`DeliveryService`] is the administration of targets (the CLI and the admin API call it);
//! [`engine`] runs one worker per active target in the server.

pub mod client;
pub mod egress;
pub mod engine;
pub mod quirks;
pub mod reconcile;
pub mod shape_versions;
pub mod shaping;
pub mod sink;
pub mod webhook;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::model::{DeadLetter, DeadState, Feed, Target, TargetChange, TargetCredential, TargetKind, TargetSettings, Tenant, Timestamp, WebhookSecret, check_name};
use crate::secrets::SecretBox;
use crate::service::admin::{AdminError, AdminResult};
use crate::service::rules::RuleManager;
use crate::store::Store;
use client::TargetClient;
use egress::EgressPolicy;
use sink::{ScimSink, Sink, WebhookSink};

/// How Mapwright authenticates to a new target.
#[derive(Debug, Clone, Default)]
pub enum CredentialRequest {
    /// None (a SCIM target open on its network), or for a webhook: a new secret is made.
    #[default]
    Default,
    /// A bearer token.
    Bearer(String),
    /// OAuth 2.0 client credentials.
    OAuth {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: String,
        /// The scope, if any.
        scope: Option<String>,
    },
    /// A given webhook secret (`whsec_…`).
    WebhookSecret(String),
}

/// A new target as asked for.
#[derive(Debug, Clone)]
pub struct TargetRequest {
    /// Its name.
    pub name: String,
    /// What it speaks.
    pub kind: TargetKind,
    /// The SCIM base URL or the webhook endpoint.
    pub url: String,
    /// How to authenticate (or sign).
    pub credential: CredentialRequest,
    /// Its settings.
    pub settings: TargetSettings,
}

/// A target's state as an admin reads it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// The target.
    #[serde(flatten)]
    pub target: Target,
    /// Changes not delivered yet (capped at 10,000).
    pub lag_events: usize,
    /// When the oldest of them was recorded.
    pub oldest_undelivered: Option<Timestamp>,
    /// Events parked or held, oldest first.
    pub dead_letters: Vec<DeadLetter>,
}

/// The administration of delivery targets.
pub struct DeliveryService<S: Store> {
    store: Arc<S>,
    secrets: SecretBox,
    policy: EgressPolicy,
    /// Loads the targets' shape rules (plugins).
    rules: Option<Arc<RuleManager<S>>>,
}

const LAG_CAP: usize = 10_000;

impl<S: Store> DeliveryService<S> {
    /// The service over `store`, sealing credentials with `secrets`, sending where `policy`
    /// allows.
    pub fn new(store: Arc<S>, secrets: SecretBox, policy: EgressPolicy) -> DeliveryService<S> {
        DeliveryService { store, secrets, policy, rules: None }
    }

    /// Loads the targets' shape rules with `rules` (without it, a target that has shape rules
    /// cannot be delivered to).
    pub fn with_rules(mut self, rules: Arc<RuleManager<S>>) -> DeliveryService<S> {
        self.rules = Some(rules);
        self
    }

    /// Stops the plugin engine the shape rules run on (a CLI command's, when it is done).
    pub fn shutdown(&self) {
        if let Some(r) = &self.rules {
            r.runtime().shutdown();
        }
    }

    /// The store the workers read.
    pub(crate) fn store(&self) -> &Arc<S> {
        &self.store
    }

    fn seal(&self, c: &TargetCredential) -> AdminResult<Vec<u8>> {
        let text = serde_json::to_vec(c).map_err(|e| AdminError::Failed(e.into()))?;
        self.secrets.seal(&text).map_err(|e| AdminError::Failed(e.into()))
    }

    fn open(&self, sealed: &[u8]) -> AdminResult<TargetCredential> {
        let text = self.secrets.open(sealed).map_err(|e| AdminError::Failed(e.into()))?;
        serde_json::from_slice(&text).map_err(|e| AdminError::Failed(e.into()))
    }

    /// Adds a target to a tenant. Returns it, and the webhook secret when one was made (shown
    /// this once). It starts with a reconciliation (SCIM) and then follows the feed from now.
    pub async fn add(&self, tenant: &Tenant, req: TargetRequest) -> AdminResult<(Target, Option<String>)> {
        check_name("target", &req.name)?;
        let url = self.policy.check_url(&req.url).map_err(|e| AdminError::Invalid(e.0))?;
        let mut shown = None;
        let credential = match (req.kind, req.credential) {
            (TargetKind::Scim, CredentialRequest::Default) => TargetCredential::None,
            (TargetKind::Scim, CredentialRequest::Bearer(token)) if !token.trim().is_empty() => TargetCredential::Bearer { token },
            (TargetKind::Scim, CredentialRequest::OAuth { token_url, client_id, client_secret, scope }) => {
                self.policy.check_url(&token_url).map_err(|e| AdminError::Invalid(format!("the token URL: {}", e.0)))?;
                TargetCredential::OAuth { token_url, client_id, client_secret, scope }
            }
            (TargetKind::Webhook, CredentialRequest::Default) => {
                let secret = webhook::new_secret().map_err(|e| AdminError::Failed(anyhow::anyhow!(e)))?;
                shown = Some(secret.clone());
                TargetCredential::Webhook { secrets: vec![WebhookSecret { secret, until: None }] }
            }
            (TargetKind::Webhook, CredentialRequest::WebhookSecret(secret)) => {
                webhook::key(&secret).map_err(|e| AdminError::Invalid(e.to_string()))?;
                TargetCredential::Webhook { secrets: vec![WebhookSecret { secret, until: None }] }
            }
            (kind, c) => return Err(AdminError::Invalid(format!("a {} target takes no {c:?} credential", kind.as_str()))),
        };
        let new = crate::model::NewTarget { name: req.name, kind: req.kind, url: url.to_string(), settings: req.settings, credential: self.seal(&credential)? };
        let target = self.store.add_target(tenant.id, new).await?;
        tracing::info!(tenant = %tenant.name, target = %target.name, kind = target.kind.as_str(), "delivery target added");
        Ok((target, shown))
    }

    /// The targets of a tenant (or of all).
    pub async fn targets(&self, tenant: Option<&Tenant>) -> AdminResult<Vec<Target>> {
        Ok(self.store.targets(tenant.map(|t| t.id)).await?)
    }

    /// A tenant's target by name.
    pub async fn target(&self, tenant: &Tenant, name: &str) -> AdminResult<Target> {
        self.store.targets(Some(tenant.id)).await?.into_iter().find(|t| t.name == name).ok_or_else(|| AdminError::NotFound(format!("{} has no delivery target named '{name}'", tenant.name)))
    }

    /// A target with its lag and its dead letters.
    pub async fn status(&self, target: Target) -> AdminResult<TargetStatus> {
        let (lag_events, oldest_undelivered) = match self.store.changes(target.tenant_id, target.cursor, LAG_CAP).await? {
            Feed::Changes { changes, .. } => (changes.len(), changes.first().map(|c| c.at.clone())),
            Feed::Expired { .. } => (LAG_CAP, None),
        };
        let dead_letters = self.store.dead_letters(target.id, true).await?;
        Ok(TargetStatus { target, lag_events, oldest_undelivered, dead_letters })
    }

    /// Every target's lag, for the metrics: (target, events behind, seconds behind).
    pub async fn lags(&self) -> AdminResult<Vec<(Target, usize, f64)>> {
        let mut out = Vec::new();
        for t in self.store.targets(None).await? {
            let s = self.status(t).await?;
            let age = s.oldest_undelivered.as_ref().map(|at| at.elapsed().as_secs_f64()).unwrap_or(0.0);
            out.push((s.target, s.lag_events, age));
        }
        Ok(out)
    }

    /// Removes a target (what it created in the application stays there).
    pub async fn remove(&self, target: &Target) -> AdminResult<()> {
        self.store.remove_target(target.id).await?;
        tracing::info!(tenant = %target.tenant, target = %target.name, "delivery target removed");
        Ok(())
    }

    /// Pauses (its changes wait in the feed) or resumes a target.
    pub async fn set_paused(&self, target: &Target, paused: bool) -> AdminResult<Target> {
        Ok(self.store.update_target(target.id, TargetChange { paused: Some(paused), ..Default::default() }).await?)
    }

    /// Changes a target's settings.
    pub async fn set_settings(&self, target: &Target, settings: TargetSettings) -> AdminResult<Target> {
        Ok(self.store.update_target(target.id, TargetChange { settings: Some(settings), ..Default::default() }).await?)
    }

    /// Asks for a reconciliation (the target's worker runs it next), or with `dry_run` plans
    /// one now and returns it, writing nothing.
    pub async fn sync(&self, target: &Target, dry_run: bool) -> AdminResult<Option<reconcile::Plan>> {
        if target.kind != TargetKind::Scim {
            return Err(AdminError::Invalid("a webhook target has nothing to reconcile: it is sent every change".into()));
        }
        if !dry_run {
            self.store.update_target(target.id, TargetChange { needs_sync: Some(true), ..Default::default() }).await?;
            return Ok(None);
        }
        let Sink::Scim(sink) = self.sink(target).await? else { return Ok(None) };
        let plan = reconcile::plan(&*self.store, target, &sink).await.map_err(|f| AdminError::Failed(anyhow::anyhow!("reading the target: {}", f.describe())))?;
        Ok(Some(plan))
    }

    /// Tries parked events again (`ids`, or all of the target's), in order per resource.
    pub async fn retry(&self, target: &Target, ids: Option<Vec<i64>>, by: &str) -> AdminResult<Vec<DeadLetter>> {
        Ok(self.store.decide_dead(target.id, ids, DeadState::Retry, by).await?)
    }

    /// Gives parked events up (`ids`, or all); the events held behind them then go.
    pub async fn skip(&self, target: &Target, ids: Option<Vec<i64>>, by: &str) -> AdminResult<Vec<DeadLetter>> {
        Ok(self.store.decide_dead(target.id, ids, DeadState::Skipped, by).await?)
    }

    /// A new credential. A webhook target gets a new secret (returned, shown once); the old
    /// one keeps signing beside it for `overlap_secs`, so receivers can move over. A SCIM
    /// target takes the `token` given.
    pub async fn rotate(&self, target: &Target, overlap_secs: u64, token: Option<String>) -> AdminResult<Option<String>> {
        let current = self.open(&self.store.target_credential(target.id).await?)?;
        let (next, shown) = match (current, token) {
            (TargetCredential::Webhook { secrets }, None) => {
                let secret = webhook::new_secret().map_err(|e| AdminError::Failed(anyhow::anyhow!(e)))?;
                let until = Timestamp::now().plus_secs(overlap_secs.min(crate::service::admin::MAX_OVERLAP_SECS) as i64);
                let now = Timestamp::now();
                let mut kept: Vec<WebhookSecret> = secrets
                    .into_iter()
                    .filter(|s| s.until.as_ref().is_none_or(|u| *u > now))
                    .map(|s| WebhookSecret { until: Some(s.until.map_or(until.clone(), |u| u.min(until.clone()))), ..s })
                    .collect();
                kept.insert(0, WebhookSecret { secret: secret.clone(), until: None });
                (TargetCredential::Webhook { secrets: kept }, Some(secret))
            }
            (TargetCredential::Webhook { .. }, Some(_)) => return Err(AdminError::Invalid("a webhook target's secret is made by the server: rotate without --token".into())),
            (_, Some(token)) if !token.trim().is_empty() => (TargetCredential::Bearer { token }, None),
            _ => return Err(AdminError::Invalid("give the target's new bearer token".into())),
        };
        self.store.set_target_credential(target.id, self.seal(&next)?).await?;
        tracing::info!(tenant = %target.tenant, target = %target.name, "delivery target credential rotated");
        Ok(shown)
    }

    /// The sink of a target: its HTTP client with its credential opened.
    pub async fn sink(&self, target: &Target) -> AdminResult<Sink<S>> {
        let credential = self.open(&self.store.target_credential(target.id).await?)?;
        let url = self.policy.check_url(&target.url).map_err(|e| AdminError::Invalid(e.0))?;
        let timeout = Duration::from_millis(target.settings.timeout_ms.max(100));
        let shaper = self.shaper(target).await?;
        Ok(match (target.kind, credential) {
            (TargetKind::Webhook, TargetCredential::Webhook { secrets }) => {
                let client = TargetClient::new(self.policy, TargetCredential::None, timeout, "application/json").map_err(|e| AdminError::Failed(anyhow::anyhow!(e.0)))?;
                Sink::Webhook(WebhookSink::new(client, url, secrets, shaper))
            }
            (TargetKind::Scim, credential) => {
                let client = TargetClient::new(self.policy, credential, timeout, "application/scim+json").map_err(|e| AdminError::Failed(anyhow::anyhow!(e.0)))?;
                Sink::Scim(ScimSink::new(client, url, target.clone(), self.store.clone(), shaper))
            }
            (TargetKind::Webhook, _) => return Err(AdminError::Failed(anyhow::anyhow!("the webhook target has no signing secret"))),
        })
    }

    /// What makes a running worker out of date: its URL, settings, state or credential.
    pub(crate) async fn fingerprint(&self, target: &Target) -> AdminResult<String> {
        use sha2::{Digest, Sha256};
        let sealed = self.store.target_credential(target.id).await?;
        let mut h = Sha256::new();
        h.update(target.url.as_bytes());
        h.update(serde_json::to_vec(&target.settings).unwrap_or_default());
        h.update([u8::from(target.paused)]);
        h.update(target.shape_version.unwrap_or(0).to_le_bytes());
        h.update(&sealed);
        Ok(hex::encode(h.finalize()))
    }
}
