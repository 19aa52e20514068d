//! Tenants, IdP connections and their tokens.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::model::{AdminTokenRecord, ConnectionSettings, IdpConnection, IdpKind, NewIdp, RateLimit, Tenant, Timestamp, TokenRecord, TokenRole};
use crate::store::{StoreError, StoreResult};

pub fn create_tenant(t: &Transaction<'_>, name: &str) -> StoreResult<Tenant> {
    let created = Timestamp::now();
    t.execute("INSERT INTO tenants (name, created) VALUES (?1, ?2)", params![name, created]).map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("tenant '{name}' already exists")),
        other => other,
    })?;
    Ok(Tenant { id: t.last_insert_rowid(), name: name.to_string(), created })
}

pub fn list_tenants(c: &Connection) -> StoreResult<Vec<Tenant>> {
    let mut st = c.prepare_cached("SELECT id, name, created FROM tenants ORDER BY name")?;
    let rows = st.query_map([], |r| Ok(Tenant { id: r.get(0)?, name: r.get(1)?, created: r.get(2)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const IDP_COLUMNS: &str = "i.id, i.tenant_id, t.name, i.name, i.kind, i.rate_per_sec, i.burst, i.disabled, i.created, i.settings";
/// How many columns [`IDP_COLUMNS`] selects: a query selecting more reads them after.
const IDP_COLUMN_COUNT: usize = 10;

fn idp_row(r: &Row<'_>) -> rusqlite::Result<IdpConnection> {
    let kind: String = r.get(4)?;
    Ok(IdpConnection {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        tenant: r.get(2)?,
        name: r.get(3)?,
        kind: IdpKind::parse(&kind).unwrap_or(IdpKind::Generic),
        rate: RateLimit { per_second: r.get(5)?, burst: r.get(6)? },
        disabled: r.get(7)?,
        created: r.get(8)?,
        settings: super::db::json_column(9, &r.get::<_, String>(9)?)?,
    })
}

pub fn create_idp(t: &Transaction<'_>, tenant: &str, idp: &NewIdp) -> StoreResult<IdpConnection> {
    let tenant_id: i64 = t
        .query_row("SELECT id FROM tenants WHERE name = ?1", [tenant], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::InvalidReference(format!("no tenant named '{tenant}'")))?;
    t.execute(
        "INSERT INTO idps (tenant_id, name, kind, rate_per_sec, burst, created, settings) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![tenant_id, idp.name, idp.kind.as_str(), idp.rate.per_second, idp.rate.burst, Timestamp::now(), settings_text(&idp.settings)?],
    )
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("tenant '{tenant}' already has an IdP connection named '{}'", idp.name)),
        other => other,
    })?;
    let id = t.last_insert_rowid();
    Ok(t.query_row(&format!("SELECT {IDP_COLUMNS} FROM idps i JOIN tenants t ON t.id = i.tenant_id WHERE i.id = ?1"), [id], idp_row)?)
}

pub fn update_idp(t: &Transaction<'_>, idp_id: i64, kind: IdpKind, rate: RateLimit) -> StoreResult<()> {
    let n = t.execute(
        "UPDATE idps SET kind = ?2, rate_per_sec = ?3, burst = ?4 WHERE id = ?1",
        params![idp_id, kind.as_str(), rate.per_second, rate.burst],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

fn settings_text(s: &ConnectionSettings) -> StoreResult<String> {
    serde_json::to_string(s).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// Replaces a connection's policies.
pub fn set_idp_settings(t: &Transaction<'_>, idp_id: i64, settings: &ConnectionSettings) -> StoreResult<()> {
    if t.execute("UPDATE idps SET settings = ?2 WHERE id = ?1", params![idp_id, settings_text(settings)?])? == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn list_idps(c: &Connection, tenant: Option<&str>) -> StoreResult<Vec<IdpConnection>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {IDP_COLUMNS} FROM idps i JOIN tenants t ON t.id = i.tenant_id WHERE ?1 IS NULL OR t.name = ?1 ORDER BY t.name, i.name"
    ))?;
    let rows = st.query_map([tenant], idp_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn find_idp(c: &Connection, tenant: &str, idp: &str) -> StoreResult<Option<IdpConnection>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {IDP_COLUMNS} FROM idps i JOIN tenants t ON t.id = i.tenant_id WHERE t.name = ?1 AND i.name = ?2"
    ))?;
    Ok(st.query_row([tenant, idp], idp_row).optional()?)
}

pub fn add_token(t: &Transaction<'_>, idp_id: i64, token_id: &str, hash: &[u8], expire_others_at: Option<&Timestamp>) -> StoreResult<()> {
    if let Some(at) = expire_others_at {
        t.execute(
            "UPDATE idp_tokens SET expires = ?2 WHERE idp_id = ?1 AND (expires IS NULL OR expires > ?2)",
            params![idp_id, at],
        )?;
    }
    // Expired tokens are of no use to anyone: drop them.
    t.execute("DELETE FROM idp_tokens WHERE idp_id = ?1 AND expires IS NOT NULL AND expires <= ?2", params![idp_id, Timestamp::now()])?;
    t.execute(
        "INSERT INTO idp_tokens (token_id, idp_id, secret_hash, created) VALUES (?1, ?2, ?3, ?4)",
        params![token_id, idp_id, hash, Timestamp::now()],
    )?;
    Ok(())
}

pub fn find_token(c: &Connection, token_id: &str) -> StoreResult<Option<TokenRecord>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {IDP_COLUMNS}, k.secret_hash, k.expires FROM idp_tokens k
         JOIN idps i ON i.id = k.idp_id JOIN tenants t ON t.id = i.tenant_id WHERE k.token_id = ?1"
    ))?;
    Ok(st
        .query_row([token_id], |r| Ok(TokenRecord { idp: idp_row(r)?, secret_hash: r.get(IDP_COLUMN_COUNT)?, expires: r.get(IDP_COLUMN_COUNT + 1)? }))
        .optional()?)
}

pub fn add_admin_token(t: &Transaction<'_>, token_id: &str, hash: &[u8], tenant_id: Option<i64>, name: &str, role: TokenRole) -> StoreResult<()> {
    t.execute(
        "INSERT INTO admin_tokens (token_id, tenant_id, name, secret_hash, created, role) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![token_id, tenant_id, name, hash, Timestamp::now(), role.as_str()],
    )?;
    Ok(())
}

pub fn find_admin_token(c: &Connection, token_id: &str) -> StoreResult<Option<AdminTokenRecord>> {
    let mut st = c.prepare_cached(
        "SELECT a.name, a.secret_hash, t.id, t.name, t.created, a.role FROM admin_tokens a LEFT JOIN tenants t ON t.id = a.tenant_id WHERE a.token_id = ?1",
    )?;
    Ok(st
        .query_row([token_id], |r| {
            let tenant = match r.get::<_, Option<i64>>(2)? {
                Some(id) => Some(Tenant { id, name: r.get(3)?, created: r.get(4)? }),
                None => None,
            };
            // An unknown role grants nothing beyond reading.
            let role = match r.get::<_, String>(5)?.as_str() {
                "admin" => TokenRole::Admin,
                "signin" => TokenRole::Signin,
                _ => TokenRole::Directory,
            };
            Ok(AdminTokenRecord { name: r.get(0)?, secret_hash: r.get(1)?, tenant, role })
        })
        .optional()?)
}

pub fn count_admin_tokens(c: &Connection) -> StoreResult<i64> {
    Ok(c.query_row("SELECT count(*) FROM admin_tokens", [], |r| r.get(0))?)
}

pub fn set_idp_disabled(t: &Transaction<'_>, idp_id: i64, disabled: bool) -> StoreResult<()> {
    if t.execute("UPDATE idps SET disabled = ?2 WHERE id = ?1", params![idp_id, disabled])? == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
