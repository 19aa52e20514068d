//! Delivery targets: the applications the directory is pushed into (a downstream SCIM
//! service provider, or a webhook endpoint), what Mapwright knows of what it sent them, and
//! the events it could not deliver.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Timestamp;

/// What a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A SCIM 2.0 service provider: the directory is provisioned into it.
    Scim,
    /// An HTTPS endpoint receiving each change as a signed JSON event (Standard Webhooks).
    Webhook,
}

impl TargetKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Scim => "scim",
            TargetKind::Webhook => "webhook",
        }
    }

    /// A kind by its stored name.
    pub fn parse(s: &str) -> Option<TargetKind> {
        [TargetKind::Scim, TargetKind::Webhook].into_iter().find(|k| k.as_str() == s)
    }
}

/// How a SCIM target takes an update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMode {
    /// PATCH with the attributes that changed (RFC 7644 §3.5.2).
    #[default]
    Patch,
    /// PUT of the whole user, for targets that handle PATCH badly.
    Put,
}

/// What a SCIM target does with a user the directory no longer has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletePolicy {
    /// `active = false`: the account stays, disabled (what most applications want).
    #[default]
    Deactivate,
    /// DELETE the user.
    Delete,
}

/// A target's settings (stored as JSON; every field has a default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetSettings {
    /// SCIM: how updates are sent.
    pub update: UpdateMode,
    /// SCIM: what a user's removal from the directory does.
    pub delete: DeletePolicy,
    /// Attempts at one event before it is parked (transport failures and answers that say
    /// the target is busy do not count: they pause the whole target instead).
    pub max_attempts: u32,
    /// The first retry's delay, in milliseconds; each next one doubles (with jitter).
    pub retry_base_ms: u64,
    /// The longest delay between retries, in milliseconds.
    pub retry_max_ms: u64,
    /// How long one request may take, in milliseconds.
    pub timeout_ms: u64,
    /// Reconcile the target with the directory this often (none: only when asked or when
    /// its cursor fell behind the feed's retention).
    pub sync_every_secs: Option<u64>,
}

impl Default for TargetSettings {
    fn default() -> Self {
        TargetSettings {
            update: UpdateMode::Patch,
            delete: DeletePolicy::Deactivate,
            max_attempts: 6,
            retry_base_ms: 1000,
            retry_max_ms: 60_000,
            timeout_ms: 15_000,
            sync_every_secs: None,
        }
    }
}

/// How Mapwright authenticates to a target, or signs what it sends. Stored sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TargetCredential {
    /// No authentication (a webhook receiver that checks signatures only has a secret).
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
    /// OAuth 2.0 client credentials: a bearer token fetched from `token_url` and refreshed.
    OAuth {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: String,
        /// The scope asked for, if any.
        scope: Option<String>,
    },
    /// Standard Webhooks signing secrets (`whsec_…`): the newest first; an older one is still
    /// used to sign until its time, so receivers can move to the new one.
    Webhook {
        /// The secrets, newest first.
        secrets: Vec<WebhookSecret>,
    },
}

impl std::fmt::Debug for TargetCredential {
    // Secrets never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TargetCredential::None => "None",
            TargetCredential::Bearer { .. } => "Bearer(..)",
            TargetCredential::OAuth { .. } => "OAuth(..)",
            TargetCredential::Webhook { .. } => "Webhook(..)",
        })
    }
}

/// One webhook signing secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSecret {
    /// `whsec_<base64>`.
    pub secret: String,
    /// When it stops being used (set when a newer one replaced it).
    pub until: Option<Timestamp>,
}

/// A delivery target of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Storage key.
    pub id: i64,
    /// Its tenant.
    pub tenant_id: i64,
    /// Its tenant's name.
    pub tenant: String,
    /// Its name (unique in the tenant).
    pub name: String,
    /// What it speaks.
    pub kind: TargetKind,
    /// The SCIM base URL, or the webhook endpoint.
    pub url: String,
    /// Its settings.
    pub settings: TargetSettings,
    /// A paused target receives nothing; its events wait in the feed.
    pub paused: bool,
    /// The feed position delivered up to (everything at or before it was delivered, parked
    /// or not this target's).
    pub cursor: i64,
    /// A reconciliation is due before it follows the feed again.
    pub needs_sync: bool,
    /// When it was added.
    pub created: Timestamp,
    /// Its last successful delivery.
    pub last_success: Option<Timestamp>,
    /// Its last failure, and when.
    pub last_error: Option<(Timestamp, String)>,
    /// Events delivered.
    pub delivered: i64,
    /// Events parked.
    pub parked: i64,
    /// The shape version it runs (none: resources go out as the directory has them).
    pub shape_version: Option<i64>,
}

/// A new target, with its credential already sealed.
#[derive(Debug, Clone)]
pub struct NewTarget {
    /// Its name.
    pub name: String,
    /// What it speaks.
    pub kind: TargetKind,
    /// Its URL (checked by the caller).
    pub url: String,
    /// Its settings.
    pub settings: TargetSettings,
    /// The sealed credential.
    pub credential: Vec<u8>,
}

/// What a target's copy of a directory resource is, as Mapwright knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// `User` or `Group`.
    pub resource: &'static str,
    /// The directory's id.
    pub uid: String,
    /// The target's id.
    pub remote_id: String,
    /// Whether Mapwright created it or adopted one the target had (it touches no other).
    pub origin: Origin,
    /// What was last sent for it (for PATCH deltas and reconciliation).
    pub sent: Value,
}

/// How a target resource came under Mapwright's management.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Mapwright created it.
    Created,
    /// The target had it (same userName or displayName); Mapwright took it over, recorded.
    Adopted,
}

impl Origin {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Created => "created",
            Origin::Adopted => "adopted",
        }
    }

    /// An origin by its stored name.
    pub fn parse(s: &str) -> Option<Origin> {
        [Origin::Created, Origin::Adopted].into_iter().find(|o| o.as_str() == s)
    }
}

/// Where an undelivered event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadState {
    /// It failed every attempt: waiting for an admin (retry or skip).
    Parked,
    /// A later event of a parked resource, held back so that the resource's events stay in
    /// order; it goes when the parked one is settled.
    Held,
    /// An admin asked for another try.
    Retry,
    /// Delivered after all.
    Delivered,
    /// An admin gave it up.
    Skipped,
}

impl DeadState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadState::Parked => "parked",
            DeadState::Held => "held",
            DeadState::Retry => "retry",
            DeadState::Delivered => "delivered",
            DeadState::Skipped => "skipped",
        }
    }

    /// A state by its stored name.
    pub fn parse(s: &str) -> Option<DeadState> {
        [DeadState::Parked, DeadState::Held, DeadState::Retry, DeadState::Delivered, DeadState::Skipped].into_iter().find(|d| d.as_str() == s)
    }

    /// Whether it still holds its resource's later events back.
    pub fn is_open(self) -> bool {
        matches!(self, DeadState::Parked | DeadState::Held | DeadState::Retry)
    }
}

/// An event a target did not take.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Its id (what `target retry` and `target skip` take).
    pub id: i64,
    /// The target.
    pub target_id: i64,
    /// The feed position of the event (its idempotency key).
    pub seq: i64,
    /// The resource it concerns (`user:<id>`, `group:<id>`): its events are delivered in order.
    pub resource: String,
    /// The event as it would be delivered.
    pub event: Value,
    /// Where it stands.
    pub state: DeadState,
    /// Attempts made.
    pub attempts: u32,
    /// The target's last answer (status and the start of the body), or the failure.
    pub answer: Option<String>,
    /// When it was parked (or held).
    pub at: Timestamp,
    /// Who settled it, and when.
    pub decided: Option<(String, Timestamp)>,
}

/// An event to park or hold.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    /// The feed position.
    pub seq: i64,
    /// The resource it concerns.
    pub resource: String,
    /// The event.
    pub event: Value,
    /// `Parked` or `Held`.
    pub state: DeadState,
    /// Attempts made.
    pub attempts: u32,
    /// The last answer.
    pub answer: Option<String>,
}

/// Changes to a target's state; unset parts stay as they are.
#[derive(Debug, Clone, Default)]
pub struct TargetChange {
    /// Pause (true) or resume (false).
    pub paused: Option<bool>,
    /// Ask for (true) or mark done (false) a reconciliation; done also moves the cursor.
    pub needs_sync: Option<bool>,
    /// With `needs_sync: Some(false)`: the feed position the reconciliation started at.
    pub synced_at: Option<i64>,
    /// New settings.
    pub settings: Option<TargetSettings>,
}

/// What a worker did since it last recorded progress.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The feed position delivered up to (the cursor never moves back).
    pub cursor: i64,
    /// Events delivered since.
    pub delivered: i64,
    /// The last failure, if the last attempt failed (cleared by a success).
    pub error: Option<String>,
}

/// A stored shape version of a target: what it receives, as an ordered chain of shaping
/// plugins. Immutable, like an IdP connection's chain versions: activating one moves the
/// target's pointer, so a rollback is a pointer move too.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShapeVersion {
    /// The target.
    pub target_id: i64,
    /// 1, 2, 3… per target.
    pub number: i64,
    /// The shaping plugins, in order.
    pub entries: Vec<super::ChainEntryDef>,
    /// Who made it.
    pub author: String,
    /// Why.
    pub note: String,
    /// When.
    pub created: Timestamp,
    /// Whether the target runs this version now.
    pub active: bool,
}

/// One activation of a target's shape versions (`None`: shaping turned off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShapeActivation {
    /// The version activated.
    pub number: Option<i64>,
    /// When.
    pub at: Timestamp,
    /// By whom.
    pub author: String,
}
