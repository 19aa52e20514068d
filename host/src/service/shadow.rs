//! Shadow evaluation on live traffic: with a shadow version on the connection, each user or
//! group write's input is mapped by it too, in a spawned task after the active mapping (the
//! request never waits), and where its decision differs a `shadow_diffs` row is recorded.
//! Nothing the shadow decides is written anywhere else.

use serde_json::{Value, json};

use super::{Call, Service};
use crate::mapping::{GroupInput, MapContext, Operation};
use crate::model::{EntryWrite, ShadowDiff, Timestamp};
use crate::scim::resource::object_diff;
use crate::store::Store;

/// Shadows a user mapping whose active result is `active`.
pub(super) fn user<S: Store>(svc: &Service<S>, call: &Call<'_>, op: Operation, active_version: Option<i64>, body: &Value, current: Option<&Value>, active: &EntryWrite) {
    let Some(shadow) = svc.pipelines.shadow_for(call.idp) else { return };
    let Some(shadow_version) = shadow.version() else { return };
    let (store, idp, body, current, active) = (svc.store.clone(), call.idp.clone(), body.clone(), current.cloned(), active.clone());
    let request_id = call.request_id.to_string();
    tokio::spawn(async move {
        let ctx = MapContext { idp: &idp, operation: op, current: current.as_ref() };
        let diff = match shadow.map_user(ctx, &body).await {
            Ok((e, _)) => entry_write_diff(&active, &e),
            Err(err) => json!({"outcome": ["mapped", err.to_string()]}),
        };
        let resource = body.get("userName").and_then(Value::as_str).unwrap_or_default().to_string();
        let d = ShadowDiff { active_version, shadow_version, resource_type: "User".into(), resource, operation: op.as_str().into(), request_id, diff, at: Timestamp::default() };
        record(&*store, idp.id, d).await;
    });
}

/// Shadows a group mapping whose active result is `active`.
pub(super) fn group<S: Store>(svc: &Service<S>, call: &Call<'_>, op: Operation, active_version: Option<i64>, id: &str, body: &Value, active: &[String]) {
    let Some(shadow) = svc.pipelines.shadow_for(call.idp) else { return };
    let Some(shadow_version) = shadow.version() else { return };
    let (store, idp, id, body, active) = (svc.store.clone(), call.idp.clone(), id.to_string(), body.clone(), active.to_vec());
    let request_id = call.request_id.to_string();
    tokio::spawn(async move {
        let ctx = MapContext { idp: &idp, operation: op, current: None };
        let diff = match shadow.map_group(ctx, GroupInput { id: &id, body: &body }).await {
            Ok((targets, _)) if targets == active => json!({}),
            Ok((targets, _)) => json!({"targets": [active, targets]}),
            Err(err) => json!({"outcome": ["mapped", err.to_string()]}),
        };
        let resource = body.get("displayName").and_then(Value::as_str).unwrap_or_default().to_string();
        let d = ShadowDiff { active_version, shadow_version, resource_type: "Group".into(), resource, operation: op.as_str().into(), request_id, diff, at: Timestamp::default() };
        record(&*store, idp.id, d).await;
    });
}

/// Stores a difference (an empty one means the versions agreed: nothing to record).
async fn record<S: Store>(store: &S, idp_id: i64, d: ShadowDiff) {
    if d.diff.as_object().is_some_and(|o| o.is_empty()) {
        return;
    }
    if let Err(e) = store.add_shadow_diff(idp_id, d).await {
        tracing::warn!(error = %e, "recording a shadow difference failed");
    }
}

/// `{field: [active, shadow]}` for each field where two mappings of one user differ.
fn entry_write_diff(a: &EntryWrite, b: &EntryWrite) -> Value {
    let mut out = serde_json::Map::new();
    let mut field = |name: &str, x: Value, y: Value| {
        if x != y {
            out.insert(name.to_string(), json!([x, y]));
        }
    };
    field("userName", a.user_name.clone().into(), b.user_name.clone().into());
    field("active", a.active.into(), b.active.into());
    field("grant", json!(a.grant), json!(b.grant));
    field("revoke", json!(a.revoke), json!(b.revoke));
    let attrs = object_diff(&a.attributes, &b.attributes);
    if !attrs.is_empty() {
        out.insert("attributes".into(), Value::Object(attrs));
    }
    Value::Object(out)
}
