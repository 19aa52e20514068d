//! Sync on sign-in (just in time): an application that signs users in with SAML or OpenID
//! Connect posts the claims it verified, for a connection of kind `signin`. The claims become
//! a SCIM user (the connection's [`ClaimMapping`]), which goes through the connection's chain
//! like any IdP's: created, or updated when the same subject signs in again; the group claims
//! become the connection's IdP groups and the user's memberships of them, through the groups
//! hook. A sign-in never deprovisions: the absence of one means nothing.

use serde_json::{Map, Value, json};

use super::{Call, Precondition, Service};
use crate::model::{ClaimMapping, DirUser, IdpConnection, IdpKind, StoredUser};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::list::ListParams;
use crate::scim::resource::canonicalize;
use crate::scim::schema::{GROUP_SCHEMA, ResourceKind, USER_SCHEMA};
use crate::store::Store;

/// Group claims one sign-in may carry.
pub const MAX_GROUPS: usize = 1000;

/// What a sign-in did.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The user was new to the connection.
    pub created: bool,
    /// The directory user as the application should use it.
    pub user: DirUser,
}

/// One claim's value as text: a string, the first string of a multi-valued claim (SAML
/// attributes), or a number.
fn text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    let v = claims.get(name)?;
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().find_map(|x| x.as_str().map(str::to_string))?,
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The SCIM user the claims describe, and the group names they carry (`None`: the claims
/// have no groups claim, so memberships are left as they are).
pub fn user_from_claims(m: &ClaimMapping, claims: &Value) -> Result<(Value, Option<Vec<String>>), String> {
    let c = claims.as_object().ok_or("the claims must be a JSON object of claim names and values")?;
    let user_name = m.user_name.iter().find_map(|n| text(c, n)).ok_or_else(|| format!("the claims have none of {} to take the userName from", m.user_name.join(", ")))?;
    let mut user = json!({"schemas": [USER_SCHEMA], "userName": user_name, "active": true});
    if let Some(sub) = text(c, &m.external_id) {
        user["externalId"] = sub.into();
    }
    if let Some(email) = text(c, &m.email) {
        user["emails"] = json!([{"value": email, "type": "work", "primary": true}]);
    }
    let mut name = Map::new();
    if let Some(g) = text(c, &m.given_name) {
        name.insert("givenName".into(), g.into());
    }
    if let Some(f) = text(c, &m.family_name) {
        name.insert("familyName".into(), f.into());
    }
    if !name.is_empty() {
        user["name"] = Value::Object(name);
    }
    if let Some(d) = text(c, &m.display_name) {
        user["displayName"] = d.into();
    }
    let groups = match (m.groups.is_empty(), c.get(&m.groups)) {
        (true, _) | (false, None) => None,
        (false, Some(Value::String(s))) => Some(vec![s.clone()]),
        (false, Some(Value::Array(a))) => {
            let mut names = Vec::with_capacity(a.len());
            for g in a {
                let g = g.as_str().ok_or_else(|| format!("the '{}' claim must list group names (strings)", m.groups))?.trim();
                if !g.is_empty() && !names.iter().any(|n: &String| n.eq_ignore_ascii_case(g)) {
                    names.push(g.to_string());
                }
            }
            Some(names)
        }
        (false, Some(_)) => return Err(format!("the '{}' claim must list group names (strings)", m.groups)),
    };
    if groups.as_ref().is_some_and(|g| g.len() > MAX_GROUPS) {
        return Err(format!("a sign-in may carry at most {MAX_GROUPS} groups"));
    }
    Ok((user, groups))
}

fn filter_eq(attr: &str, value: &str) -> String {
    format!("{attr} eq \"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

impl<S: Store> Service<S> {
    /// Signs a user in through a `signin` connection: creates or updates the user from the
    /// claims, brings its memberships of the connection's groups in line with the group
    /// claims, and returns the directory user. Bad claims are refused before anything is
    /// written.
    pub async fn sign_in(&self, idp: &IdpConnection, request_id: &str, claims: &Value) -> ScimResult<SignedIn> {
        if idp.kind != IdpKind::Signin {
            return Err(ScimError::new(403, None, format!("{}/{} is not a sign-in connection", idp.tenant, idp.name)));
        }
        let (body, groups) = user_from_claims(&idp.settings.claims, claims).map_err(ScimError::invalid_value)?;
        // Checked as a create would check it, before anything is written.
        let canonical = canonicalize(ResourceKind::User, &body)?;
        let call = Call::new(idp, request_id);
        let (user, created) = match self.find_signed_in(idp, &canonical).await? {
            Some(u) if *u.body == canonical => (u, false),
            Some(u) => (self.replace_user(&call, &u.meta.id, &body, &Precondition::default()).await?, false),
            None => (self.create_user(&call, &body).await?, true),
        };
        if let Some(groups) = groups {
            self.sync_signin_groups(&call, &user.meta.id, &groups).await?;
        }
        let uid = self.store.entry_uid_of_user(idp, &user.meta.id).await.map_err(|e| super::store_error(ResourceKind::User, &user.meta.id, e))?;
        let dir = match uid {
            Some(uid) => self.store.directory_user(idp.tenant_id, &uid).await.map_err(|e| super::store_error(ResourceKind::User, &uid, e))?,
            None => None,
        };
        let user = dir.ok_or_else(|| ScimError::internal("the signed-in user has no directory entry"))?;
        tracing::info!(tenant = %idp.tenant, idp = %idp.name, user = %user.user_name, created, "sign-in synced");
        Ok(SignedIn { created, user })
    }

    /// The connection's user a sign-in is about: by subject (`externalId`), else by userName.
    async fn find_signed_in(&self, idp: &IdpConnection, user: &Value) -> ScimResult<Option<StoredUser>> {
        let mut filters = Vec::new();
        if let Some(sub) = user["externalId"].as_str() {
            filters.push(filter_eq("externalId", sub));
        }
        if let Some(name) = user["userName"].as_str() {
            filters.push(filter_eq("userName", name));
        }
        for f in filters {
            let q = ListParams { filter: Some(f), count: Some("1".into()), ..Default::default() }.resolve(ResourceKind::User)?;
            if let Some(u) = self.list_users(idp, &q).await?.items.into_iter().next() {
                return Ok(Some(u));
            }
        }
        Ok(None)
    }

    /// Makes the user a member of exactly the connection's groups the claims name (created
    /// when new), each change a group write through the connection's rules.
    async fn sync_signin_groups(&self, call: &Call<'_>, user_id: &str, claimed: &[String]) -> ScimResult<()> {
        let idp = call.idp;
        let have: Vec<(String, String)> = self
            .store
            .get_user(idp, user_id, true)
            .await
            .map_err(|e| super::store_error(ResourceKind::User, user_id, e))?
            .groups
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.value, m.display.unwrap_or_default()))
            .collect();
        let member = json!([{"value": user_id}]);
        for name in claimed {
            if have.iter().any(|(_, n)| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            let q = ListParams { filter: Some(filter_eq("displayName", name)), count: Some("1".into()), ..Default::default() }.resolve(ResourceKind::Group)?;
            match self.list_groups(idp, &q).await?.items.into_iter().next() {
                Some(g) => {
                    let ops = json!({"Operations": [{"op": "add", "path": "members", "value": member}]});
                    self.patch_group(call, &g.meta.id, &ops, &Precondition::default()).await?;
                }
                None => {
                    self.create_group(call, &json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": member})).await?;
                }
            }
        }
        for (group_id, name) in have.iter().filter(|(_, n)| !claimed.iter().any(|c| c.eq_ignore_ascii_case(n))) {
            let ops = json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{user_id}\"]")}]});
            tracing::debug!(group = %name, "sign-in no longer claims the group");
            self.patch_group(call, group_id, &ops, &Precondition::default()).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn oidc_claims_become_a_scim_user_and_group_names() {
        let claims = json!({"sub": "00u1", "preferred_username": "jdoe@acme.com", "email": "jane@acme.com", "given_name": "Jane", "family_name": "Doe", "name": "Jane Doe", "groups": ["Dev users", "eng-platform", "dev USERS", " "]});
        let (u, g) = user_from_claims(&ClaimMapping::default(), &claims).unwrap();
        assert_eq!(u, json!({"schemas": [USER_SCHEMA], "userName": "jdoe@acme.com", "active": true, "externalId": "00u1",
            "emails": [{"value": "jane@acme.com", "type": "work", "primary": true}], "name": {"givenName": "Jane", "familyName": "Doe"}, "displayName": "Jane Doe"}));
        assert_eq!(g, Some(vec!["Dev users".to_string(), "eng-platform".to_string()]));
    }

    #[test]
    fn saml_attributes_by_uri_multi_valued_take_the_first() {
        let m = ClaimMapping {
            user_name: vec!["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn".into()],
            external_id: "http://schemas.microsoft.com/identity/claims/objectidentifier".into(),
            groups: String::new(),
            ..ClaimMapping::default()
        };
        let claims = json!({"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": ["ann@acme.com", "other"], "http://schemas.microsoft.com/identity/claims/objectidentifier": "oid-1", "groups": ["ignored"]});
        let (u, g) = user_from_claims(&m, &claims).unwrap();
        assert_eq!((u["userName"].as_str(), u["externalId"].as_str(), g), (Some("ann@acme.com"), Some("oid-1"), None));
        // The userName falls back through the list; no groups claim leaves memberships alone.
        let (u, g) = user_from_claims(&ClaimMapping::default(), &json!({"email": "b@acme.com"})).unwrap();
        assert_eq!((u["userName"].as_str(), g), (Some("b@acme.com"), None));
    }

    #[test]
    fn missing_or_malformed_claims_are_refused_with_a_reason() {
        let m = ClaimMapping::default();
        assert_eq!(user_from_claims(&m, &json!({"sub": "x"})).unwrap_err(), "the claims have none of preferred_username, email to take the userName from");
        assert!(user_from_claims(&m, &json!(["not", "an", "object"])).unwrap_err().contains("JSON object"));
        assert!(user_from_claims(&m, &json!({"email": "a@b.c", "groups": [1, 2]})).unwrap_err().contains("group names"));
        assert!(user_from_claims(&m, &json!({"email": "a@b.c", "groups": {"a": 1}})).unwrap_err().contains("group names"));
        let many: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
        assert!(user_from_claims(&m, &json!({"email": "a@b.c", "groups": many})).unwrap_err().contains("at most"));
        assert!(user_from_claims(&m, &json!({"preferred_username": "   ", "email": ""})).is_err(), "blank claims are absent");
    }
}
