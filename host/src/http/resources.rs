//! `/Users`, `/Groups` and `/.search` handlers: thin adapters from HTTP to the service.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::auth::Scope;
use super::body::ScimBody;
use super::response::{list_response, render_group, render_user, resource, scim_json};
use crate::http::response::Reply;
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::list::{ListParams, ListQuery, Projection};
use crate::scim::schema::ResourceKind;
use crate::service::{Call, Precondition};

type Pairs = Query<Vec<(String, String)>>;

fn params(q: &Pairs) -> ListParams {
    ListParams::from_pairs(q.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn projection(kind: ResourceKind, q: &Pairs) -> ScimResult<Projection> {
    let p = params(q);
    Projection::parse(kind, p.attributes.as_deref(), p.excluded_attributes.as_deref())
}

fn id_of(p: &HashMap<String, String>) -> ScimResult<&str> {
    p.get("id").map(String::as_str).ok_or_else(|| ScimError::not_found("no resource id"))
}

/// Names the chain version that decided a write (`X-Mapwright-Rules: 3`), so a client or an
/// operator can tell which rules a response reflects.
fn with_rules(mut resp: Response, call: &Call<'_>) -> Response {
    if let Some(v) = call.rules_version()
        && let Ok(h) = v.to_string().parse()
    {
        resp.headers_mut().insert("x-mapwright-rules", h);
    }
    resp
}

fn precondition(h: &HeaderMap) -> Precondition {
    Precondition::new(h.get(header::IF_MATCH).and_then(|v| v.to_str().ok()))
}

/// One page of `kind`, rendered and projected: (totalResults, resources).
async fn page(state: &AppState, scope: &Scope, kind: ResourceKind, q: &ListQuery) -> ScimResult<(usize, Vec<Value>)> {
    Ok(match kind {
        ResourceKind::User => {
            let page = state.service.list_users(&scope.idp, q).await?;
            (page.total, page.items.iter().map(|u| q.projection.apply(render_user(u, &scope.base))).collect())
        }
        ResourceKind::Group => {
            let page = state.service.list_groups(&scope.idp, q).await?;
            (page.total, page.items.iter().map(|g| q.projection.apply(render_group(g, &scope.base))).collect())
        }
    })
}

async fn list_page(state: &AppState, scope: &Scope, kind: ResourceKind, p: &ListParams) -> ScimResult<Response> {
    let q = p.resolve(kind)?;
    let (total, resources) = page(state, scope, kind, &q).await?;
    Ok(scim_json(StatusCode::OK, &list_response(total, q.start_index, resources)))
}

pub async fn list(kind: ResourceKind, State(state): State<Arc<AppState>>, scope: Scope, q: Pairs) -> Reply {
    Ok(list_page(&state, &scope, kind, &params(&q)).await?)
}

pub async fn search(kind: ResourceKind, State(state): State<Arc<AppState>>, scope: Scope, ScimBody(body): ScimBody) -> Reply {
    Ok(list_page(&state, &scope, kind, &ListParams::from_search_body(&body)?).await?)
}

/// Root-level `POST /.search`: Users then Groups, paged as one list. A filter that names
/// attributes of one resource type only searches that type.
pub async fn search_all(State(state): State<Arc<AppState>>, scope: Scope, ScimBody(body): ScimBody) -> Reply {
    let p = ListParams::from_search_body(&body)?;
    let mut queries = Vec::new();
    let mut first_err = None;
    for kind in [ResourceKind::User, ResourceKind::Group] {
        match p.resolve(kind) {
            Ok(q) => queries.push((kind, q)),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    if queries.is_empty() {
        return Err(first_err.unwrap_or_else(|| ScimError::invalid_filter("the filter applies to no resource type")).into());
    }
    let (start, count) = queries.first().map(|(_, q)| (q.start_index, q.count)).unwrap_or((1, 0));
    let (mut total, mut skip, mut left, mut out) = (0usize, start - 1, count, Vec::new());
    for (kind, mut q) in queries {
        // Page through the concatenation: skip what earlier types covered.
        q.start_index = skip + 1;
        q.count = left;
        let (n, items) = page(&state, &scope, kind, &q).await?;
        total += n;
        skip = skip.saturating_sub(n);
        left -= items.len().min(left);
        out.extend(items);
    }
    Ok(scim_json(StatusCode::OK, &list_response(total, start, out)))
}

pub async fn create(kind: ResourceKind, State(state): State<Arc<AppState>>, scope: Scope, q: Pairs, ScimBody(body): ScimBody) -> Reply {
    let proj = projection(kind, &q)?;
    let call = scope.call();
    let (out, meta) = match kind {
        ResourceKind::User => {
            let u = state.service.create_user(&call, &body).await?;
            tracing::info!(resource = "User", id = %u.meta.id, "created");
            (render_user(&u, &scope.base), u.meta)
        }
        ResourceKind::Group => {
            let g = state.service.create_group(&call, &body).await?;
            tracing::info!(resource = "Group", id = %g.meta.id, "created");
            let g = state.service.get_group(&scope.idp, &g.meta.id, &proj).await?;
            (render_group(&g, &scope.base), g.meta)
        }
    };
    Ok(with_rules(resource(StatusCode::CREATED, kind, proj.apply(out), &meta, &scope.base), &call))
}

pub async fn get_one(kind: ResourceKind, State(state): State<Arc<AppState>>, scope: Scope, Path(p): Path<HashMap<String, String>>, q: Pairs) -> Reply {
    let id = id_of(&p)?;
    let proj = projection(kind, &q)?;
    let (out, meta) = match kind {
        ResourceKind::User => {
            let u = state.service.get_user(&scope.idp, id, &proj).await?;
            (render_user(&u, &scope.base), u.meta)
        }
        ResourceKind::Group => {
            let g = state.service.get_group(&scope.idp, id, &proj).await?;
            (render_group(&g, &scope.base), g.meta)
        }
    };
    Ok(resource(StatusCode::OK, kind, proj.apply(out), &meta, &scope.base))
}

pub async fn replace(kind: ResourceKind, State(state): State<Arc<AppState>>, scope: Scope, Path(p): Path<HashMap<String, String>>, q: Pairs, headers: HeaderMap, ScimBody(body): ScimBody) -> Reply {
    let id = id_of(&p)?;
    let proj = projection(kind, &q)?;
    let pre = precondition(&headers);
    let call = scope.call();
    let (out, meta) = match kind {
        ResourceKind::User => {
            let u = state.service.replace_user(&call, id, &body, &pre).await?;
            (render_user(&u, &scope.base), u.meta)
        }
        ResourceKind::Group => {
            state.service.replace_group(&call, id, &body, &pre).await?;
            let g = state.service.get_group(&scope.idp, id, &proj).await?;
            (render_group(&g, &scope.base), g.meta)
        }
    };
    tracing::info!(resource = kind.name(), id, "replaced");
    Ok(with_rules(resource(StatusCode::OK, kind, proj.apply(out), &meta, &scope.base), &call))
}

pub async fn patch(kind: ResourceKind, State(state): State<Arc<AppState>>, scope: Scope, Path(p): Path<HashMap<String, String>>, q: Pairs, headers: HeaderMap, ScimBody(body): ScimBody) -> Reply {
    let id = id_of(&p)?;
    let pre = precondition(&headers);
    let call = scope.call();
    let resp = match kind {
        ResourceKind::User => {
            let proj = projection(kind, &q)?;
            let u = state.service.patch_user(&call, id, &body, &pre).await?;
            resource(StatusCode::OK, kind, proj.apply(render_user(&u, &scope.base)), &u.meta, &scope.base)
        }
        ResourceKind::Group => {
            let g = state.service.patch_group(&call, id, &body, &pre).await?;
            // A group PATCH answers 204 (RFC 7644 §3.5.2) unless the client asked for
            // attributes: returning a large group's members on every change would cost
            // O(group) per membership change.
            let p = params(&q);
            if p.attributes.is_none() && p.excluded_attributes.is_none() {
                let mut r = StatusCode::NO_CONTENT.into_response();
                if let Ok(v) = g.meta.etag().parse() {
                    r.headers_mut().insert(header::ETAG, v);
                }
                r
            } else {
                let proj = projection(kind, &q)?;
                let g = state.service.get_group(&scope.idp, id, &proj).await?;
                resource(StatusCode::OK, kind, proj.apply(render_group(&g, &scope.base)), &g.meta, &scope.base)
            }
        }
    };
    tracing::info!(resource = kind.name(), id, "patched");
    Ok(with_rules(resp, &call))
}

pub async fn delete(kind: ResourceKind, State(state): State<Arc<AppState>>, scope: Scope, Path(p): Path<HashMap<String, String>>, headers: HeaderMap) -> Reply {
    let id = id_of(&p)?;
    let pre = precondition(&headers);
    let call = scope.call();
    match kind {
        ResourceKind::User => state.service.delete_user(&call, id, &pre).await?,
        ResourceKind::Group => state.service.delete_group(&call, id, &pre).await?,
    }
    tracing::info!(resource = kind.name(), id, "deleted");
    Ok(with_rules(StatusCode::NO_CONTENT.into_response(), &call))
}
