//! The directory as the application reads it: effective users and groups (after the rules)
//! and the change feed that follows them.

use serde_json::Value;

use super::Timestamp;

/// A reference to a user or a group: its stable public id and its current name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirRef {
    /// Stable id.
    pub id: String,
    /// Current name.
    pub name: String,
}

/// One visible directory entry (soft-deleted ones are hidden).
#[derive(Debug, Clone, PartialEq)]
pub struct DirUser {
    /// Stable: survives renames and is never reused.
    pub id: String,
    /// Its userName.
    pub user_name: String,
    /// Whether it is active.
    pub active: bool,
    /// The mapped attributes (core, enterprise extension, custom), as the rules produced them.
    pub attributes: Value,
    /// Effective memberships (held by any owner), sorted by group name.
    pub groups: Vec<DirRef>,
    /// When it was created.
    pub created: Timestamp,
    /// When it last changed.
    pub modified: Timestamp,
}

/// One application group.
#[derive(Debug, Clone, PartialEq)]
pub struct DirGroup {
    /// Stable id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created: Timestamp,
    /// Visible members, sorted by username; `None` when not asked for.
    pub members: Option<Vec<DirRef>>,
}

/// A page of a directory listing, with the change-feed position it was read at: following
/// the feed from `cursor` misses nothing that happened after the page was read.
#[derive(Debug, Clone)]
pub struct DirPage<T> {
    /// Matches in all.
    pub total: usize,
    /// This page's.
    pub items: Vec<T>,
    /// The feed position the page was read at.
    pub cursor: i64,
}

/// What happened to the directory. Users appear (`UserCreated`, also when a soft-deleted entry
/// is restored), change, and disappear (`UserDeleted`: soft-deleted or deleted; its
/// memberships go with it without events of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub enum ChangeKind {
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.updated")]
    UserUpdated,
    #[serde(rename = "user.deleted")]
    UserDeleted,
    #[serde(rename = "group.created")]
    GroupCreated,
    #[serde(rename = "membership.added")]
    MembershipAdded,
    #[serde(rename = "membership.removed")]
    MembershipRemoved,
}

impl ChangeKind {
    /// A kind by its event name.
    pub fn parse(s: &str) -> Option<ChangeKind> {
        Some(match s {
            "user.created" => ChangeKind::UserCreated,
            "user.updated" => ChangeKind::UserUpdated,
            "user.deleted" => ChangeKind::UserDeleted,
            "group.created" => ChangeKind::GroupCreated,
            "membership.added" => ChangeKind::MembershipAdded,
            "membership.removed" => ChangeKind::MembershipRemoved,
            _ => return None,
        })
    }
}

/// One change, with the state it left: a user event carries the user as it was right after
/// the change (not as it is now), so replaying the feed reproduces the directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// The position of this change; the next read starts after it.
    pub seq: i64,
    /// When it was recorded.
    pub at: Timestamp,
    /// What happened.
    pub kind: ChangeKind,
    /// The user concerned (user and membership events).
    pub user: Option<DirRef>,
    /// For user.created/updated: `active` and the attributes after the change.
    pub state: Option<(bool, Value)>,
    /// The group concerned (group and membership events).
    pub group: Option<DirRef>,
}

/// A read of the change feed.
#[derive(Debug, Clone)]
pub enum Feed {
    /// Changes after the cursor, oldest first. `next` is the cursor to read from next (the
    /// last change returned, or the cursor given when there was none); `more` says whether
    /// more changes were already waiting beyond this page.
    #[allow(missing_docs)]
    Changes { changes: Vec<Change>, next: i64, more: bool },
    /// The cursor is older than the retained changes (they were purged): list the directory
    /// again and follow from the cursor that listing returns.
    #[allow(missing_docs)]
    Expired { oldest: i64 },
}
