//! What the server records about changes: the audit trail, explanations, operations held by
//! a guard, drift and shadow reports.

use serde_json::Value;

use super::{Decision, DeprovisionAction, OwnerKind, Timestamp};

/// Who made a change and by which rules. The store writes it as an audit record in the
/// same transaction as the change, so there is never a change without its record.
#[derive(Debug, Clone, Default)]
pub struct AuditInfo {
    /// `idp:<tenant>/<connection>` or `admin:<name>`.
    pub actor: String,
    /// The request (or job) that made the change.
    pub request_id: String,
    /// `create`, `replace`, `patch`, `delete`, `reapply`, `local`, …
    pub operation: String,
    /// The chain version whose rules decided (none: identity mapping).
    pub chain_version: Option<i64>,
    /// Every decision behind the change, in order.
    pub decisions: Vec<Decision>,
}

/// One audit record: a change to the directory or to an IdP's view, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRecord {
    /// Storage key (newer records have larger ids).
    pub id: i64,
    /// When.
    pub at: Timestamp,
    /// The tenant's name.
    pub tenant: String,
    /// The IdP connection the change came through, if any.
    pub idp: Option<String>,
    /// Who.
    pub actor: String,
    /// The request (or job) that made it.
    pub request_id: String,
    /// What kind of change.
    pub operation: String,
    /// `User` or `Group` (`Entry` for changes to an entry alone).
    pub resource_type: String,
    /// The SCIM id of the IdP's resource.
    pub resource_id: String,
    /// The directory entry's userName after the change (before it, for a deletion).
    pub entry: Option<String>,
    /// The chain version whose rules decided.
    pub chain_version: Option<i64>,
    /// Why.
    pub decisions: Vec<Decision>,
    /// Before/after of what changed: directory fields with their values, the IdP view's
    /// changed attribute names, group members added and removed.
    pub changes: Value,
}

/// Which audit records to read (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// The tenant (always one: no read crosses tenants).
    pub tenant_id: i64,
    /// Only changes through this connection.
    pub idp_id: Option<i64>,
    /// A SCIM resource id.
    pub resource_id: Option<String>,
    /// A directory entry, by its current userName: its whole history, renames included.
    pub entry: Option<String>,
    /// Inclusive lower bound.
    pub since: Option<Timestamp>,
    /// Inclusive upper bound.
    pub until: Option<Timestamp>,
    /// Only records older than this id (paging).
    pub before_id: Option<i64>,
    /// At most this many (0: 100).
    pub limit: usize,
}

/// Where a membership of a directory entry comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MembershipSource {
    /// The app group.
    pub group: String,
    /// Which kind of owner holds it: `idp-group`, `rule`, `local` (no sync removes it) or
    /// `held` (removed by an IdP past the guard's cap, waiting for an admin).
    pub kind: OwnerKind,
    /// The IdP connection that owns it.
    pub idp: String,
    /// For `idp-group`: the IdP group's displayName.
    pub via: Option<String>,
}

/// Everything behind one directory entry: its state, who owns each membership, which IdP
/// users map to it, and the recorded decisions that made it so.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explanation {
    /// Its userName.
    pub user_name: String,
    /// Whether it is active.
    pub active: bool,
    /// Whether it is soft-deleted.
    pub deleted: bool,
    /// Its attributes.
    pub attributes: Value,
    /// Each membership with its owner.
    pub memberships: Vec<MembershipSource>,
    /// (IdP connection, SCIM id) of each IdP user that maps to the entry.
    pub idp_users: Vec<(String, String)>,
    /// Who owns each attribute: an IdP connection's name, or `local`.
    pub attribute_owners: Value,
    /// Its audit records, newest first.
    pub history: Vec<AuditRecord>,
}

/// What a held operation would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeldKind {
    /// An IdP deactivated the user.
    Deactivate,
    /// An IdP deleted the user.
    Delete,
    /// An IdP group change took memberships from entries.
    RemoveMembers,
}

impl HeldKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            HeldKind::Deactivate => "deactivate",
            HeldKind::Delete => "delete",
            HeldKind::RemoveMembers => "remove-members",
        }
    }

    /// A kind by its stored name.
    pub fn parse(s: &str) -> Option<HeldKind> {
        [HeldKind::Deactivate, HeldKind::Delete, HeldKind::RemoveMembers].into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a held operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeldStatus {
    /// Waiting for an admin.
    Held,
    /// Applied by an admin.
    Approved,
    /// Dropped by an admin: the entry stays as it is.
    Rejected,
    /// The IdP undid it first (reactivated the user).
    Superseded,
}

impl HeldStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            HeldStatus::Held => "held",
            HeldStatus::Approved => "approved",
            HeldStatus::Rejected => "rejected",
            HeldStatus::Superseded => "superseded",
        }
    }

    /// A status by its stored name.
    pub fn parse(s: &str) -> Option<HeldStatus> {
        [HeldStatus::Held, HeldStatus::Approved, HeldStatus::Rejected, HeldStatus::Superseded].into_iter().find(|k| k.as_str() == s)
    }
}

/// A destructive operation held by a connection's guard until an admin decides.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HeldOp {
    /// Its id (what `held approve` takes).
    pub id: i64,
    /// The connection's name.
    pub idp: String,
    /// What it would do.
    pub kind: HeldKind,
    /// The IdP user's (or group's) SCIM id.
    pub resource_id: String,
    /// The directory entry it would change (or which members of which group).
    pub user_name: String,
    /// What deprovisioning would do (none for membership removals).
    pub action: Option<DeprovisionAction>,
    /// The request that was held.
    pub request_id: String,
    /// When it was held.
    pub at: Timestamp,
    /// Where it stands.
    pub status: HeldStatus,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<Timestamp>,
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
    /// Members this connection's IdP groups name that the connection does not have (skipped
    /// per its `unknown_members` policy), until the IdP stops naming them.
    pub skipped_members: Vec<DriftSkipped>,
}

/// A member an IdP group names that its connection does not have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftSkipped {
    /// The IdP group's id.
    pub group_id: String,
    /// Its displayName.
    pub group: String,
    /// The member id the IdP sent.
    pub member: String,
    /// Why it was skipped.
    pub reason: String,
    /// When the IdP last named it.
    pub at: Timestamp,
}

/// An entry in a drift report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftEntry {
    /// Its userName.
    pub user_name: String,
    /// Why it is listed (`orphan`, `other-connection`), or the groups it still holds.
    pub detail: String,
}

/// A membership in a drift report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftMembership {
    /// The app group.
    pub group: String,
    /// The entry's userName.
    pub user_name: String,
    /// The IdP group it should come from (missing), or who holds it (extra).
    pub detail: String,
}

/// One decision where a shadow version and the active one differed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShadowDiff {
    /// The version that decided for real.
    pub active_version: Option<i64>,
    /// The version run beside it.
    pub shadow_version: i64,
    /// `User` or `Group`.
    pub resource_type: String,
    /// The IdP's userName of the user (or displayName of the group).
    pub resource: String,
    /// The operation of the request.
    pub operation: String,
    /// The request.
    pub request_id: String,
    /// `{field: [active, shadow]}` for every field that differs (or the shadow's error).
    pub diff: Value,
    /// When it was recorded (set by the store).
    pub at: Timestamp,
}
