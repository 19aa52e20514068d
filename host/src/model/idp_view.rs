//! The IdP view: each connection's users and groups as the IdP wrote them (canonicalised),
//! what SCIM reads return, and the writes that change them together with the directory.

use std::sync::Arc;

use serde_json::Value;

use super::{EntryWrite, MatchPolicy};
use crate::scim::patch::MemberOp;
use crate::scim::resource::Meta;

/// A user write: the IdP view and the directory entry, stored together.
#[derive(Debug, Clone)]
pub struct UserWrite {
    /// The canonical IdP resource (shared with the answer and the remembered user).
    pub body: Arc<Value>,
    /// The directory entry it maps to.
    pub entry: EntryWrite,
    /// What a create does when the directory already has the user.
    pub matching: MatchPolicy,
    /// For a create that takes back a deprovisioned entry (see `StoreError::NeedsReactivation`):
    /// whether the rules restore what deprovisioning snapshotted. `None` until asked.
    pub reactivate: Option<bool>,
}

/// What the connection's rules decided for one user whose IdP group membership changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberRule {
    /// App groups of the IdP group the user is added to that are not granted.
    pub skip: Vec<String>,
    /// App groups of the IdP group the user is removed from that the user keeps (the
    /// membership becomes owned by the rules).
    pub keep: Vec<String>,
    /// Other app groups the rules grant (rule-owned memberships).
    pub grant: Vec<String>,
    /// Rule-owned memberships the rules take back.
    pub revoke: Vec<String>,
}

/// Per member (SCIM id) rules for a group update; members without an entry get the default.
pub type MemberRules = std::collections::HashMap<String, MemberRule>;

/// A group write: the IdP view (without members) and the app groups it maps to.
#[derive(Debug, Clone)]
pub struct GroupWrite {
    /// The canonical IdP resource, without members.
    pub body: Value,
    /// The app groups it maps to.
    pub targets: Vec<String>,
}

/// A change to a group: its attributes (if they changed) and member deltas in order, with
/// the rules' decisions for the members concerned, applied if the group is still at
/// `expected_version`.
#[derive(Debug, Clone)]
pub struct GroupUpdate {
    /// The version the change was computed from.
    pub expected_version: i64,
    /// New attributes, if they changed.
    pub attributes: Option<GroupWrite>,
    /// Member changes, in order.
    pub members: Vec<MemberOp>,
    /// The rules' decisions for the members concerned.
    pub rules: MemberRules,
    /// The most entries the write may take memberships from now (the guard's budget); past
    /// it they are all held for an admin. `None`: no limit.
    pub removal_budget: Option<u32>,
}

/// A group member (a user id) or a user's group (a group id and its name).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The SCIM id.
    pub value: String,
    /// The group's displayName (for a user's groups).
    pub display: Option<String>,
}

/// An IdP user as stored.
#[derive(Debug, Clone)]
pub struct StoredUser {
    /// Id, times and version.
    pub meta: Meta,
    /// The canonical resource (shared: an update remembers it, see `service::current`).
    pub body: Arc<Value>,
    /// The IdP's groups the user belongs to (`None` when not requested).
    pub groups: Option<Vec<Member>>,
    /// The connection's scope rules keep it out of the directory (it has no entry, or one
    /// deprovisioned when it left scope).
    pub out_of_scope: bool,
}

/// An IdP user as an update found it, before the change: the write goes ahead only if the
/// user is still so (the same version and the same scope), and what it was feeds the audit's
/// list of changed attributes without the store reading it again.
#[derive(Debug, Clone, PartialEq)]
pub struct UserBefore {
    /// Its version.
    pub version: i64,
    /// Whether the scope rules kept it out (re-applied rules change this without a new version).
    pub out_of_scope: bool,
    /// Its canonical resource (it changes only with the version).
    pub body: Arc<Value>,
}

impl From<&StoredUser> for UserBefore {
    fn from(u: &StoredUser) -> Self {
        UserBefore { version: u.meta.version, out_of_scope: u.out_of_scope, body: u.body.clone() }
    }
}

/// An IdP group as stored.
#[derive(Debug, Clone)]
pub struct StoredGroup {
    /// Id, times and version.
    pub meta: Meta,
    /// The canonical resource, without members.
    pub body: Value,
    /// `None` when not requested: members are never loaded unless returned.
    pub members: Option<Vec<Member>>,
    /// Members the write that returned it named but the connection does not have, skipped
    /// per its `unknown_members` policy (always empty for reads).
    pub skipped: Vec<SkippedMember>,
    /// Users the write that returned it added or removed (always empty for reads): their
    /// scope may depend on it.
    pub moved: Vec<String>,
}

/// A member id a group write named that its connection does not have, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedMember {
    /// The id as the IdP sent it.
    pub id: String,
    /// Why it is not one of the connection's users.
    pub reason: String,
}

/// A page of a list, with the total count of matches.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// Matches in all.
    pub total: usize,
    /// This page's.
    pub items: Vec<T>,
}
