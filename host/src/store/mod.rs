//! Persistence behind a narrow trait, so another backend (PostgreSQL) can be added later.
//!
//! Two layers are stored side by side: the **IdP view** (each connection's users and groups
//! exactly as the IdP wrote them, what SCIM GET returns) and the **directory** (the effective
//! entries, app groups and memberships the application consumes, after the mapping pipeline).
//! Every write takes both layers in one transaction.

pub mod directory;
pub mod rules;
pub mod sqlite;

use std::future::Future;

use serde_json::Value;

use crate::scim::list::ListQuery;
use crate::scim::patch::MemberOp;
use crate::scim::resource::Meta;
use rules::{Activation, ChainDefinition, ChainVersion, PluginRecord, VersionNote};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("the resource changed concurrently")]
    VersionMismatch,
    #[error("{0}")]
    InvalidReference(String),
    #[error("storage failure: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
    pub created: String,
}

/// The IdP kinds whose dialect details differ where IdPs' habits conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IdpKind {
    Generic,
    Entra,
    Okta,
    Onelogin,
    Jumpcloud,
    Ping,
    Keycloak,
    Idcs,
}

impl IdpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdpKind::Generic => "generic",
            IdpKind::Entra => "entra",
            IdpKind::Okta => "okta",
            IdpKind::Onelogin => "onelogin",
            IdpKind::Jumpcloud => "jumpcloud",
            IdpKind::Ping => "ping",
            IdpKind::Keycloak => "keycloak",
            IdpKind::Idcs => "idcs",
        }
    }
    pub fn parse(s: &str) -> Option<IdpKind> {
        <IdpKind as clap::ValueEnum>::from_str(s, true).ok()
    }
}

/// Token-bucket settings of one IdP connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_second: 50.0, burst: 200 }
    }
}

/// One IdP connection: the scope every SCIM request runs in.
#[derive(Debug, Clone, PartialEq)]
pub struct IdpConnection {
    pub id: i64,
    pub tenant_id: i64,
    pub tenant: String,
    pub name: String,
    pub kind: IdpKind,
    pub rate: RateLimit,
    pub disabled: bool,
    pub created: String,
}

#[derive(Debug, Clone)]
pub struct NewIdp {
    pub name: String,
    pub kind: IdpKind,
    pub rate: RateLimit,
}

/// A stored bearer token: only the hash of its secret part.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub idp: IdpConnection,
    pub secret_hash: Vec<u8>,
    pub expires: Option<String>,
}

/// A stored admin token: global (`tenant: None`) or scoped to one tenant.
#[derive(Debug, Clone)]
pub struct AdminTokenRecord {
    pub name: String,
    pub role: TokenRole,
    pub tenant: Option<Tenant>,
    pub secret_hash: Vec<u8>,
}

/// What an admin-table token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    /// The admin API (and reading the directory).
    Admin,
    /// Only reading the directory (`/directory/v1`): what an application is given.
    Directory,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Directory => "directory",
        }
    }
}

/// What deprovisioning does to a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum DeprovisionAction {
    /// Keep the entry, inactive, memberships snapshotted.
    Disable,
    /// Soft-delete the entry; purge it after this many days (0: at the next purge).
    Delete { retention_days: u32 },
    /// Keep the entry but remove (and snapshot) its memberships.
    StripGroups,
    /// Leave the entry as it is, active.
    Keep,
}

/// A change of the user's lifecycle that comes with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifecycle {
    #[default]
    Unchanged,
    /// The IdP deactivated the user.
    Deprovision(DeprovisionAction),
    /// The IdP reactivated the user; `restore` re-grants what deprovisioning snapshotted.
    Reactivate { restore: bool },
    /// The IdP deactivated the user past the connection's guard threshold: the IdP view
    /// records it, the entry stays as it is, and the action waits for an admin.
    Held(DeprovisionAction),
}

/// A destructive operation held by a connection's guard until an admin decides.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HeldOp {
    pub id: i64,
    pub idp: String,
    /// `deactivate`, `delete` or `remove-members`.
    pub kind: String,
    /// The IdP user's (or group's) SCIM id.
    pub resource_id: String,
    /// The directory entry it would change (or which members of which group).
    pub user_name: String,
    /// What deprovisioning would do (none for membership removals).
    pub action: Option<DeprovisionAction>,
    pub request_id: String,
    pub at: String,
    /// `held`, `approved`, `rejected`, or `superseded` (the IdP reactivated the user first).
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
}

/// The directory entry a user maps to (the output of the mapping pipeline).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntryWrite {
    pub user_name: String,
    pub active: bool,
    pub attributes: Value,
    /// App groups the connection's rules grant this user (memberships owned by the rules).
    pub grant: Vec<String>,
    /// App groups the rules take back (only memberships the rules granted).
    pub revoke: Vec<String>,
    pub lifecycle: Lifecycle,
}

/// What a create does when the directory already has the user (same mapped username, or
/// an IdP user of the tenant with the same email).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "policy", rename_all = "lowercase", deny_unknown_fields)]
pub enum MatchPolicy {
    /// Answer 409 `uniqueness`.
    #[default]
    Conflict,
    /// Link the new IdP user to the existing entry, if the matched address's domain is one of
    /// `verified_domains` (any domain when the list is empty).
    Adopt {
        #[serde(default)]
        verified_domains: Vec<String>,
    },
}

/// A user write: the IdP view and the directory entry, stored together.
#[derive(Debug, Clone)]
pub struct UserWrite {
    pub body: Value,
    pub entry: EntryWrite,
    pub matching: MatchPolicy,
}

/// What the connection's rules decided for one user whose IdP group membership changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberRule {
    /// App groups of the IdP group the user is added to that are not granted.
    pub skip: Vec<String>,
    /// App groups of the IdP group the user is removed from that the user keeps (the
    /// membership becomes owned by the rules).
    pub keep: Vec<String>,
    /// Other app groups the rules grant or take back (rule-owned memberships).
    pub grant: Vec<String>,
    pub revoke: Vec<String>,
}

/// Per member (SCIM id) rules for a group update; members without an entry get the default.
pub type MemberRules = std::collections::HashMap<String, MemberRule>;

/// A group write: the IdP view (without members) and the app groups it maps to.
#[derive(Debug, Clone)]
pub struct GroupWrite {
    pub body: Value,
    pub targets: Vec<String>,
}

/// A change to a group: its attributes (if they changed) and member deltas in order, with
/// the rules' decisions for the members concerned, applied if the group is still at
/// `expected_version`.
#[derive(Debug, Clone)]
pub struct GroupUpdate {
    pub expected_version: i64,
    pub attributes: Option<GroupWrite>,
    pub members: Vec<MemberOp>,
    pub rules: MemberRules,
    /// The most entries the write may take memberships from now (the guard's budget); past
    /// it they are all held for an admin. `None`: no limit.
    pub removal_budget: Option<u32>,
}

/// A group member (a user id) or a user's group (a group id and its name).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub value: String,
    pub display: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StoredUser {
    pub meta: Meta,
    pub body: Value,
    /// The IdP's groups the user belongs to (`None` when not requested).
    pub groups: Option<Vec<Member>>,
}

#[derive(Debug, Clone)]
pub struct StoredGroup {
    pub meta: Meta,
    pub body: Value,
    /// `None` when not requested: members are never loaded unless returned.
    pub members: Option<Vec<Member>>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub total: usize,
    pub items: Vec<T>,
}

/// What the directory holds for one entry (the application's view).
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryEntry {
    pub user_name: String,
    pub active: bool,
    pub attributes: Value,
    pub groups: Vec<String>,
    /// Soft-deleted: hidden from the application, purged after `purge_after`.
    pub deleted: bool,
    pub purge_after: Option<String>,
}

impl DirectoryEntry {
    /// The read-only view rules receive as `current`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"userName": self.user_name, "active": self.active, "attributes": self.attributes, "groups": self.groups})
    }
}

/// Why one decision was made: which plugin, which of its rules, the reason it gave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecisionRecord {
    pub plugin: String,
    pub rule: String,
    pub reason: String,
}

/// Who made a change and by which rules. The store writes it as an audit record in the
/// same transaction as the change, so there is never a change without its record.
#[derive(Debug, Clone, Default)]
pub struct AuditInfo {
    /// `idp:<tenant>/<connection>` or `admin:<name>`.
    pub actor: String,
    pub request_id: String,
    /// `create`, `replace`, `patch`, `delete`.
    pub operation: String,
    /// The chain version whose rules decided (none: identity mapping).
    pub chain_version: Option<i64>,
    pub decisions: Vec<DecisionRecord>,
}

/// One audit record: a change to the directory or to an IdP's view, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: String,
    pub tenant: String,
    /// The IdP connection the change came through, if any.
    pub idp: Option<String>,
    pub actor: String,
    pub request_id: String,
    pub operation: String,
    /// `User` or `Group`.
    pub resource_type: String,
    /// The SCIM id of the IdP's resource.
    pub resource_id: String,
    /// The directory entry's userName after the change (before it, for a deletion).
    pub entry: Option<String>,
    pub chain_version: Option<i64>,
    pub decisions: Vec<DecisionRecord>,
    /// Before/after of what changed: directory fields with their values, the IdP view's
    /// changed attribute names, group members added and removed.
    pub changes: Value,
}

/// Which audit records to read (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub tenant_id: i64,
    pub idp_id: Option<i64>,
    /// A SCIM resource id.
    pub resource_id: Option<String>,
    /// A directory entry, by its current userName: its whole history, renames included.
    pub entry: Option<String>,
    /// RFC 3339 bounds, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Only records older than this id (paging).
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// Where a membership of a directory entry comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MembershipSource {
    /// The app group.
    pub group: String,
    /// `idp-group` (an IdP group's membership), `rule` (granted by a connection's rules),
    /// `local` (granted in the application; no sync removes it) or `held` (removed by an IdP
    /// past the guard's cap, waiting for an admin).
    pub kind: String,
    /// The IdP connection that owns it.
    pub idp: String,
    /// For `idp-group`: the IdP group's displayName.
    pub via: Option<String>,
}

/// Everything behind one directory entry: its state, who owns each membership, which IdP
/// users map to it, and the recorded decisions that made it so.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explanation {
    pub user_name: String,
    pub active: bool,
    pub deleted: bool,
    pub attributes: Value,
    pub memberships: Vec<MembershipSource>,
    /// (IdP connection, SCIM id) of each IdP user that maps to the entry.
    pub idp_users: Vec<(String, String)>,
    /// Who owns each attribute: an IdP connection's name, or `local`.
    pub attribute_owners: Value,
    pub history: Vec<AuditRecord>,
}

/// A user whose rules are re-applied: where it is (`pk`, the resumable cursor), the IdP
/// view version it was mapped from (the write is skipped if the IdP changed it meanwhile),
/// and the entry the rules map it to now.
#[derive(Debug, Clone)]
pub struct ReapplyUser {
    pub pk: i64,
    pub id: String,
    pub version: i64,
    pub entry: EntryWrite,
    pub audit: AuditInfo,
}

/// A group whose rules are re-applied, with the app groups it maps to now.
#[derive(Debug, Clone)]
pub struct ReapplyGroup {
    pub pk: i64,
    pub id: String,
    pub targets: Vec<String>,
    /// The guard's budget: past it, the memberships a remapping takes away are held.
    pub removal_budget: Option<u32>,
    pub audit: AuditInfo,
}

/// What re-applying did, or would do, to one resource.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReapplyOutcome {
    /// `User` or `Group`.
    pub resource_type: String,
    pub id: String,
    /// The entry's userName before (users) or the IdP group's displayName.
    pub name: String,
    /// `changed`, `unchanged`, `skipped` (the IdP changed it meanwhile; its own write applied
    /// the rules) or `failed` (a rule refused it, or the change would collide).
    pub status: String,
    pub changes: Value,
    pub error: Option<String>,
}

/// How a re-apply batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReapplyMode {
    /// Computed in a transaction that is rolled back: nothing is written (preview).
    Preview,
    /// Committed, together with the job's progress (so a crash resumes after this batch):
    /// the batch ends at storage key `cursor`; `refused` items failed before reaching the
    /// store (a rule refused them) and count as seen and failed.
    Job { id: i64, cursor: i64, refused: i64 },
}

/// A re-apply run of one connection, resumable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReapplyJob {
    pub id: i64,
    pub idp_id: i64,
    pub chain_version: Option<i64>,
    /// `users`, `groups`, `done` or `failed`.
    pub phase: String,
    /// The last resource (storage key) of the phase that was processed.
    pub cursor: i64,
    pub seen: i64,
    pub changed: i64,
    pub failed: i64,
    pub total: i64,
    pub author: String,
    pub started: String,
    pub updated: String,
    pub finished: Option<String>,
    pub error: Option<String>,
}

/// Where the directory no longer matches what one connection's IdP says.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DriftReport {
    /// Entries of the tenant no IdP user of this connection maps to: `orphan` (no IdP user
    /// at all: created locally, or kept after the IdP deleted its user) or `other-connection`.
    pub untouched: Vec<DriftEntry>,
    /// Members of this connection's IdP groups missing from an app group the group maps to
    /// (removed locally).
    pub missing_memberships: Vec<DriftMembership>,
    /// Members of app groups this connection's IdP groups map to that hold the membership
    /// through something else (rules, another connection, the application).
    pub extra_memberships: Vec<DriftMembership>,
    /// Users this connection's IdP deactivated whose entries still hold app groups.
    pub inactive_with_groups: Vec<DriftEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftEntry {
    pub user_name: String,
    /// Why it is listed (`orphan`, `other-connection`), or the groups it still holds.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftMembership {
    pub group: String,
    pub user_name: String,
    /// The IdP group it should come from (missing), or who holds it (extra).
    pub detail: String,
}

/// A change made in the application to one directory entry: attributes it sets (owned
/// locally from then on, so no IdP write or re-apply replaces them; `null` gives one back to
/// the IdPs) and groups it grants or takes back (local memberships only).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalChange {
    #[serde(default)]
    pub attributes: serde_json::Map<String, Value>,
    #[serde(default)]
    pub add_groups: Vec<String>,
    #[serde(default)]
    pub remove_groups: Vec<String>,
}

/// One decision where a shadow version and the active one differed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShadowDiff {
    pub active_version: Option<i64>,
    pub shadow_version: i64,
    pub resource_type: String,
    /// The IdP's userName of the user (or displayName of the group).
    pub resource: String,
    pub operation: String,
    pub request_id: String,
    /// `{field: [active, shadow]}` for every field that differs (or the shadow's error).
    pub diff: Value,
    pub at: String,
}

/// The storage operations the service needs. Every method is one transaction.
pub trait Store: Send + Sync + 'static {
    fn create_tenant(&self, name: &str) -> impl Future<Output = StoreResult<Tenant>> + Send;
    fn list_tenants(&self) -> impl Future<Output = StoreResult<Vec<Tenant>>> + Send;
    fn create_idp(&self, tenant: &str, idp: NewIdp) -> impl Future<Output = StoreResult<IdpConnection>> + Send;
    fn list_idps(&self, tenant: Option<&str>) -> impl Future<Output = StoreResult<Vec<IdpConnection>>> + Send;
    /// Changes a connection's kind and rate limit.
    fn update_idp(&self, idp_id: i64, kind: IdpKind, rate: RateLimit) -> impl Future<Output = StoreResult<()>> + Send;
    fn find_idp(&self, tenant: &str, idp: &str) -> impl Future<Output = StoreResult<Option<IdpConnection>>> + Send;
    /// Adds a token; existing tokens of the connection expire at `expire_others_at` if given
    /// (the rotation overlap window).
    fn add_token(&self, idp_id: i64, token_id: &str, secret_hash: &[u8], expire_others_at: Option<String>) -> impl Future<Output = StoreResult<()>> + Send;
    fn find_token(&self, token_id: &str) -> impl Future<Output = StoreResult<Option<TokenRecord>>> + Send;
    /// Adds an admin token (`tenant_id: None`: every tenant and the server-wide endpoints).
    fn add_admin_token(&self, token_id: &str, secret_hash: &[u8], tenant_id: Option<i64>, name: &str, role: TokenRole) -> impl Future<Output = StoreResult<()>> + Send;
    fn find_admin_token(&self, token_id: &str) -> impl Future<Output = StoreResult<Option<AdminTokenRecord>>> + Send;
    /// How many admin tokens exist (the first start creates one when there is none).
    fn count_admin_tokens(&self) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Disables or enables an IdP connection (a disabled one's tokens are refused).
    fn set_idp_disabled(&self, idp_id: i64, disabled: bool) -> impl Future<Output = StoreResult<()>> + Send;

    fn get_user(&self, idp: &IdpConnection, id: &str, with_groups: bool) -> impl Future<Output = StoreResult<StoredUser>> + Send;
    fn list_users(&self, idp: &IdpConnection, q: &ListQuery) -> impl Future<Output = StoreResult<Page<StoredUser>>> + Send;
    fn create_user(&self, idp: &IdpConnection, w: UserWrite, audit: AuditInfo) -> impl Future<Output = StoreResult<StoredUser>> + Send;
    fn update_user(&self, idp: &IdpConnection, id: &str, expected_version: i64, w: UserWrite, audit: AuditInfo) -> impl Future<Output = StoreResult<StoredUser>> + Send;
    /// Deletes the IdP's user; `action` says what happens to its directory entry, now or
    /// (`hold`) once an admin approves.
    fn delete_user(&self, idp: &IdpConnection, id: &str, expected_version: Option<i64>, action: DeprovisionAction, hold: bool, audit: AuditInfo) -> impl Future<Output = StoreResult<()>> + Send;
    /// Held operations of a tenant (all statuses, or one), newest first.
    fn held_ops(&self, tenant_id: i64, status: Option<&str>) -> impl Future<Output = StoreResult<Vec<HeldOp>>> + Send;
    /// Approves (applies) or rejects a held operation; recorded in the audit trail.
    fn decide_held(&self, tenant_id: i64, id: i64, approve: bool, by: &str) -> impl Future<Output = StoreResult<HeldOp>> + Send;
    /// Purges soft-deleted entries whose retention ended before `now`; returns how many.
    fn purge_expired(&self, now: &str) -> impl Future<Output = StoreResult<usize>> + Send;

    fn get_group(&self, idp: &IdpConnection, id: &str, with_members: bool) -> impl Future<Output = StoreResult<StoredGroup>> + Send;
    fn list_groups(&self, idp: &IdpConnection, q: &ListQuery) -> impl Future<Output = StoreResult<Page<StoredGroup>>> + Send;
    fn create_group(&self, idp: &IdpConnection, w: GroupWrite, members: Vec<String>, rules: MemberRules, audit: AuditInfo) -> impl Future<Output = StoreResult<StoredGroup>> + Send;
    /// Updates a group; `w: None` leaves its attributes as they are. Member operations are
    /// deltas applied in order.
    /// Returns the group and how many entries lost a membership.
    fn update_group(&self, idp: &IdpConnection, id: &str, u: GroupUpdate, audit: AuditInfo) -> impl Future<Output = StoreResult<(StoredGroup, u32)>> + Send;
    /// The app groups an IdP group maps to now.
    fn group_targets(&self, idp: &IdpConnection, id: &str) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// Deletes an IdP group; returns how many entries lost a membership (past
    /// `removal_budget` none do: the removals are held).
    fn delete_group(&self, idp: &IdpConnection, id: &str, expected_version: Option<i64>, removal_budget: Option<u32>, audit: AuditInfo) -> impl Future<Output = StoreResult<u32>> + Send;

    /// The directory entry an IdP user (by its SCIM id) maps to.
    fn entry_of_user(&self, idp: &IdpConnection, id: &str) -> impl Future<Output = StoreResult<Option<DirectoryEntry>>> + Send;
    /// Stores a plugin's component (once per content hash) and makes it visible to a tenant.
    fn put_plugin(&self, tenant_id: i64, record: PluginRecord, bytes: Vec<u8>) -> impl Future<Output = StoreResult<PluginRecord>> + Send;
    /// A stored plugin's component bytes (`NotFound` if none has this hash).
    fn plugin_bytes(&self, hash: &str) -> impl Future<Output = StoreResult<Vec<u8>>> + Send;
    /// The plugins a tenant has uploaded or uses, newest first.
    fn list_plugins(&self, tenant_id: i64) -> impl Future<Output = StoreResult<Vec<PluginRecord>>> + Send;
    /// Stores a new chain version (numbered after the last one), active at once if asked.
    /// Every plugin it names must be stored.
    fn add_chain_version(&self, idp_id: i64, def: ChainDefinition, note: VersionNote, activate: bool) -> impl Future<Output = StoreResult<ChainVersion>> + Send;
    /// Makes an existing version the active one (a rollback, or a roll forward).
    fn activate_chain_version(&self, idp_id: i64, number: i64, author: &str) -> impl Future<Output = StoreResult<ChainVersion>> + Send;
    /// A connection's versions, newest first.
    fn chain_versions(&self, idp_id: i64) -> impl Future<Output = StoreResult<Vec<ChainVersion>>> + Send;
    /// A connection's activations, newest first.
    fn chain_activations(&self, idp_id: i64) -> impl Future<Output = StoreResult<Vec<Activation>>> + Send;
    /// The active version of every connection that has one.
    fn active_chains(&self) -> impl Future<Output = StoreResult<Vec<ChainVersion>>> + Send;
    /// Runs a stored version beside the active one (`None`: stop shadowing).
    fn set_shadow(&self, idp_id: i64, number: Option<i64>) -> impl Future<Output = StoreResult<()>> + Send;
    /// The shadow version of every connection that has one.
    fn shadow_chains(&self) -> impl Future<Output = StoreResult<Vec<ChainVersion>>> + Send;
    /// Records where a shadow version decided differently from the active one.
    fn add_shadow_diff(&self, idp_id: i64, d: ShadowDiff) -> impl Future<Output = StoreResult<()>> + Send;
    /// A connection's recorded differences for a shadow version, newest first.
    fn shadow_diffs(&self, idp_id: i64, version: i64, limit: usize) -> impl Future<Output = StoreResult<Vec<ShadowDiff>>> + Send;
    /// A counter every activation increments: a server polls it to notice activations made
    /// by another process (the CLI) and reload.
    fn rules_epoch(&self) -> impl Future<Output = StoreResult<i64>> + Send;

    /// A connection's IdP users after a storage key, in order (for passes over all of them).
    fn users_after(&self, idp: &IdpConnection, after_pk: i64, limit: usize) -> impl Future<Output = StoreResult<Vec<(i64, StoredUser)>>> + Send;
    fn groups_after(&self, idp: &IdpConnection, after_pk: i64, limit: usize) -> impl Future<Output = StoreResult<Vec<(i64, StoredGroup)>>> + Send;
    /// Re-applies rules to users (directory entries only), each independently.
    fn reapply_users(&self, idp: &IdpConnection, items: Vec<ReapplyUser>, mode: ReapplyMode) -> impl Future<Output = StoreResult<Vec<ReapplyOutcome>>> + Send;
    fn reapply_groups(&self, idp: &IdpConnection, items: Vec<ReapplyGroup>, mode: ReapplyMode) -> impl Future<Output = StoreResult<Vec<ReapplyOutcome>>> + Send;
    /// Starts a re-apply job (`Conflict` while another runs for the connection).
    fn start_reapply(&self, idp: &IdpConnection, chain_version: Option<i64>, author: &str) -> impl Future<Output = StoreResult<ReapplyJob>> + Send;
    /// The connection's latest re-apply job.
    fn reapply_job(&self, idp_id: i64) -> impl Future<Output = StoreResult<Option<ReapplyJob>>> + Send;
    /// Moves a job to its next phase (`groups`, `done`, `failed` with the reason).
    fn advance_reapply(&self, job_id: i64, phase: &str, error: Option<String>) -> impl Future<Output = StoreResult<ReapplyJob>> + Send;

    /// Applies a change made in the application to an entry (by userName); audited.
    fn local_change(&self, tenant_id: i64, user_name: &str, change: LocalChange, by: &str) -> impl Future<Output = StoreResult<DirectoryEntry>> + Send;
    /// Where the directory differs from what a connection's IdP says.
    fn drift(&self, idp: &IdpConnection) -> impl Future<Output = StoreResult<DriftReport>> + Send;

    /// Audit records matching `q`, newest first.
    fn audit(&self, q: AuditQuery) -> impl Future<Output = StoreResult<Vec<AuditRecord>>> + Send;
    /// The decisions and owners behind a directory entry (by userName).
    fn explain(&self, tenant_id: i64, user_name: &str) -> impl Future<Output = StoreResult<Option<Explanation>>> + Send;

    /// The directory entry an IdP user maps to (the application's view).
    fn directory_entry(&self, tenant_id: i64, user_name: &str) -> impl Future<Output = StoreResult<Option<DirectoryEntry>>> + Send;

    /// The application's directory: visible users, filtered and paged like a SCIM list.
    fn directory_users(&self, tenant_id: i64, q: &ListQuery) -> impl Future<Output = StoreResult<directory::DirPage<directory::DirUser>>> + Send;
    fn directory_user(&self, tenant_id: i64, id: &str) -> impl Future<Output = StoreResult<Option<directory::DirUser>>> + Send;
    fn directory_groups(&self, tenant_id: i64, q: &ListQuery) -> impl Future<Output = StoreResult<directory::DirPage<directory::DirGroup>>> + Send;
    fn directory_group(&self, tenant_id: i64, id: &str, with_members: bool) -> impl Future<Output = StoreResult<Option<directory::DirGroup>>> + Send;
    /// The tenant's directory changes after position `since`, oldest first, at most `limit`.
    fn changes(&self, tenant_id: i64, since: i64, limit: usize) -> impl Future<Output = StoreResult<directory::Feed>> + Send;
    /// The newest change position (of any tenant: positions are global and opaque).
    fn change_cursor(&self) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Drops changes recorded before `before` (retention).
    fn purge_changes(&self, before: &str) -> impl Future<Output = StoreResult<usize>> + Send;
    /// Ticks after every committed write: a reader waiting for changes wakes on it.
    fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64>;
}
