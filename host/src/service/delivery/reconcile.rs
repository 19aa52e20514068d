//! Reconciliation of a SCIM target with the directory: read what the target has (paged),
//! compare it with the directory and with what Mapwright put there, and plan the requests
//! that make the target match: create what is missing, update what differs, deactivate what
//! Mapwright created that the directory no longer has, fix group members. A dry run shows the
//! plan; otherwise it is applied. It runs when a target is added, when asked (`target sync`),
//! on a schedule (`sync_every_secs`), and when a target fell behind the feed's retention.
//!
//! It never touches a target resource Mapwright did not create or adopt, and never removes a
//! group member it does not manage.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::client::Failure;
use super::sink::ScimSink;
use crate::model::{DeletePolicy, DirUser, Mapped, Origin, Target};
use crate::scim::eval::fold;
use crate::scim::list::ListParams;
use crate::scim::schema::ResourceKind;
use crate::store::Store;

/// One request (or recording) the reconciliation makes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// A directory user the target does not have.
    CreateUser {
        /// The directory user.
        uid: String,
        /// Its userName.
        user_name: String,
        /// What is sent.
        #[serde(skip)]
        body: Value,
    },
    /// A user whose copy in the target differs from the directory.
    UpdateUser {
        /// The directory user.
        uid: String,
        /// Its userName.
        user_name: String,
        /// The target's id.
        remote_id: String,
        /// The attributes that differ: `{name: [target, directory]}`.
        differences: BTreeMap<String, [Value; 2]>,
        /// Whether Mapwright takes over a user the target had (same userName).
        adopt: bool,
        /// What the target has now (of what is sent).
        #[serde(skip)]
        current: Value,
        /// What is sent.
        #[serde(skip)]
        body: Value,
    },
    /// A user Mapwright created that the directory no longer has: deactivated or deleted per
    /// the target's policy.
    RemoveUser {
        /// The directory user it was.
        uid: String,
        /// Its userName.
        user_name: String,
        /// The target's id.
        remote_id: String,
        /// `deactivate` or `delete`.
        how: DeletePolicy,
    },
    /// A directory group the target does not have.
    CreateGroup {
        /// The directory group.
        uid: String,
        /// Its name.
        name: String,
    },
    /// A group the target has by the same name: Mapwright takes it over.
    AdoptGroup {
        /// The directory group.
        uid: String,
        /// Its name (in the target).
        name: String,
        /// The target's id.
        remote_id: String,
        /// What the target has now (of what is sent).
        #[serde(skip)]
        current: Value,
        /// What is sent.
        #[serde(skip)]
        body: Value,
    },
    /// A group whose copy in the target differs from what the directory sends (renamed by
    /// hand, or the target's shape rules changed).
    UpdateGroup {
        /// The directory group.
        uid: String,
        /// Its name (in the target).
        name: String,
        /// The target's id.
        remote_id: String,
        /// The attributes that differ: `{name: [target, directory]}`.
        differences: BTreeMap<String, [Value; 2]>,
        /// What the target has now (of what is sent).
        #[serde(skip)]
        current: Value,
        /// What is sent.
        #[serde(skip)]
        body: Value,
    },
    /// Members to add to and remove from a target group (by directory user).
    Members {
        /// The directory group.
        uid: String,
        /// Its name.
        name: String,
        /// Directory users to add.
        add: Vec<String>,
        /// Target ids of members Mapwright manages that the directory group does not have.
        remove: Vec<String>,
    },
}

/// What a reconciliation would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// The requests, in the order they are made (users, then groups, then members).
    pub actions: Vec<Action>,
    /// Users and groups the target has that Mapwright does not manage (left alone).
    pub unmanaged: usize,
}

/// What applying a plan did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Done {
    /// Actions made.
    pub applied: usize,
    /// Actions the target refused: (what, why).
    pub failed: Vec<(String, String)>,
}

fn store_failure(e: crate::store::StoreError) -> Failure {
    Failure::Busy { retry_after: None, why: format!("reading the directory: {e}") }
}

/// Every visible user and group of the tenant's directory (groups with their members).
async fn directory<S: Store>(store: &S, target: &Target) -> Result<(Vec<DirUser>, Vec<crate::model::DirGroup>), Failure> {
    const COUNT: usize = 500;
    let mut users = Vec::new();
    loop {
        let params = ListParams { start_index: Some((users.len() + 1).to_string()), count: Some(COUNT.to_string()), ..Default::default() };
        let q = params.resolve(ResourceKind::User).map_err(|e| Failure::Refused { answer: e.detail })?;
        let page = store.directory_users(target.tenant_id, &q).await.map_err(store_failure)?;
        let got = page.items.len();
        users.extend(page.items);
        if got == 0 || users.len() >= page.total {
            break;
        }
    }
    let mut groups = Vec::new();
    loop {
        let params = ListParams { start_index: Some((groups.len() + 1).to_string()), count: Some(COUNT.to_string()), attributes: Some("displayName,members".into()), ..Default::default() };
        let q = params.resolve(ResourceKind::Group).map_err(|e| Failure::Refused { answer: e.detail })?;
        let page = store.directory_groups(target.tenant_id, &q).await.map_err(store_failure)?;
        let got = page.items.len();
        groups.extend(page.items);
        if got == 0 || groups.len() >= page.total {
            break;
        }
    }
    Ok((users, groups))
}

/// The attributes a comparison looks at: those of `body`, and those of what was `sent` before
/// (as nulls: sent no more).
fn with_keys_of(body: &Value, sent: Option<&Value>) -> Value {
    let mut keys = body.clone();
    if let (Some(o), Some(sent)) = (keys.as_object_mut(), sent.and_then(Value::as_object)) {
        for k in sent.keys() {
            o.entry(k.clone()).or_insert(Value::Null);
        }
    }
    keys
}

/// What differs between the target's `current` copy and `body`: `{name: [target, sent]}`,
/// with `null` for an attribute `body` no longer has.
fn differences(current: &Value, body: &Value) -> BTreeMap<String, [Value; 2]> {
    let mut out = BTreeMap::new();
    for (k, v) in body.as_object().into_iter().flatten().filter(|(k, _)| *k != "schemas") {
        let have = current.get(k).cloned().unwrap_or(Value::Null);
        if have != *v {
            out.insert(k.clone(), [have, v.clone()]);
        }
    }
    for (k, have) in current.as_object().into_iter().flatten().filter(|(k, _)| *k != "schemas" && body.get(k.as_str()).is_none()) {
        if !have.is_null() {
            out.insert(k.clone(), [have.clone(), Value::Null]);
        }
    }
    out
}

/// Plans the reconciliation of a SCIM target: reads the target and the directory, writes
/// nothing.
pub async fn plan<S: Store>(store: &S, target: &Target, sink: &ScimSink<S>) -> Result<Plan, Failure> {
    let remote_users = sink.list_all("Users").await?;
    let remote_groups = sink.list_all("Groups").await?;
    let (users, groups) = directory(store, target).await?;
    let mapped_users: HashMap<String, Mapped> = store.all_mapped(target.id, "User").await.map_err(store_failure)?.into_iter().map(|m| (m.uid.clone(), m)).collect();
    let mapped_groups: HashMap<String, Mapped> = store.all_mapped(target.id, "Group").await.map_err(store_failure)?.into_iter().map(|m| (m.uid.clone(), m)).collect();
    let by_id: HashMap<&str, &Value> = remote_users.iter().filter_map(|u| u["id"].as_str().map(|id| (id, u))).collect();
    let by_name: HashMap<String, &Value> = remote_users.iter().filter_map(|u| u["userName"].as_str().map(|n| (fold(n), u))).collect();
    let quirks = sink.quirks();
    let mut plan = Plan::default();
    let mut managed: BTreeSet<String> = BTreeSet::new();

    for u in &users {
        let body = sink.shaped_user(&u.user_name, u.active, &u.attributes).await?;
        let existing = match mapped_users.get(&u.id) {
            Some(m) => by_id.get(m.remote_id.as_str()).map(|r| (m.remote_id.clone(), *r, false)),
            None => by_name.get(&fold(&u.user_name)).and_then(|r| r["id"].as_str().map(|id| (id.to_string(), *r, true))),
        };
        match existing {
            Some((remote_id, remote, adopt)) => {
                managed.insert(remote_id.clone());
                // What Mapwright sent before counts too: an attribute the shape rules no longer
                // send is removed from the target, not left behind.
                let sent = mapped_users.get(&u.id).filter(|_| !adopt).map(|m| &m.sent);
                let current = quirks.comparable(remote, &with_keys_of(&body, sent));
                let differences = differences(&current, &body);
                if adopt || !differences.is_empty() {
                    plan.actions.push(Action::UpdateUser { uid: u.id.clone(), user_name: u.user_name.clone(), remote_id, differences, adopt, current, body });
                }
            }
            None => plan.actions.push(Action::CreateUser { uid: u.id.clone(), user_name: u.user_name.clone(), body }),
        }
    }
    let visible: BTreeSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    for (uid, m) in &mapped_users {
        if visible.contains(uid.as_str()) || m.origin != Origin::Created {
            continue;
        }
        let Some(remote) = by_id.get(m.remote_id.as_str()) else { continue };
        managed.insert(m.remote_id.clone());
        let gone = match quirks.delete {
            DeletePolicy::Delete => false,
            DeletePolicy::Deactivate => remote["active"] == Value::Bool(false),
        };
        if !gone {
            let user_name = m.sent["userName"].as_str().unwrap_or_default().to_string();
            plan.actions.push(Action::RemoveUser { uid: uid.clone(), user_name, remote_id: m.remote_id.clone(), how: quirks.delete });
        }
    }

    let groups_by_id: HashMap<&str, &Value> = remote_groups.iter().filter_map(|g| g["id"].as_str().map(|id| (id, g))).collect();
    let groups_by_name: HashMap<String, &Value> = remote_groups.iter().filter_map(|g| g["displayName"].as_str().map(|n| (fold(n), g))).collect();
    let managed_users: BTreeSet<String> = mapped_users.values().map(|m| m.remote_id.clone()).chain(managed.iter().cloned()).collect();
    let mut managed_groups = 0;
    for g in &groups {
        let body = sink.group_body(&g.name).await?;
        let shown = body["displayName"].as_str().unwrap_or(&g.name).to_string();
        let remote = match mapped_groups.get(&g.id) {
            Some(m) => groups_by_id.get(m.remote_id.as_str()).copied(),
            None => groups_by_name.get(&fold(&shown)).copied(),
        };
        match (remote, mapped_groups.contains_key(&g.id)) {
            (Some(r), false) => {
                let current = quirks.comparable(r, &body);
                plan.actions.push(Action::AdoptGroup { uid: g.id.clone(), name: shown, remote_id: r["id"].as_str().unwrap_or_default().to_string(), current, body });
            }
            (None, _) => plan.actions.push(Action::CreateGroup { uid: g.id.clone(), name: g.name.clone() }),
            (Some(r), true) => {
                let current = quirks.comparable(r, &with_keys_of(&body, mapped_groups.get(&g.id).map(|m| &m.sent)));
                let differences = differences(&current, &body);
                if !differences.is_empty() {
                    let remote_id = r["id"].as_str().unwrap_or_default().to_string();
                    plan.actions.push(Action::UpdateGroup { uid: g.id.clone(), name: shown, remote_id, differences, current, body });
                }
            }
        }
        managed_groups += usize::from(remote.is_some());
        let have: BTreeSet<String> = remote.and_then(|r| r["members"].as_array()).into_iter().flatten().filter_map(|m| m["value"].as_str().map(str::to_string)).collect();
        let want: Vec<&crate::model::DirRef> = g.members.iter().flatten().collect();
        let want_remote: BTreeSet<String> = want.iter().filter_map(|m| mapped_users.get(&m.id).map(|x| x.remote_id.clone())).collect();
        let add: Vec<String> = want.iter().filter(|m| mapped_users.get(&m.id).is_none_or(|x| !have.contains(&x.remote_id))).map(|m| m.id.clone()).collect();
        let remove: Vec<String> = have.iter().filter(|id| managed_users.contains(*id) && !want_remote.contains(*id)).cloned().collect();
        if !add.is_empty() || !remove.is_empty() {
            plan.actions.push(Action::Members { uid: g.id.clone(), name: g.name.clone(), add, remove });
        }
    }
    plan.unmanaged = remote_users.len().saturating_sub(managed.len()) + remote_groups.len().saturating_sub(managed_groups);
    Ok(plan)
}

/// Applies a plan. A target that stops answering ends it (`Err`, to be tried again); an
/// action the target refuses is reported and the others go on.
pub async fn apply<S: Store>(sink: &ScimSink<S>, plan: &Plan) -> Result<Done, Failure> {
    let mut done = Done::default();
    for action in &plan.actions {
        let (what, result) = match action {
            Action::CreateUser { uid, user_name, body } => (format!("create user {user_name}"), sink.create_user_anew(uid, body).await.map(|_| ())),
            Action::UpdateUser { uid, user_name, remote_id, adopt, current, body, .. } => {
                let origin = if *adopt { Origin::Adopted } else { existing_origin(sink, uid).await };
                (format!("update user {user_name}"), sink.take_over_user(uid, remote_id, origin, current, body).await)
            }
            Action::RemoveUser { uid, user_name, .. } => (format!("remove user {user_name}"), sink.remove_user(uid).await),
            Action::CreateGroup { uid, name } => (format!("create group {name}"), sink.create_group_anew(uid, name).await.map(|_| ())),
            Action::AdoptGroup { uid, name, remote_id, current, body } => (format!("adopt group {name}"), sink.take_over_group(uid, remote_id, current, body).await),
            Action::UpdateGroup { uid, name, remote_id, current, body, .. } => (format!("update group {name}"), sink.update_mapped_group(uid, remote_id, current, body).await),
            Action::Members { uid, name, add, remove } => (format!("members of {name}"), members(sink, uid, name, add, remove).await),
        };
        match result {
            Ok(()) => done.applied += 1,
            Err(Failure::Refused { answer }) => done.failed.push((what, answer)),
            Err(busy) => return Err(busy),
        }
    }
    Ok(done)
}

async fn existing_origin<S: Store>(sink: &ScimSink<S>, uid: &str) -> Origin {
    sink.mapped_origin(uid).await.unwrap_or(Origin::Created)
}

async fn members<S: Store>(sink: &ScimSink<S>, uid: &str, name: &str, add: &[String], remove: &[String]) -> Result<(), Failure> {
    let group = sink.ensure_group(uid, name).await?;
    let mut add_remote = Vec::with_capacity(add.len());
    for user in add {
        add_remote.extend(sink.provision(user).await?);
    }
    sink.patch_members(&group, &add_remote, remove).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_attribute_no_longer_sent_is_a_difference_to_remove() {
        let body = json!({"userName": "jdoe", "active": true});
        let sent = json!({"userName": "jdoe", "active": true, "userType": "Employee"});
        let keys = with_keys_of(&body, Some(&sent));
        assert_eq!(keys, json!({"userName": "jdoe", "active": true, "userType": null}));
        let current = json!({"userName": "jdoe", "active": true, "userType": "Employee"});
        assert_eq!(differences(&current, &body), BTreeMap::from([("userType".to_string(), [json!("Employee"), Value::Null])]));
        // Removed by hand in the target already: nothing to do.
        assert!(differences(&json!({"userName": "jdoe", "active": true}), &body).is_empty());
    }
}
