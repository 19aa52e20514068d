//! What delivering one directory change means for each kind of target: a signed webhook
//! request, or the SCIM requests that make a downstream application's copy match.

use std::sync::Arc;

use reqwest::{Method, Url};
use serde_json::{Map, Value, json};

use super::client::{Failure, TargetClient};
use super::quirks::ScimQuirks;
use super::shaping::{Kind, Shaper};
use super::webhook;
use crate::model::{Change, ChangeKind, DeletePolicy, Mapped, Origin, Target, Timestamp, UpdateMode, WebhookSecret};
use crate::scim::patch::PATCH_SCHEMA as PATCH_OP;
use crate::scim::schema::GROUP_SCHEMA;
use crate::service::directory::{change_event, user_resource};
use crate::store::Store;

/// Where a target's deliveries go (one per worker: the size of the variants does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Sink<S: Store> {
    /// Signed JSON events.
    Webhook(WebhookSink),
    /// SCIM provisioning.
    Scim(ScimSink<S>),
}

impl<S: Store> Sink<S> {
    /// Delivers one change.
    pub async fn deliver(&self, change: &Change) -> Result<(), Failure> {
        match self {
            Sink::Webhook(w) => w.deliver(change).await,
            Sink::Scim(s) => s.deliver(change).await,
        }
    }
}

/// What a change is about, for ordering: a user's own events in order, a group's, and each
/// membership's (one user in one group: an add and a later remove must not swap). A change
/// parked for one of them holds back only that one's later changes.
pub fn resource_key(change: &Change) -> String {
    match (change.kind, &change.user, &change.group) {
        (ChangeKind::MembershipAdded | ChangeKind::MembershipRemoved, Some(u), Some(g)) => format!("membership:{}:{}", g.id, u.id),
        (ChangeKind::GroupCreated, _, Some(g)) => format!("group:{}", g.id),
        (_, Some(u), _) => format!("user:{}", u.id),
        _ => format!("seq:{}", change.seq),
    }
}

/// A Standard Webhooks endpoint.
pub struct WebhookSink {
    client: TargetClient,
    url: Url,
    secrets: Vec<WebhookSecret>,
    shaper: Shaper,
}

/// The body of a webhook delivery: the event's type and time, and the change as the change
/// feed gives it (`data`).
pub fn webhook_payload(change: &Change) -> Value {
    json!({"type": change.kind, "timestamp": change.at, "data": change_event(change)})
}

/// Shapes the user and the group of a change event as the target's shape rules say.
pub async fn shape_event(shaper: &Shaper, data: &mut Value) -> Result<(), Failure> {
    for (key, kind) in [("user", Kind::User), ("group", Kind::Group)] {
        if let Some(r) = data.get_mut(key) {
            *r = shaper.shape(kind, r.take()).await.map_err(|e| e.failure())?.resource;
        }
    }
    Ok(())
}

impl WebhookSink {
    /// A sink posting to `url`, signing with `secrets`.
    pub fn new(client: TargetClient, url: Url, secrets: Vec<WebhookSecret>, shaper: Shaper) -> WebhookSink {
        WebhookSink { client, url, secrets, shaper }
    }

    async fn deliver(&self, change: &Change) -> Result<(), Failure> {
        let mut body = webhook_payload(change);
        shape_event(&self.shaper, &mut body["data"]).await?;
        self.post(&webhook::message_id(change.seq), &body).await
    }

    /// Tells the receiver that the changes after `from` up to `to` were purged before it got
    /// them (it was unreachable longer than the feed keeps changes): it lists the directory
    /// again (the directory API) and goes on from there.
    pub async fn deliver_gap(&self, (from, to): (i64, i64)) -> Result<(), Failure> {
        let body = json!({"type": "sync.required", "timestamp": Timestamp::now(), "data": {"missed_after": from.to_string(), "missed_through": to.to_string()}});
        self.post(&format!("gap_{from}_{to}"), &body).await
    }

    async fn post(&self, id: &str, body: &Value) -> Result<(), Failure> {
        let text = body.to_string();
        let id = id.to_string();
        let now = chrono::Utc::now().timestamp();
        let signature = webhook::signature_header(&self.secrets, &Timestamp::now(), &id, now, text.as_bytes()).map_err(|e| Failure::Refused { answer: e.to_string() })?;
        let headers = [("webhook-id", id), ("webhook-timestamp", now.to_string()), ("webhook-signature", signature)];
        self.client.send(Method::POST, self.url.clone(), Some(body), &headers).await.map(|_| ())
    }
}

/// A downstream SCIM service provider, and what Mapwright has put there.
pub struct ScimSink<S: Store> {
    client: TargetClient,
    base: Url,
    target: Target,
    quirks: ScimQuirks,
    store: Arc<S>,
    shaper: Shaper,
    /// The schema extensions the target's User resource type announces (`None`: it does not
    /// say, so everything is sent); read once.
    extensions: tokio::sync::OnceCell<Option<Vec<String>>>,
}

fn refused(answer: impl Into<String>) -> Failure {
    Failure::Refused { answer: answer.into() }
}

fn store_failure(e: crate::store::StoreError) -> Failure {
    // The store is this server's, not the target's: wait and try again.
    Failure::Busy { retry_after: None, why: format!("reading the directory: {e}") }
}

/// What a user looks like in a target: the directory's user without its id and groups
/// (the target assigns its own id; memberships go through the groups).
pub fn user_body(name: &str, active: bool, attributes: &Value) -> Value {
    let mut u = user_resource("", name, active, attributes, None);
    u.remove("id");
    Value::Object(u)
}

/// The PATCH operations that turn `sent` into `now`, attribute by attribute.
pub fn patch_ops(sent: &Value, now: &Value) -> Vec<Value> {
    let empty = Map::new();
    let (old, new) = (sent.as_object().unwrap_or(&empty), now.as_object().unwrap_or(&empty));
    let mut ops = Vec::new();
    for (k, v) in new.iter().filter(|(k, _)| *k != "schemas") {
        match (old.get(k), v) {
            (Some(was), _) if was == v => {}
            // A replace of a complex attribute leaves the sub-attributes it does not name as
            // they were (RFC 7644 §3.5.2.3): those no longer sent are removed one by one.
            (Some(Value::Object(was)), Value::Object(now)) => {
                for sub in was.keys().filter(|s| !now.contains_key(*s)) {
                    let path = if k.starts_with("urn:") { format!("{k}:{sub}") } else { format!("{k}.{sub}") };
                    ops.push(json!({"op": "remove", "path": path}));
                }
                if now.iter().any(|(s, x)| was.get(s) != Some(x)) {
                    ops.push(json!({"op": "replace", "path": k, "value": v}));
                }
            }
            _ => ops.push(json!({"op": "replace", "path": k, "value": v})),
        }
    }
    for k in old.keys().filter(|k| *k != "schemas" && !new.contains_key(*k)) {
        ops.push(json!({"op": "remove", "path": k}));
    }
    ops
}

fn patch(ops: Vec<Value>) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn filter_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl<S: Store> ScimSink<S> {
    /// A sink provisioning into the SCIM service at `base`.
    pub fn new(client: TargetClient, base: Url, target: Target, store: Arc<S>, shaper: Shaper) -> ScimSink<S> {
        let quirks = ScimQuirks::for_target(&target);
        ScimSink { client, base, target, quirks, store, shaper, extensions: tokio::sync::OnceCell::new() }
    }

    /// A directory user as this target takes it: shaped by the target's rules, then without
    /// the extensions the target does not announce (a service provider refuses attributes it
    /// has no schema for).
    pub async fn shaped_user(&self, name: &str, active: bool, attributes: &Value) -> Result<Value, Failure> {
        let mut body = self.shaper.shape(Kind::User, user_body(name, active, attributes)).await.map_err(|e| e.failure())?.resource;
        let known = self.extensions.get_or_try_init(|| self.read_extensions()).await?;
        if let (Some(known), Some(o)) = (known, body.as_object_mut()) {
            o.retain(|k, _| !k.starts_with("urn:") || known.contains(k));
            let present: Vec<Value> = std::iter::once(Value::from(crate::scim::schema::USER_SCHEMA)).chain(o.keys().filter(|k| k.starts_with("urn:")).map(|k| Value::from(k.as_str()))).collect();
            o.insert("schemas".into(), Value::Array(present));
        }
        Ok(body)
    }

    /// The extensions the target's User resource type lists, from its discovery endpoint.
    async fn read_extensions(&self) -> Result<Option<Vec<String>>, Failure> {
        match self.client.send(Method::GET, self.url("ResourceTypes")?, None, &[]).await {
            Ok(a) => {
                let types = a.body["Resources"].as_array().cloned().or_else(|| a.body.as_array().cloned()).unwrap_or_default();
                let user = types.iter().find(|t| t["name"] == "User" || t["id"] == "User");
                Ok(user.map(|u| u["schemaExtensions"].as_array().into_iter().flatten().filter_map(|e| e["schema"].as_str().map(str::to_string)).collect()))
            }
            // A target without discovery is sent everything.
            Err(Failure::Refused { .. }) => Ok(None),
            Err(busy) => Err(busy),
        }
    }

    /// How Mapwright came to manage the target's copy of a user, if it does.
    pub async fn mapped_origin(&self, uid: &str) -> Option<Origin> {
        self.store.mapped(self.target.id, "User", uid).await.ok().flatten().map(|m| m.origin)
    }

    /// The target's id of a directory user, provisioning it first from the directory as it is
    /// now if the target does not have it (`None`: the directory no longer has it either).
    pub async fn provision(&self, uid: &str) -> Result<Option<String>, Failure> {
        if let Some(m) = self.store.mapped(self.target.id, "User", uid).await.map_err(store_failure)? {
            return Ok(Some(m.remote_id));
        }
        let Some(u) = self.store.directory_user(self.target.tenant_id, uid).await.map_err(store_failure)? else { return Ok(None) };
        let body = self.shaped_user(&u.user_name, u.active, &u.attributes).await?;
        self.put_user(uid, &body).await.map(Some)
    }

    /// The target's quirks.
    pub fn quirks(&self) -> &ScimQuirks {
        &self.quirks
    }

    /// The target this sink provisions.
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn url(&self, path: &str) -> Result<Url, Failure> {
        let base = self.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{path}")).map_err(|e| refused(format!("building a URL: {e}")))
    }

    async fn deliver(&self, c: &Change) -> Result<(), Failure> {
        match c.kind {
            ChangeKind::UserCreated | ChangeKind::UserUpdated => {
                let (Some(user), Some((active, attrs))) = (&c.user, &c.state) else { return Ok(()) };
                let body = self.shaped_user(&user.name, *active, attrs).await?;
                self.put_user(&user.id, &body).await.map(|_| ())
            }
            ChangeKind::UserDeleted => {
                let Some(user) = &c.user else { return Ok(()) };
                self.remove_user(&user.id).await
            }
            ChangeKind::GroupCreated => {
                let Some(g) = &c.group else { return Ok(()) };
                self.ensure_group(&g.id, &g.name).await.map(|_| ())
            }
            ChangeKind::MembershipAdded | ChangeKind::MembershipRemoved => {
                let (Some(u), Some(g)) = (&c.user, &c.group) else { return Ok(()) };
                self.membership(&u.id, &g.id, &g.name, c.kind == ChangeKind::MembershipAdded).await
            }
        }
    }

    /// Makes the target's copy of a directory user `body`: created (or adopted) if there is
    /// none, updated if it differs from what was sent. Returns the target's id.
    pub async fn put_user(&self, uid: &str, body: &Value) -> Result<String, Failure> {
        let mapped = self.store.mapped(self.target.id, "User", uid).await.map_err(store_failure)?;
        match mapped {
            Some(m) if m.sent == *body => Ok(m.remote_id),
            Some(m) => {
                self.update_user(&m.remote_id, &m.sent, body).await?;
                self.record("User", uid, &m.remote_id, m.origin, body).await?;
                Ok(m.remote_id)
            }
            None => self.create_user(uid, body).await,
        }
    }

    /// Makes the target's user `remote_id`, now `current`, into `body`, and records it as
    /// Mapwright's (`origin`).
    pub async fn take_over_user(&self, uid: &str, remote_id: &str, origin: Origin, current: &Value, body: &Value) -> Result<(), Failure> {
        self.update_user(remote_id, current, body).await?;
        self.record("User", uid, remote_id, origin, body).await
    }

    /// A directory group as this target takes it (shaped by the target's rules).
    pub async fn group_body(&self, name: &str) -> Result<Value, Failure> {
        let body = json!({"schemas": [GROUP_SCHEMA], "displayName": name});
        Ok(self.shaper.shape(Kind::Group, body).await.map_err(|e| e.failure())?.resource)
    }

    /// Records a group of the target as the directory group's (it exists already), made to
    /// match `body`.
    pub async fn take_over_group(&self, uid: &str, remote_id: &str, current: &Value, body: &Value) -> Result<(), Failure> {
        self.update_group(remote_id, current, body).await?;
        self.record("Group", uid, remote_id, Origin::Adopted, body).await
    }

    /// Makes a group Mapwright manages in the target, now `current`, match `body` (edited by
    /// hand, or the shape rules changed): one PATCH of what differs, never of its members.
    pub async fn update_mapped_group(&self, uid: &str, remote_id: &str, current: &Value, body: &Value) -> Result<(), Failure> {
        let origin = self.store.mapped(self.target.id, "Group", uid).await.map_err(store_failure)?.map_or(Origin::Created, |m| m.origin);
        self.update_group(remote_id, current, body).await?;
        self.record("Group", uid, remote_id, origin, body).await
    }

    async fn update_group(&self, remote_id: &str, sent: &Value, body: &Value) -> Result<(), Failure> {
        let ops: Vec<Value> = patch_ops(sent, body).into_iter().filter(|op| op["path"] != "members" && op["path"] != "id" && op["path"] != "meta").collect();
        if ops.is_empty() {
            return Ok(());
        }
        self.client.send(Method::PATCH, self.url(&format!("Groups/{remote_id}"))?, Some(&patch(ops)), &[]).await.map(|_| ())
    }

    /// Creates the user anew (the target lost it, or never had it).
    pub async fn create_user_anew(&self, uid: &str, body: &Value) -> Result<String, Failure> {
        self.create_user(uid, body).await
    }

    /// Creates the group anew, even if a copy was recorded (the target lost it).
    pub async fn create_group_anew(&self, uid: &str, name: &str) -> Result<String, Failure> {
        self.store.unmap(self.target.id, "Group", uid).await.map_err(store_failure)?;
        self.ensure_group(uid, name).await
    }

    /// Every resource of an endpoint, read a page at a time.
    pub async fn list_all(&self, endpoint: &str) -> Result<Vec<Value>, Failure> {
        const COUNT: usize = 100;
        let mut out = Vec::new();
        loop {
            let mut url = self.url(endpoint)?;
            url.query_pairs_mut().append_pair("startIndex", &(out.len() + 1).to_string()).append_pair("count", &COUNT.to_string());
            let a = self.client.send(Method::GET, url, None, &[]).await?;
            let page = a.body["Resources"].as_array().cloned().unwrap_or_default();
            let total = a.body["totalResults"].as_u64().map(|t| t as usize);
            let got = page.len();
            out.extend(page);
            // Stop when the target says so, or on a short (or empty) page.
            if got == 0 || total.is_some_and(|t| out.len() >= t) || (total.is_none() && got < COUNT) {
                return Ok(out);
            }
        }
    }

    /// Adds and removes members of a target group, in one PATCH.
    pub async fn patch_members(&self, group_remote: &str, add: &[String], remove: &[String]) -> Result<(), Failure> {
        let mut ops = Vec::new();
        if !add.is_empty() {
            ops.push(json!({"op": "add", "path": "members", "value": add.iter().map(|id| json!({"value": id})).collect::<Vec<_>>()}));
        }
        for id in remove {
            ops.push(json!({"op": "remove", "path": format!("members[value eq \"{}\"]", filter_value(id))}));
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.client.send(Method::PATCH, self.url(&format!("Groups/{group_remote}"))?, Some(&patch(ops)), &[]).await.map(|_| ())
    }

    async fn update_user(&self, remote_id: &str, sent: &Value, body: &Value) -> Result<(), Failure> {
        let url = self.url(&format!("Users/{remote_id}"))?;
        let ops = patch_ops(sent, body);
        if ops.is_empty() {
            return Ok(());
        }
        match self.quirks.update {
            UpdateMode::Patch => self.client.send(Method::PATCH, url, Some(&patch(ops)), &[]).await.map(|_| ()),
            UpdateMode::Put => self.client.send(Method::PUT, url, Some(body), &[]).await.map(|_| ()),
        }
    }

    async fn record(&self, resource: &'static str, uid: &str, remote_id: &str, origin: Origin, sent: &Value) -> Result<(), Failure> {
        let m = Mapped { resource, uid: uid.to_string(), remote_id: remote_id.to_string(), origin, sent: sent.clone() };
        self.store.map(self.target.id, m).await.map_err(store_failure)
    }

    async fn create_user(&self, uid: &str, body: &Value) -> Result<String, Failure> {
        let user_name = body["userName"].as_str().unwrap_or_default();
        match self.client.send(Method::POST, self.url("Users")?, Some(body), &[]).await {
            Ok(a) => {
                let id = a.body["id"].as_str().ok_or_else(|| refused(format!("the created user has no id (answer {})", a.status)))?.to_string();
                self.record("User", uid, &id, Origin::Created, body).await?;
                Ok(id)
            }
            Err(Failure::Refused { answer }) if answer.starts_with("HTTP 409") => {
                // The target has the user already: take it over, recorded, and make it match.
                let (id, existing) = self.find("Users", "userName", user_name).await?.ok_or_else(|| refused(format!("{answer}, and no user {user_name:?} is found to adopt")))?;
                tracing::info!(target = %self.target.name, user = user_name, remote = %id, "adopted the target's existing user");
                let current = self.quirks.comparable(&existing, body);
                self.update_user(&id, &current, body).await?;
                self.record("User", uid, &id, Origin::Adopted, body).await?;
                Ok(id)
            }
            Err(e) => Err(e),
        }
    }

    /// The target's resource whose `attr` equals `value`, if any: (id, resource).
    async fn find(&self, endpoint: &str, attr: &str, value: &str) -> Result<Option<(String, Value)>, Failure> {
        let mut url = self.url(endpoint)?;
        url.query_pairs_mut().append_pair("filter", &format!("{attr} eq \"{}\"", filter_value(value)));
        let a = self.client.send(Method::GET, url, None, &[]).await?;
        let found = a.body["Resources"].as_array().and_then(|r| r.first()).cloned();
        Ok(found.and_then(|r| r["id"].as_str().map(|id| (id.to_string(), r.clone()))))
    }

    /// A user the directory no longer has: deactivated or deleted in the target, per its
    /// policy, if Mapwright created or adopted it there.
    pub async fn remove_user(&self, uid: &str) -> Result<(), Failure> {
        let Some(m) = self.store.mapped(self.target.id, "User", uid).await.map_err(store_failure)? else { return Ok(()) };
        match self.quirks.delete {
            DeletePolicy::Delete => {
                match self.client.send(Method::DELETE, self.url(&format!("Users/{}", m.remote_id))?, None, &[]).await {
                    Ok(_) => {}
                    Err(Failure::Refused { answer }) if answer.starts_with("HTTP 404") => {}
                    Err(e) => return Err(e),
                }
                self.store.unmap(self.target.id, "User", uid).await.map_err(store_failure)
            }
            DeletePolicy::Deactivate => {
                let mut body = m.sent.clone();
                if body.get("active") == Some(&Value::Bool(false)) {
                    return Ok(());
                }
                body["active"] = Value::Bool(false);
                self.update_user(&m.remote_id, &m.sent, &body).await?;
                self.record("User", uid, &m.remote_id, m.origin, &body).await
            }
        }
    }

    /// The target's group for a directory group, created (or adopted by displayName) if there
    /// is none. Returns the target's id.
    pub async fn ensure_group(&self, uid: &str, name: &str) -> Result<String, Failure> {
        if let Some(m) = self.store.mapped(self.target.id, "Group", uid).await.map_err(store_failure)? {
            return Ok(m.remote_id);
        }
        let body = self.group_body(name).await?;
        let shown = body["displayName"].as_str().unwrap_or(name).to_string();
        let (id, origin) = match self.client.send(Method::POST, self.url("Groups")?, Some(&body), &[]).await {
            Ok(a) => (a.body["id"].as_str().ok_or_else(|| refused(format!("the created group has no id (answer {})", a.status)))?.to_string(), Origin::Created),
            Err(Failure::Refused { answer }) if answer.starts_with("HTTP 409") => {
                let (id, existing) = self.find("Groups", "displayName", &shown).await?.ok_or_else(|| refused(format!("{answer}, and no group {shown:?} is found to adopt")))?;
                tracing::info!(target = %self.target.name, group = %shown, remote = %id, "adopted the target's existing group");
                self.update_group(&id, &self.quirks.comparable(&existing, &body), &body).await?;
                (id, Origin::Adopted)
            }
            Err(e) => return Err(e),
        };
        self.record("Group", uid, &id, origin, &body).await?;
        Ok(id)
    }

    /// Adds a user to a group, or removes it, as one PATCH of the group's members. A user the
    /// target does not have yet is provisioned first from the directory as it is now.
    async fn membership(&self, user_uid: &str, group_uid: &str, group_name: &str, add: bool) -> Result<(), Failure> {
        let user = match self.store.mapped(self.target.id, "User", user_uid).await.map_err(store_failure)? {
            Some(m) => m.remote_id,
            None if !add => return Ok(()),
            None => match self.provision(user_uid).await? {
                Some(id) => id,
                // Gone from the directory since: nothing to add.
                None => return Ok(()),
            },
        };
        let group = match self.store.mapped(self.target.id, "Group", group_uid).await.map_err(store_failure)? {
            Some(m) => m.remote_id,
            None if !add => return Ok(()),
            None => self.ensure_group(group_uid, group_name).await?,
        };
        let op = if add {
            json!({"op": "add", "path": "members", "value": [{"value": user}]})
        } else {
            json!({"op": "remove", "path": format!("members[value eq \"{}\"]", filter_value(&user))})
        };
        match self.client.send(Method::PATCH, self.url(&format!("Groups/{group}"))?, Some(&patch(vec![op])), &[]).await {
            Ok(_) => Ok(()),
            // Removing a member the group no longer has is done.
            Err(Failure::Refused { answer }) if !add && (answer.starts_with("HTTP 404") || answer.contains("noTarget")) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_ops_remove_what_is_no_longer_sent_down_to_sub_attributes() {
        let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let sent = json!({"schemas": ["x"], "userName": "jdoe", "title": "Eng", "name": {"givenName": "G", "familyName": "F"}, ext: {"department": "R&D", "costCenter": "7"}});
        let now = json!({"schemas": ["y"], "userName": "jdoe", "userType": "Employee", "name": {"familyName": "F"}, ext: {"department": "Sales"}});
        let ops = patch_ops(&sent, &now);
        assert_eq!(
            ops,
            [
                json!({"op": "replace", "path": "userType", "value": "Employee"}),
                json!({"op": "remove", "path": "name.givenName"}),
                json!({"op": "remove", "path": format!("{ext}:costCenter")}),
                json!({"op": "replace", "path": ext, "value": {"department": "Sales"}}),
                json!({"op": "remove", "path": "title"}),
            ]
        );
        assert!(patch_ops(&now, &now).is_empty());
    }
}
