//! Persistence: what the services need stored, split by concern, and the SQLite backend.
//!
//! Two layers are stored side by side: the **IdP view** (each connection's users and groups
//! exactly as the IdP wrote them, what SCIM GET returns) and the **directory** (the effective
//! entries, app groups and memberships the application consumes, after the mapping pipeline).
//! Every write takes both layers in one transaction, and writes its audit record in it too.
//!
//! The operations are grouped into one trait per concern, so that a second backend can be
//! written and reviewed one part at a time; [`Store`] is all of them together, which is
//! what the services take. Every method is one transaction. The types they speak are the
//! domain's ([`crate::model`]); nothing here knows HTTP, rules or plugins.

mod engine;
mod impls;
pub(crate) mod logic;
pub mod postgres;
pub mod sql;
pub mod sqlite;

pub use engine::{Backend, SqlStore};

use std::future::Future;
use std::sync::Arc;

use crate::model::*;
use crate::scim::list::ListQuery;

/// Any error a backend's driver reports, kept as the source of [`StoreError::Backend`].
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource does not exist (in this scope).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule refused the write; the message says which.
    #[error("{0}")]
    Conflict(String),
    /// The resource is no longer at the version the write was computed from.
    #[error("the resource changed concurrently")]
    VersionMismatch,
    /// The write names something that does not exist, or a value the store refuses.
    #[error("{0}")]
    InvalidReference(String),
    /// A create takes back a deprovisioned entry (its connection deleted the user and now
    /// creates it again), and the write does not carry the rules' reactivation decision: the
    /// caller asks the rules (`UserWrite::reactivate`) and writes again.
    #[error("the write needs the rules' reactivation decision")]
    NeedsReactivation,
    /// The backend itself failed (I/O, corruption, a closed database); the driver's error is
    /// the source.
    #[error("storage failure: {0}")]
    Backend(#[source] BackendError),
}

impl StoreError {
    /// A backend failure described by the store itself (no driver error behind it).
    pub fn backend(message: impl Into<String>) -> StoreError {
        StoreError::Backend(message.into().into())
    }
}

/// What a store operation returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// Tenants, IdP connections and the tokens of connections, admins and applications.
pub trait TenantStore: Send + Sync + 'static {
    /// Creates a tenant (`Conflict` if the name is taken).
    fn create_tenant(&self, name: &str) -> impl Future<Output = StoreResult<Tenant>> + Send;
    /// Every tenant, by name.
    fn list_tenants(&self) -> impl Future<Output = StoreResult<Vec<Tenant>>> + Send;
    /// Creates a connection of a tenant (`InvalidReference` for an unknown tenant).
    fn create_idp(&self, tenant: &str, idp: NewIdp) -> impl Future<Output = StoreResult<IdpConnection>> + Send;
    /// The connections of one tenant, or of all.
    fn list_idps(&self, tenant: Option<&str>) -> impl Future<Output = StoreResult<Vec<IdpConnection>>> + Send;
    /// Changes a connection's kind and rate limit.
    fn update_idp(&self, idp_id: i64, kind: IdpKind, rate: RateLimit) -> impl Future<Output = StoreResult<()>> + Send;
    /// A connection by tenant and name.
    fn find_idp(&self, tenant: &str, idp: &str) -> impl Future<Output = StoreResult<Option<IdpConnection>>> + Send;
    /// Disables or enables an IdP connection (a disabled one's tokens are refused).
    fn set_idp_disabled(&self, idp_id: i64, disabled: bool) -> impl Future<Output = StoreResult<()>> + Send;
    /// Replaces a connection's policies.
    fn set_idp_settings(&self, idp_id: i64, settings: ConnectionSettings) -> impl Future<Output = StoreResult<()>> + Send;
    /// Adds a token; existing tokens of the connection expire at `expire_others_at` if given
    /// (the rotation overlap window).
    fn add_token(&self, idp_id: i64, token_id: &str, secret_hash: &[u8], expire_others_at: Option<Timestamp>) -> impl Future<Output = StoreResult<()>> + Send;
    /// A connection token by its public id.
    fn find_token(&self, token_id: &str) -> impl Future<Output = StoreResult<Option<TokenRecord>>> + Send;
    /// Adds an admin token (`tenant_id: None`: every tenant and the server-wide endpoints).
    fn add_admin_token(&self, token_id: &str, secret_hash: &[u8], tenant_id: Option<i64>, name: &str, role: TokenRole) -> impl Future<Output = StoreResult<()>> + Send;
    /// An admin or directory token by its public id.
    fn find_admin_token(&self, token_id: &str) -> impl Future<Output = StoreResult<Option<AdminTokenRecord>>> + Send;
    /// How many admin tokens exist (the first start creates one when there is none).
    fn count_admin_tokens(&self) -> impl Future<Output = StoreResult<i64>> + Send;
}

/// A write on its way to the store, from the moment its request is being mapped until it
/// is sent (drop it then, or when the request fails first). See
/// [`IdpViewStore::write_coming`].
#[must_use = "the write counts as on its way until this is dropped"]
pub struct WriteComing(Option<Arc<std::sync::atomic::AtomicUsize>>);

impl WriteComing {
    /// Counted nowhere (a store that does not batch commits).
    pub fn uncounted() -> WriteComing {
        WriteComing(None)
    }

    /// Counted in `on_the_way` until dropped.
    pub(crate) fn counted(on_the_way: &Arc<std::sync::atomic::AtomicUsize>) -> WriteComing {
        on_the_way.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        WriteComing(Some(on_the_way.clone()))
    }
}

impl Drop for WriteComing {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// The IdP view: each connection's users and groups, written together with the directory
/// entries and memberships they map to.
pub trait IdpViewStore: Send + Sync + 'static {
    /// Says a user write is on its way (its request is being mapped): SQLite's writer holds
    /// a commit a moment for it rather than commit twice. Drop the guard when the write is
    /// sent.
    fn write_coming(&self) -> WriteComing {
        WriteComing::uncounted()
    }
    /// One user of the connection.
    fn get_user(&self, idp: &IdpConnection, id: &str, with_groups: bool) -> impl Future<Output = StoreResult<StoredUser>> + Send;
    /// A filtered, sorted page of the connection's users.
    fn list_users(&self, idp: &IdpConnection, q: &ListQuery) -> impl Future<Output = StoreResult<Page<StoredUser>>> + Send;
    /// Creates a user and its entry (or adopts one, per `w.matching`).
    fn create_user(&self, idp: &IdpConnection, w: UserWrite, audit: AuditInfo) -> impl Future<Output = StoreResult<StoredUser>> + Send;
    /// Replaces a user still as `before` (its version and scope; `VersionMismatch` when it is
    /// not), and its entry.
    fn update_user(&self, idp: &IdpConnection, id: &str, before: Arc<UserBefore>, w: UserWrite, audit: AuditInfo) -> impl Future<Output = StoreResult<StoredUser>> + Send;
    /// Deletes the IdP's user; `action` says what happens to its directory entry, now or
    /// (`hold`) once an admin approves.
    fn delete_user(&self, idp: &IdpConnection, id: &str, expected_version: Option<i64>, action: DeprovisionAction, hold: bool, audit: AuditInfo) -> impl Future<Output = StoreResult<()>> + Send;
    /// One group of the connection.
    fn get_group(&self, idp: &IdpConnection, id: &str, with_members: bool) -> impl Future<Output = StoreResult<StoredGroup>> + Send;
    /// A filtered, sorted page of the connection's groups.
    fn list_groups(&self, idp: &IdpConnection, q: &ListQuery) -> impl Future<Output = StoreResult<Page<StoredGroup>>> + Send;
    /// Creates a group with its members and the app groups it maps to.
    fn create_group(&self, idp: &IdpConnection, w: GroupWrite, members: Vec<String>, rules: MemberRules, audit: AuditInfo) -> impl Future<Output = StoreResult<StoredGroup>> + Send;
    /// Updates a group; member operations are deltas applied in order. Returns the group and
    /// how many entries lost a membership.
    fn update_group(&self, idp: &IdpConnection, id: &str, u: GroupUpdate, audit: AuditInfo) -> impl Future<Output = StoreResult<(StoredGroup, u32)>> + Send;
    /// The app groups an IdP group maps to now.
    fn group_targets(&self, idp: &IdpConnection, id: &str) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// Deletes an IdP group; returns how many entries lost a membership (past
    /// `removal_budget` none do: the removals are held).
    fn delete_group(&self, idp: &IdpConnection, id: &str, expected_version: Option<i64>, removal_budget: Option<u32>, audit: AuditInfo) -> impl Future<Output = StoreResult<u32>> + Send;
    /// A connection's IdP users after a storage key, in order (for passes over all of them).
    fn users_after(&self, idp: &IdpConnection, after_pk: i64, limit: usize) -> impl Future<Output = StoreResult<Vec<(i64, StoredUser)>>> + Send;
    /// A connection's IdP groups after a storage key, in order.
    fn groups_after(&self, idp: &IdpConnection, after_pk: i64, limit: usize) -> impl Future<Output = StoreResult<Vec<(i64, StoredGroup)>>> + Send;
}

/// The directory the application consumes: entries, app groups, local changes, retention.
pub trait DirectoryStore: Send + Sync + 'static {
    /// The directory entry an IdP user (by its SCIM id) maps to.
    fn entry_of_user(&self, idp: &IdpConnection, id: &str) -> impl Future<Output = StoreResult<Option<DirectoryEntry>>> + Send;
    /// The directory id (`DirUser::id`) of the entry an IdP user maps to.
    fn entry_uid_of_user(&self, idp: &IdpConnection, id: &str) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// An entry by its userName (soft-deleted ones too).
    fn directory_entry(&self, tenant_id: i64, user_name: &str) -> impl Future<Output = StoreResult<Option<DirectoryEntry>>> + Send;
    /// Applies a change made in the application to an entry (by userName); audited.
    fn local_change(&self, tenant_id: i64, user_name: &str, change: LocalChange, by: &str) -> impl Future<Output = StoreResult<DirectoryEntry>> + Send;
    /// Visible users, filtered and paged like a SCIM list.
    fn directory_users(&self, tenant_id: i64, q: &ListQuery) -> impl Future<Output = StoreResult<DirPage<DirUser>>> + Send;
    /// A visible user by its directory id.
    fn directory_user(&self, tenant_id: i64, id: &str) -> impl Future<Output = StoreResult<Option<DirUser>>> + Send;
    /// App groups, filtered and paged.
    fn directory_groups(&self, tenant_id: i64, q: &ListQuery) -> impl Future<Output = StoreResult<DirPage<DirGroup>>> + Send;
    /// An app group by its directory id.
    fn directory_group(&self, tenant_id: i64, id: &str, with_members: bool) -> impl Future<Output = StoreResult<Option<DirGroup>>> + Send;
    /// Purges soft-deleted entries whose retention ended before `now`; returns how many.
    fn purge_expired(&self, now: &Timestamp) -> impl Future<Output = StoreResult<usize>> + Send;
}

/// Rules as data: plugins by content hash, chain versions and their activations, shadows.
pub trait RuleStore: Send + Sync + 'static {
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
}

/// Re-applying rules to what the IdP view holds: batches and resumable jobs.
pub trait ReapplyStore: Send + Sync + 'static {
    /// Re-applies rules to users (directory entries only), each independently.
    fn reapply_users(&self, idp: &IdpConnection, items: Vec<ReapplyUser>, mode: ReapplyMode) -> impl Future<Output = StoreResult<Vec<ReapplyOutcome>>> + Send;
    /// Re-applies rules to groups (their targets), each independently.
    fn reapply_groups(&self, idp: &IdpConnection, items: Vec<ReapplyGroup>, mode: ReapplyMode) -> impl Future<Output = StoreResult<Vec<ReapplyOutcome>>> + Send;
    /// Starts a re-apply job (`Conflict` while another runs for the connection).
    fn start_reapply(&self, idp: &IdpConnection, chain_version: Option<i64>, author: &str) -> impl Future<Output = StoreResult<ReapplyJob>> + Send;
    /// The connection's latest re-apply job.
    fn reapply_job(&self, idp_id: i64) -> impl Future<Output = StoreResult<Option<ReapplyJob>>> + Send;
    /// Moves a job to its next phase (`failed` with the reason).
    fn advance_reapply(&self, job_id: i64, phase: ReapplyPhase, error: Option<String>) -> impl Future<Output = StoreResult<ReapplyJob>> + Send;
}

/// What is recorded of changes: the audit trail, explanations, held operations, drift.
pub trait RecordStore: Send + Sync + 'static {
    /// Audit records matching `q`, newest first.
    fn audit(&self, q: AuditQuery) -> impl Future<Output = StoreResult<Vec<AuditRecord>>> + Send;
    /// The decisions and owners behind a directory entry (by userName).
    fn explain(&self, tenant_id: i64, user_name: &str) -> impl Future<Output = StoreResult<Option<Explanation>>> + Send;
    /// Held operations of a tenant (all statuses, or one), newest first.
    fn held_ops(&self, tenant_id: i64, status: Option<HeldStatus>) -> impl Future<Output = StoreResult<Vec<HeldOp>>> + Send;
    /// Approves (applies) or rejects a held operation; recorded in the audit trail.
    fn decide_held(&self, tenant_id: i64, id: i64, approve: bool, by: &str) -> impl Future<Output = StoreResult<HeldOp>> + Send;
    /// Where the directory differs from what a connection's IdP says.
    fn drift(&self, idp: &IdpConnection) -> impl Future<Output = StoreResult<DriftReport>> + Send;
}

/// The guards' windows of destructive operations, shared by every process on the database.
pub trait GuardStore: Send + Sync + 'static {
    /// Takes up to `n` of the `max` slots a connection's window of `window_ms` has free now;
    /// returns how many it took.
    fn guard_take(&self, idp_id: i64, n: u32, max: u32, window_ms: i64) -> impl Future<Output = StoreResult<u32>> + Send;
    /// How many of the `max` slots a connection's window of `window_ms` has free now.
    fn guard_free(&self, idp_id: i64, max: u32, window_ms: i64) -> impl Future<Output = StoreResult<u32>> + Send;
}

/// Leases on background work, so that one process of several on a database does it.
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes or renews the lease `name` for `holder` for `ttl_ms`; false while another holds it.
    fn lease(&self, name: &str, holder: &str, ttl_ms: i64) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Lets go of the lease `name` if `holder` has it.
    fn release_lease(&self, name: &str, holder: &str) -> impl Future<Output = StoreResult<()>> + Send;
}

/// The change feed of the directory.
pub trait FeedStore: Send + Sync + 'static {
    /// The tenant's directory changes after position `since`, oldest first, at most `limit`.
    fn changes(&self, tenant_id: i64, since: i64, limit: usize) -> impl Future<Output = StoreResult<Feed>> + Send;
    /// The tenant's newest change position (opaque; following from it gives what comes next).
    fn change_cursor(&self, tenant_id: i64) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Drops changes recorded before `before` (retention).
    fn purge_changes(&self, before: &Timestamp) -> impl Future<Output = StoreResult<usize>> + Send;
    /// Ticks after every committed write: a reader waiting for changes wakes on it.
    fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Delivery targets, their maps of what they were sent, and the events they did not take.
pub trait DeliveryStore: Send + Sync + 'static {
    /// Adds a target of a tenant; it starts at the feed's head with a reconciliation due.
    fn add_target(&self, tenant_id: i64, target: NewTarget) -> impl Future<Output = StoreResult<Target>> + Send;
    /// The targets of one tenant, or of all.
    fn targets(&self, tenant_id: Option<i64>) -> impl Future<Output = StoreResult<Vec<Target>>> + Send;
    /// A target by id.
    fn target(&self, id: i64) -> impl Future<Output = StoreResult<Option<Target>>> + Send;
    /// A target's sealed credential.
    fn target_credential(&self, id: i64) -> impl Future<Output = StoreResult<Vec<u8>>> + Send;
    /// Replaces a target's sealed credential.
    fn set_target_credential(&self, id: i64, credential: Vec<u8>) -> impl Future<Output = StoreResult<()>> + Send;
    /// Pauses, resumes, asks for or finishes a reconciliation, changes settings.
    fn update_target(&self, id: i64, change: TargetChange) -> impl Future<Output = StoreResult<Target>> + Send;
    /// Removes a target with its map and dead letters.
    fn remove_target(&self, id: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// A counter every change to targets (and every decision on dead letters) moves.
    fn delivery_epoch(&self) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Records a worker's progress (cursor, counts, last success or error).
    fn record_progress(&self, id: i64, progress: Progress) -> impl Future<Output = StoreResult<()>> + Send;
    /// What a target has of one directory resource.
    fn mapped(&self, target_id: i64, resource: &str, uid: &str) -> impl Future<Output = StoreResult<Option<Mapped>>> + Send;
    /// Everything of one resource type a target has from Mapwright.
    fn all_mapped(&self, target_id: i64, resource: &str) -> impl Future<Output = StoreResult<Vec<Mapped>>> + Send;
    /// Records what a target has of a directory resource.
    fn map(&self, target_id: i64, m: Mapped) -> impl Future<Output = StoreResult<()>> + Send;
    /// Forgets what a target has of a directory resource.
    fn unmap(&self, target_id: i64, resource: &str, uid: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// Parks or holds events and moves the cursor past them, together.
    fn park(&self, target_id: i64, letters: Vec<NewDeadLetter>, cursor: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// A target's dead letters, oldest first (open ones, or all).
    fn dead_letters(&self, target_id: i64, open_only: bool) -> impl Future<Output = StoreResult<Vec<DeadLetter>>> + Send;
    /// Retries or skips parked events (`ids`, or all of the target's).
    fn decide_dead(&self, target_id: i64, ids: Option<Vec<i64>>, decision: DeadState, by: &str) -> impl Future<Output = StoreResult<Vec<DeadLetter>>> + Send;
    /// A worker's outcome for a dead letter it tried again or released.
    fn settle_dead(&self, id: i64, state: DeadState, attempts: u32, answer: Option<String>) -> impl Future<Output = StoreResult<()>> + Send;
    /// Stores a target's next shape version, and makes it the one the target runs if asked.
    fn add_shape_version(&self, target_id: i64, entries: Vec<ChainEntryDef>, note: VersionNote, activate: bool) -> impl Future<Output = StoreResult<ShapeVersion>> + Send;
    /// A target's shape versions, newest first.
    fn shape_versions(&self, target_id: i64) -> impl Future<Output = StoreResult<Vec<ShapeVersion>>> + Send;
    /// Makes a version the one a target runs (`None`: no shaping); a SCIM target is then
    /// reconciled, so what it has takes the new shape.
    fn activate_shape_version(&self, target_id: i64, number: Option<i64>, author: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// A target's shape activations, newest first.
    fn shape_activations(&self, target_id: i64) -> impl Future<Output = StoreResult<Vec<ShapeActivation>>> + Send;
}

/// Every concern of storage: what the services are given.
pub trait Store: TenantStore + IdpViewStore + DirectoryStore + RuleStore + ReapplyStore + RecordStore + FeedStore + DeliveryStore + GuardStore + LeaseStore {}

impl<T: TenantStore + IdpViewStore + DirectoryStore + RuleStore + ReapplyStore + RecordStore + FeedStore + DeliveryStore + GuardStore + LeaseStore> Store for T {}
