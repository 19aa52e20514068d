//! The mapping pipeline: the one function between what an IdP sent and the directory.
//!
//! Every write passes the IdP's canonical resource through the pipeline of its connection to
//! get the directory entry (users) or the app groups (groups). Because the pipeline is a pure
//! function of the stored IdP view, re-running it over that view rebuilds the directory,
//! which is what rule preview and re-apply rely on. A connection without a chain uses
//! [`IdentityMapping`]; one with a chain runs its plugins (`plugins::chain` implements
//! [`MappingPipeline`]).
//!
//! This is the contract between the services above and the rules below: it speaks only the
//! domain types of [`crate::model`], so the plugin runtime implements it without knowing the
//! services, and the services call it without knowing plugins.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use crate::model::{Decision, DeprovisionAction, EntryWrite, IdpConnection, MatchPolicy};

/// Why a mapping refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// A rule rejected the input (a client error: 400).
    #[error("rejected by {rule}: {reason}")]
    Rejected {
        /// The rule (`plugin/rule`) that refused.
        rule: String,
        /// Why.
        reason: String,
    },
    /// A rule failed (a server error: 500).
    #[error("rule {rule} failed: {reason}")]
    Fault {
        /// The plugin (or chain version) that failed.
        rule: String,
        /// Why.
        reason: String,
    },
    /// The rules are suspended for a while (a server error the IdP should retry: 503).
    #[error("rule {rule} unavailable: {reason}")]
    Unavailable {
        /// The plugin whose calls are suspended.
        rule: String,
        /// Why.
        reason: String,
        /// Seconds until the rules run again.
        retry_after: u64,
    },
}

/// The operation a mapping runs for (plugins see it as the contract's `operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Operation {
    Create,
    Replace,
    Patch,
    Delete,
    /// Rules re-applied to a resource the IdP did not change (re-apply, preview).
    Reapply,
}

impl Operation {
    /// The name recorded in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Replace => "replace",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
            Operation::Reapply => "reapply",
        }
    }
}

/// What led to deprovisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The IdP set `active` to false.
    Deactivated,
    /// The IdP deleted the user.
    Deleted,
}

/// The default deprovisioning: deactivation disables, deletion deletes.
pub fn default_action(trigger: Trigger) -> DeprovisionAction {
    match trigger {
        Trigger::Deactivated => DeprovisionAction::Disable,
        Trigger::Deleted => DeprovisionAction::Delete { retention_days: 0 },
    }
}

/// What a mapping knows of its call.
#[derive(Debug, Clone, Copy)]
pub struct MapContext<'a> {
    /// The connection the resource comes through.
    pub idp: &'a IdpConnection,
    /// The operation mapped for.
    pub operation: Operation,
    /// The directory entry the user maps to now (JSON: userName, active, attributes,
    /// groups), read-only; `None` for a user new to the directory.
    pub current: Option<&'a Value>,
}

/// Why each decision was made, in chain order.
pub type Decisions = Vec<Decision>;

/// An IdP group as the mapping sees it.
#[derive(Debug, Clone)]
pub struct GroupInput<'a> {
    /// Its SCIM id (empty before it is stored).
    pub id: &'a str,
    /// The canonical resource, without members.
    pub body: &'a Value,
}

/// The app groups to add and to remove for one user, and why.
pub type Memberships = (Vec<String>, Vec<String>, Decisions);

/// What the pipeline's methods return: a future that may run plugins.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one IdP connection's rules make of its resources.
pub trait MappingPipeline: Send + Sync {
    /// The directory entry for an IdP user resource (canonical JSON).
    fn map_user<'a>(&'a self, ctx: MapContext<'a>, user: &'a Value) -> BoxFuture<'a, Result<(EntryWrite, Decisions), MappingError>>;
    /// The app groups an IdP group (canonical JSON, without members) maps to.
    fn map_group<'a>(&'a self, ctx: MapContext<'a>, group: GroupInput<'a>) -> BoxFuture<'a, Result<(Vec<String>, Decisions), MappingError>>;
    /// What deactivating or deleting this user does to its directory entry.
    fn deprovision<'a>(&'a self, ctx: MapContext<'a>, user: &'a Value, trigger: Trigger) -> BoxFuture<'a, Result<(DeprovisionAction, Decisions), MappingError>>;
    /// Whether reactivating this user restores what deprovisioning snapshotted.
    fn reactivate<'a>(&'a self, ctx: MapContext<'a>, user: &'a Value) -> BoxFuture<'a, Result<(bool, Decisions), MappingError>>;
    /// The stored chain version this pipeline runs (`None`: identity or unversioned).
    fn version(&self) -> Option<i64> {
        None
    }
    /// Why this connection's rules could not be loaded, if they could not (every mapping
    /// then fails rather than map without them).
    fn unavailable(&self) -> Option<&str> {
        None
    }
    /// What a create does when the directory already has the user.
    fn matching(&self) -> MatchPolicy {
        MatchPolicy::Conflict
    }
    /// Whether `map_user` looks at `ctx.current` (so the caller reads it only when needed).
    fn uses_current(&self) -> bool {
        false
    }
    /// Whether membership changes go through rules (`memberships`); if not, they apply as the
    /// IdP sent them.
    fn has_membership_rules(&self) -> bool {
        false
    }
    /// Whether the connection's rules decide scope (`scope`); if not, every user is in scope
    /// and the caller does not ask.
    fn has_scope_rules(&self) -> bool {
        false
    }
    /// Whether the user is provisioned at all: out of scope, it stays in the IdP view with no
    /// directory entry. `groups`: the display names of the connection's IdP groups it is in.
    fn scope<'a>(&'a self, _ctx: MapContext<'a>, _user: &'a Value, _groups: &'a [String]) -> BoxFuture<'a, Result<(bool, Decisions), MappingError>> {
        Box::pin(async move { Ok((true, Vec::new())) })
    }
    /// A change to one user's app groups, as deltas: the rules return the groups to add and
    /// remove (they may add defaults, drop additions, or veto removals).
    fn memberships<'a>(&'a self, _ctx: MapContext<'a>, _user: &'a Value, _is_new: bool, add: Vec<String>, remove: Vec<String>) -> BoxFuture<'a, Result<Memberships, MappingError>> {
        Box::pin(async move { Ok((add, remove, Vec::new())) })
    }
}

/// userName, active and attributes pass through unchanged; an IdP group is the app group of
/// the same name.
#[derive(Debug, Default)]
pub struct IdentityMapping;

/// The identity mapping's entry: the user's own userName, active and attributes.
pub fn identity_entry(user: &Value) -> Result<EntryWrite, MappingError> {
    identity_entry_with(user, user.clone())
}

/// The identity mapping's entry for `user`, with `attributes` in place of the user's own.
pub fn identity_entry_with(user: &Value, attributes: Value) -> Result<EntryWrite, MappingError> {
    let user_name = user.get("userName").and_then(Value::as_str).unwrap_or_default().to_string();
    if user_name.trim().is_empty() {
        return Err(MappingError::Rejected { rule: "identity".into(), reason: "userName is empty".into() });
    }
    let active = user.get("active").and_then(Value::as_bool).unwrap_or(true);
    Ok(EntryWrite { user_name, active, attributes, ..Default::default() })
}

/// The identity mapping's app groups: the IdP group's displayName.
pub fn identity_groups(group: &Value) -> Vec<String> {
    group.get("displayName").and_then(Value::as_str).map(|s| vec![s.to_string()]).unwrap_or_default()
}

impl MappingPipeline for IdentityMapping {
    fn map_user<'a>(&'a self, _ctx: MapContext<'a>, user: &'a Value) -> BoxFuture<'a, Result<(EntryWrite, Decisions), MappingError>> {
        Box::pin(async move { identity_entry(user).map(|e| (e, Vec::new())) })
    }

    fn map_group<'a>(&'a self, _ctx: MapContext<'a>, group: GroupInput<'a>) -> BoxFuture<'a, Result<(Vec<String>, Decisions), MappingError>> {
        Box::pin(async move { Ok((identity_groups(group.body), Vec::new())) })
    }

    fn deprovision<'a>(&'a self, _ctx: MapContext<'a>, _user: &'a Value, trigger: Trigger) -> BoxFuture<'a, Result<(DeprovisionAction, Decisions), MappingError>> {
        Box::pin(async move { Ok((default_action(trigger), Vec::new())) })
    }

    fn reactivate<'a>(&'a self, _ctx: MapContext<'a>, _user: &'a Value) -> BoxFuture<'a, Result<(bool, Decisions), MappingError>> {
        Box::pin(async move { Ok((true, Vec::new())) })
    }
}

/// Chooses the pipeline of each IdP connection.
pub trait PipelineRegistry: Send + Sync {
    /// The connection's active pipeline (taken once per request).
    fn pipeline_for(&self, idp: &IdpConnection) -> Arc<dyn MappingPipeline>;
    /// A candidate version to run beside the active one without writing (shadow evaluation).
    fn shadow_for(&self, _idp: &IdpConnection) -> Option<Arc<dyn MappingPipeline>> {
        None
    }
}

/// Every connection maps with the identity mapping.
#[derive(Default)]
pub struct IdentityRegistry(Arc<IdentityMapping>);

impl PipelineRegistry for IdentityRegistry {
    fn pipeline_for(&self, _idp: &IdpConnection) -> Arc<dyn MappingPipeline> {
        self.0.clone()
    }
}
