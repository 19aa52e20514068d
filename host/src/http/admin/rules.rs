//! Plugins, chain versions, preview, shadow and re-apply.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, ApiError, ApiResult, Params, param};
use crate::http::AppState;
use crate::mapping::MappingPipeline;
use crate::model::{ChainDefinition, Limits, MatchPolicy, VersionNote, VersionSource};
use crate::plugins::chain::{EntrySpec, PluginSource};
use crate::service::reapply::PassOptions;
use crate::service::rules::RuleManager;

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> ApiResult<T> {
    b.map(|Json(v)| v).map_err(|e| ApiError::bad_request(e.body_text()))
}

fn rules(state: &AppState) -> ApiResult<&Arc<RuleManager<crate::http::AppStore>>> {
    state.rules.as_ref().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this server runs without the rules service"))
}

pub async fn list_plugins(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let t = admin.tenant(&state, param(&p, "tenant")?).await?;
    Ok(Json(json!(rules(&state)?.records().plugins(t.id).await?)))
}

/// The first-party plugins compiled into the server, as chain entries name them.
pub async fn builtins(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    admin.tenant(&state, param(&p, "tenant")?).await?;
    Ok(Json(json!(crate::plugins::builtin::names().map(|n| format!("builtin:{n}")).collect::<Vec<_>>())))
}

/// Stores a component (the request body, `application/wasm`) after checking it is a plugin.
pub async fn add_plugin(State(state): State<Arc<AppState>>, admin: Admin, p: Params, bytes: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let t = admin.tenant(&state, param(&p, "tenant")?).await?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("send the component's bytes as the request body"));
    }
    let rec = rules(&state)?.add_plugin(t.id, bytes.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(json!(rec))))
}

pub async fn chain(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let (versions, activations) = rules(&state)?.records().history(&idp).await?;
    let active = versions.iter().find(|v| v.active).cloned();
    let mut changes = crate::model::history_changes(&versions);
    let versions: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            let c = changes.remove(&v.number).unwrap_or_default();
            let mut j = json!(v);
            j["changes"] = json!(c);
            j["summary"] = json!(c.iter().map(ToString::to_string).collect::<Vec<_>>());
            j
        })
        .collect();
    Ok(Json(json!({"active": active, "versions": versions, "activations": activations})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryBody {
    /// `builtin:<name>` or `sha256:<hash>` of a stored plugin (no file paths over the API).
    plugin: String,
    #[serde(default)]
    config: Value,
    limits: Option<Limits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainBody {
    entries: Vec<EntryBody>,
    #[serde(default)]
    matching: MatchPolicy,
    #[serde(default)]
    note: String,
    /// Store without activating.
    #[serde(default)]
    candidate: bool,
}

/// Chain entries given over the API, as the plugin runtime takes them: stored or builtin
/// plugins only (a path would name a file of the server's).
pub(super) fn entry_specs(entries: Vec<EntryBody>) -> ApiResult<Vec<EntrySpec>> {
    let mut specs = Vec::with_capacity(entries.len());
    for e in entries {
        let plugin = PluginSource::parse(&e.plugin, std::path::Path::new(""));
        if matches!(plugin, PluginSource::File(_)) {
            return Err(ApiError::bad_request(format!("plugin '{}': use builtin:<name> or sha256:<hash> of a stored plugin (upload it first)", e.plugin)));
        }
        specs.push(EntrySpec { plugin, config: e.config, limits: e.limits.unwrap_or_default() });
    }
    Ok(specs)
}

async fn definition(state: &AppState, tenant_id: i64, entries: Vec<EntryBody>, matching: MatchPolicy) -> ApiResult<ChainDefinition> {
    Ok(rules(state)?.define(tenant_id, &entry_specs(entries)?, matching).await?)
}

/// A new chain version: refused (422, with the reason) if any entry fails to load; else
/// active at once, or stored as a candidate.
pub async fn set_chain(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<ChainBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let b = body(b)?;
    let def = definition(&state, idp.tenant_id, b.entries, b.matching).await?;
    let note = VersionNote { author: admin.actor(), note: b.note, source: VersionSource::Admin };
    let rules = rules(&state)?;
    let v = if b.candidate { rules.add_candidate(&idp, def, note).await? } else { rules.set_chain(&idp, def, note).await? };
    Ok((StatusCode::CREATED, Json(json!(v))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Number {
    number: i64,
}

/// Activates a stored version (rollback or roll forward).
pub async fn activate(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<Number>) -> ApiResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let n = body(b)?.number;
    Ok(Json(json!(rules(&state)?.activate(&idp, n, &admin.actor()).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// A stored version…
    number: Option<i64>,
    /// …or a chain given inline.
    entries: Option<Vec<EntryBody>>,
    #[serde(default)]
    matching: MatchPolicy,
}

#[derive(Deserialize)]
pub struct Page {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// What a candidate chain would change (summary first, then a page of the changes). Writes
/// nothing.
pub async fn preview(State(state): State<Arc<AppState>>, admin: Admin, p: Params, page: Query<Page>, b: JsonBody<PreviewBody>) -> ApiResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let b = body(b)?;
    let rules = rules(&state)?;
    let candidate = match (b.number, b.entries) {
        (Some(n), None) => rules.candidate(&idp, n).await?,
        (None, Some(entries)) => rules.build(&definition(&state, idp.tenant_id, entries, b.matching).await?).await?,
        _ => return Err(ApiError::bad_request("give either a version `number` or the chain's `entries`")),
    };
    let report = state.service.preview(&idp, &candidate, &PassOptions::default()).await?;
    let limit = page.limit.unwrap_or(100).min(1000);
    let items: Vec<_> = report.items.iter().skip(page.offset).take(limit).collect();
    Ok(Json(json!({"summary": report.summary, "total": report.items.len(), "offset": page.offset, "items": items})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowBody {
    /// The version to run in shadow; `null` stops shadowing.
    number: Option<i64>,
}

pub async fn set_shadow(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<ShadowBody>) -> ApiResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let n = body(b)?.number;
    let rules = rules(&state)?;
    rules.set_shadow(&idp, n).await?;
    // This server runs it now; others pick it up from the store.
    rules.sync().await?;
    Ok(Json(json!({"shadow": n})))
}

#[derive(Deserialize)]
pub struct ShadowQuery {
    number: Option<i64>,
    limit: Option<usize>,
}

pub async fn shadow_report(State(state): State<Arc<AppState>>, admin: Admin, p: Params, q: Query<ShadowQuery>) -> ApiResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let (number, diffs) = rules(&state)?.records().shadow_report(&idp, q.number, q.limit.unwrap_or(100).min(10_000)).await?;
    Ok(Json(json!({"shadow_version": number, "differences": diffs})))
}

pub async fn reapply_status(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let job = state.service.reapply_status(&idp).await?.ok_or_else(|| ApiError::not_found("no re-apply has run"))?;
    Ok(Json(json!(job)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReapplyBody {
    #[serde(default)]
    resume: bool,
    batch: Option<usize>,
    pause_ms: Option<u64>,
}

/// Starts (or resumes) a re-apply in the background; poll `GET …/reapply` for progress.
pub async fn start_reapply(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: Option<Json<ReapplyBody>>) -> ApiResult<(StatusCode, Json<Value>)> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let b = b.map(|Json(b)| b).unwrap_or_default();
    let job = state.service.start_or_resume_reapply(&idp, &admin.actor(), b.resume).await?;
    let opts = PassOptions { batch: b.batch.unwrap_or(crate::service::reapply::DEFAULT_BATCH).max(1), pause: std::time::Duration::from_millis(b.pause_ms.unwrap_or(0)), actor: admin.actor(), guarded: true };
    let (st, j) = (state.clone(), job.clone());
    tokio::spawn(async move {
        match st.service.run_reapply(&idp, j, &opts, &mut |_, _| {}).await {
            Ok(r) => tracing::info!(tenant = %idp.tenant, idp = %idp.name, changed = r.summary.changed, "re-apply finished"),
            Err(e) => tracing::warn!(tenant = %idp.tenant, idp = %idp.name, error = %e.detail, "re-apply stopped"),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!(job))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TryBody {
    /// An IdP user payload (SCIM User JSON), as the IdP would send it…
    user: Option<Value>,
    /// …or this many of the connection's users (at most 50), after storage key `after`.
    sample: Option<usize>,
    #[serde(default)]
    after: i64,
    /// A stored version to try instead of the active rules…
    number: Option<i64>,
    /// …or a chain given inline (an unsaved draft: loaded and validated, stored nowhere).
    entries: Option<Vec<EntryBody>>,
    #[serde(default)]
    matching: MatchPolicy,
}

/// The largest sample one try maps.
const MAX_SAMPLE: usize = 50;

/// Runs the connection's rules (the active ones, a stored version, or a draft) on a pasted
/// SCIM user or on a sample of the connection's users, writing nothing: the mapped userName,
/// active, attributes and granted groups, and every plugin's decision.
pub async fn try_chain(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<TryBody>) -> ApiResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let b = body(b)?;
    let candidate = match (b.number, b.entries) {
        (Some(n), None) => Some(rules(&state)?.candidate(&idp, n).await?),
        (None, Some(entries)) => Some(rules(&state)?.build(&definition(&state, idp.tenant_id, entries, b.matching).await?).await?),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give a version `number` or the chain's `entries`, not both")),
    };
    let pipeline = candidate.as_ref().map(|c| c as &dyn MappingPipeline);
    let user = match (b.user, b.sample) {
        (Some(u), None) => u,
        (None, Some(n)) => {
            if n == 0 || n > MAX_SAMPLE {
                return Err(ApiError::bad_request(format!("`sample` is 1 to {MAX_SAMPLE} users")));
            }
            let (users, next) = state.service.try_users(&idp, pipeline, b.after, n).await?;
            return Ok(Json(json!({"users": users, "next_after": next})));
        }
        _ => return Err(ApiError::bad_request("give a SCIM `user`, or a `sample` size")),
    };
    if !user.is_object() {
        return Err(ApiError::bad_request("`user` must be a SCIM User object"));
    }
    match state.service.dry_run_user(&idp, pipeline, &user).await {
        Ok((entry, decisions)) => Ok(Json(json!({
            "ok": true,
            "userName": entry.user_name,
            "active": entry.active,
            "attributes": entry.attributes,
            "groups": entry.grant,
            "decisions": decisions,
        }))),
        // A rule's refusal is an answer here, not an error of this endpoint.
        Err(e) if e.status == 400 || e.status == 500 => Ok(Json(json!({"ok": false, "status": e.status, "error": e.detail}))),
        Err(e) => Err(e.into()),
    }
}
