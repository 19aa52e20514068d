//! Directory entries: what the mapping pipeline makes of an IdP user, what happens to it on
//! deprovisioning, and what the application changes locally.

use serde_json::Value;

use super::Timestamp;

/// What deprovisioning does to a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum DeprovisionAction {
    /// Keep the entry, inactive, memberships snapshotted.
    Disable,
    /// Soft-delete the entry; purge it after this many days (0: at the next purge).
    Delete {
        /// Days before the purge.
        retention_days: u32,
    },
    /// Keep the entry but remove (and snapshot) its memberships.
    StripGroups,
    /// Leave the entry as it is, active.
    Keep,
}

/// A change of the user's lifecycle that comes with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifecycle {
    /// Nothing changes.
    #[default]
    Unchanged,
    /// The IdP deactivated the user.
    Deprovision(DeprovisionAction),
    /// The IdP reactivated the user; `restore` re-grants what deprovisioning snapshotted.
    Reactivate {
        /// Whether snapshotted memberships come back.
        restore: bool,
    },
    /// The IdP deactivated the user past the connection's guard threshold: the IdP view
    /// records it, the entry stays as it is, and the action waits for an admin.
    Held(DeprovisionAction),
}

/// The directory entry a user maps to (the output of the mapping pipeline).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntryWrite {
    /// The entry's userName (unique case-insensitively in the tenant).
    pub user_name: String,
    /// Usernames the rules offered in order (the first is `user_name`): the store takes the
    /// first no other entry has, atomically with the write. Empty: only `user_name`.
    pub user_name_candidates: Vec<String>,
    /// Whether the entry is active.
    pub active: bool,
    /// The mapped attributes.
    pub attributes: Value,
    /// App groups the connection's rules grant this user (memberships owned by the rules).
    pub grant: Vec<String>,
    /// App groups the rules take back (only memberships the rules granted).
    pub revoke: Vec<String>,
    /// The lifecycle change that comes with the write.
    pub lifecycle: Lifecycle,
    /// The connection's scope rules keep the user out of the directory: it has no entry (or
    /// the one it had is deprovisioned by `lifecycle` and no longer written).
    pub out_of_scope: bool,
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
        /// Lower-case domains whose addresses may be adopted (empty: any).
        #[serde(default)]
        verified_domains: Vec<String>,
    },
}

/// What the directory holds for one entry (the application's view).
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryEntry {
    /// Its userName.
    pub user_name: String,
    /// Whether it is active.
    pub active: bool,
    /// Its attributes.
    pub attributes: Value,
    /// Its app groups (names, sorted).
    pub groups: Vec<String>,
    /// Soft-deleted: hidden from the application, purged after `purge_after`.
    pub deleted: bool,
    /// When a soft-deleted entry is purged.
    pub purge_after: Option<Timestamp>,
}

impl DirectoryEntry {
    /// The read-only view rules receive as `current`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"userName": self.user_name, "active": self.active, "attributes": self.attributes, "groups": self.groups})
    }
}

/// A change made in the application to one directory entry: attributes it sets (owned
/// locally from then on, so no IdP write or re-apply replaces them; `null` gives one back to
/// the IdPs) and groups it grants or takes back (local memberships only).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalChange {
    /// Attributes set (or, with `null`, given back).
    #[serde(default)]
    pub attributes: serde_json::Map<String, Value>,
    /// App groups granted locally.
    #[serde(default)]
    pub add_groups: Vec<String>,
    /// Local memberships taken back.
    #[serde(default)]
    pub remove_groups: Vec<String>,
}
