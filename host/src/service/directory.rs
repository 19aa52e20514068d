//! The directory as the application reads it: effective users and groups (after the rules)
//! and the change feed that follows them, with long polling.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::model::{Change, ChangeKind, DirGroup, DirPage, DirRef, DirUser, Feed, Tenant};
use crate::scim::schema::USER_SCHEMA;
use crate::scim::list::ListQuery;
use crate::store::{Store, StoreError};

/// The longest a `changes` read waits for news.
pub const MAX_WAIT_SECS: u64 = 60;
/// The most changes one read returns.
pub const MAX_CHANGES: usize = 1000;

/// Why a directory read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The request is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The cursor is older than the retained changes: list the directory again.
    #[error("cursor {since} is older than the retained changes (they start after {oldest}); list the directory again and follow from its cursor")]
    Expired {
        /// The cursor given.
        since: i64,
        /// The oldest position retained.
        oldest: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A read of the feed: changes after the cursor, oldest first, and where to read from next.
#[derive(Debug, Clone)]
pub struct FeedPage {
    /// The changes.
    pub changes: Vec<Change>,
    /// The cursor of the next read.
    pub next: i64,
    /// Whether more changes were already waiting.
    pub more: bool,
}

/// The application's reads of one store.
pub struct DirectoryReader<S: Store> {
    store: Arc<S>,
}

impl<S: Store> DirectoryReader<S> {
    /// The reader over `store`.
    pub fn new(store: Arc<S>) -> DirectoryReader<S> {
        DirectoryReader { store }
    }

    /// Visible users, filtered and paged, with the feed position they were read at.
    pub async fn users(&self, tenant: &Tenant, q: &ListQuery) -> Result<DirPage<DirUser>, ReadError> {
        Ok(self.store.directory_users(tenant.id, q).await?)
    }

    /// One visible user by its directory id.
    pub async fn user(&self, tenant: &Tenant, id: &str) -> Result<Option<DirUser>, ReadError> {
        Ok(self.store.directory_user(tenant.id, id).await?)
    }

    /// App groups, filtered and paged.
    pub async fn groups(&self, tenant: &Tenant, q: &ListQuery) -> Result<DirPage<DirGroup>, ReadError> {
        Ok(self.store.directory_groups(tenant.id, q).await?)
    }

    /// One app group by its directory id (with its members if asked).
    pub async fn group(&self, tenant: &Tenant, id: &str, with_members: bool) -> Result<Option<DirGroup>, ReadError> {
        Ok(self.store.directory_group(tenant.id, id, with_members).await?)
    }

    /// The position of now: following from it gives every change from here on.
    pub async fn cursor(&self, tenant: &Tenant) -> Result<i64, ReadError> {
        Ok(self.store.change_cursor(tenant.id).await?)
    }

    /// The tenant's changes after `since` (at most `limit`, 1 to [`MAX_CHANGES`]). With none
    /// yet, waits up to `wait` (at most [`MAX_WAIT_SECS`]) for a commit to bring some;
    /// answers at once, empty, when `stopping` turns true (the server is draining).
    pub async fn changes(&self, tenant: &Tenant, since: i64, limit: usize, wait: Duration, mut stopping: tokio::sync::watch::Receiver<bool>) -> Result<FeedPage, ReadError> {
        if limit == 0 || limit > MAX_CHANGES {
            return Err(ReadError::Invalid(format!("limit must be 1 to {MAX_CHANGES}")));
        }
        if wait > Duration::from_secs(MAX_WAIT_SECS) {
            return Err(ReadError::Invalid(format!("wait is at most {MAX_WAIT_SECS} seconds")));
        }
        let mut deadline = tokio::time::Instant::now() + wait;
        // Subscribed before reading: a commit between the read and the wait still wakes us.
        let mut commits = self.store.subscribe_commits();
        loop {
            let (changes, next, more) = match self.store.changes(tenant.id, since, limit).await? {
                Feed::Changes { changes, next, more } => (changes, next, more),
                Feed::Expired { oldest } => return Err(ReadError::Expired { since, oldest }),
            };
            if !changes.is_empty() || tokio::time::Instant::now() >= deadline || *stopping.borrow() {
                return Ok(FeedPage { changes, next, more });
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                woke = commits.changed() => if woke.is_err() {
                    // The store is closing: answer now.
                    deadline = tokio::time::Instant::now();
                },
                // A draining server answers now rather than hold its shutdown up.
                _ = stopping.changed() => deadline = tokio::time::Instant::now(),
            }
        }
    }
}

/// A user as the application sees it: the mapped attributes, with the directory's own id,
/// userName and active, and its effective groups when given.
pub fn user_resource(id: &str, user_name: &str, active: bool, attributes: &Value, groups: Option<&[DirRef]>) -> Map<String, Value> {
    let mut out = Map::new();
    // The core schema, then every extension the rules produced (enterprise, custom).
    let mut schemas = vec![Value::from(USER_SCHEMA)];
    for k in attributes.as_object().into_iter().flatten().map(|(k, _)| k).filter(|k| k.starts_with("urn:")) {
        schemas.push(k.as_str().into());
    }
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), id.into());
    for (k, v) in attributes.as_object().into_iter().flatten() {
        if !matches!(k.as_str(), "schemas" | "id" | "meta" | "groups" | "userName" | "active") {
            out.insert(k.clone(), v.clone());
        }
    }
    out.insert("userName".into(), user_name.into());
    out.insert("active".into(), active.into());
    if let Some(groups) = groups {
        out.insert("groups".into(), groups.iter().map(|g| json!({"value": g.id, "display": g.name})).collect());
    }
    out
}

/// One change as the application receives it (the feed API and webhooks alike): its cursor,
/// time and type, the user as the change left it (or its id and name), the group concerned.
pub fn change_event(c: &Change) -> Value {
    let mut out = json!({"cursor": c.seq.to_string(), "at": c.at, "type": c.kind});
    if let Some(u) = &c.user {
        out["user"] = match (&c.state, c.kind) {
            (Some((active, attrs)), ChangeKind::UserCreated | ChangeKind::UserUpdated) => Value::Object(user_resource(&u.id, &u.name, *active, attrs, None)),
            _ => json!({"id": u.id, "userName": u.name}),
        };
    }
    if let Some(g) = &c.group {
        out["group"] = json!({"id": g.id, "displayName": g.name});
    }
    out
}

