//! Tenants, IdP connections and their tokens.

use crate::model::{AdminTokenRecord, ConnectionSettings, IdpConnection, IdpKind, NewIdp, RateLimit, Tenant, Timestamp, TokenRecord, TokenRole};
use crate::store::sql::{Row, Sql};
use crate::store::{StoreError, StoreResult};

pub fn create_tenant(t: &dyn Sql, name: &str) -> StoreResult<Tenant> {
    let created = Timestamp::now();
    let row = t.query_one("INSERT INTO tenants (name, created) VALUES (?1, ?2) RETURNING id", &[&name, &created]).map_err(|e| match e {
        StoreError::Conflict(_) => StoreError::Conflict(format!("tenant '{name}' already exists")),
        other => other,
    })?;
    Ok(Tenant { id: row.get(0)?, name: name.to_string(), created })
}

pub fn list_tenants(c: &dyn Sql) -> StoreResult<Vec<Tenant>> {
    c.query("SELECT id, name, created FROM tenants ORDER BY name", &[])?
        .iter()
        .map(|r| Ok(Tenant { id: r.get(0)?, name: r.get(1)?, created: r.get(2)? }))
        .collect()
}

const IDP_COLUMNS: &str = "i.id, i.tenant_id, t.name, i.name, i.kind, i.rate_per_sec, i.burst, i.disabled, i.created, i.settings";
/// How many columns [`IDP_COLUMNS`] selects: a query selecting more reads them after.
const IDP_COLUMN_COUNT: usize = 10;

fn idp_row(r: &Row) -> StoreResult<IdpConnection> {
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
        settings: r.json(9)?,
    })
}

pub fn create_idp(t: &dyn Sql, tenant: &str, idp: &NewIdp) -> StoreResult<IdpConnection> {
    let tenant_id: i64 = t
        .query_opt("SELECT id FROM tenants WHERE name = ?1", &[&tenant])?
        .ok_or_else(|| StoreError::InvalidReference(format!("no tenant named '{tenant}'")))?
        .get(0)?;
    let id: i64 = t
        .query_one(
            "INSERT INTO idps (tenant_id, name, kind, rate_per_sec, burst, created, settings) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            &[&tenant_id, &idp.name, &idp.kind.as_str(), &idp.rate.per_second, &idp.rate.burst, &Timestamp::now(), &settings_text(&idp.settings)?],
        )
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!("tenant '{tenant}' already has an IdP connection named '{}'", idp.name)),
            other => other,
        })?
        .get(0)?;
    idp_row(&t.query_one(&format!("SELECT {IDP_COLUMNS} FROM idps i JOIN tenants t ON t.id = i.tenant_id WHERE i.id = ?1"), &[&id])?)
}

pub fn update_idp(t: &dyn Sql, idp_id: i64, kind: IdpKind, rate: RateLimit) -> StoreResult<()> {
    let n = t.execute("UPDATE idps SET kind = ?2, rate_per_sec = ?3, burst = ?4 WHERE id = ?1", &[&idp_id, &kind.as_str(), &rate.per_second, &rate.burst])?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

fn settings_text(s: &ConnectionSettings) -> StoreResult<String> {
    serde_json::to_string(s).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// Replaces a connection's policies.
pub fn set_idp_settings(t: &dyn Sql, idp_id: i64, settings: &ConnectionSettings) -> StoreResult<()> {
    if t.execute("UPDATE idps SET settings = ?2 WHERE id = ?1", &[&idp_id, &settings_text(settings)?])? == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn list_idps(c: &dyn Sql, tenant: Option<&str>) -> StoreResult<Vec<IdpConnection>> {
    let sql = format!("SELECT {IDP_COLUMNS} FROM idps i JOIN tenants t ON t.id = i.tenant_id WHERE CAST(?1 AS TEXT) IS NULL OR t.name = ?1 ORDER BY t.name, i.name");
    c.query(&sql, &[&tenant])?.iter().map(idp_row).collect()
}

pub fn find_idp(c: &dyn Sql, tenant: &str, idp: &str) -> StoreResult<Option<IdpConnection>> {
    let sql = format!("SELECT {IDP_COLUMNS} FROM idps i JOIN tenants t ON t.id = i.tenant_id WHERE t.name = ?1 AND i.name = ?2");
    c.query_opt(&sql, &[&tenant, &idp])?.as_ref().map(idp_row).transpose()
}

pub fn add_token(t: &dyn Sql, idp_id: i64, token_id: &str, hash: &[u8], expire_others_at: Option<&Timestamp>) -> StoreResult<()> {
    if let Some(at) = expire_others_at {
        t.execute("UPDATE idp_tokens SET expires = ?2 WHERE idp_id = ?1 AND (expires IS NULL OR expires > ?2)", &[&idp_id, at])?;
    }
    // Expired tokens are of no use to anyone: drop them.
    t.execute("DELETE FROM idp_tokens WHERE idp_id = ?1 AND expires IS NOT NULL AND expires <= ?2", &[&idp_id, &Timestamp::now()])?;
    t.execute("INSERT INTO idp_tokens (token_id, idp_id, secret_hash, created) VALUES (?1, ?2, ?3, ?4)", &[&token_id, &idp_id, &hash, &Timestamp::now()])?;
    Ok(())
}

pub fn find_token(c: &dyn Sql, token_id: &str) -> StoreResult<Option<TokenRecord>> {
    let sql = format!(
        "SELECT {IDP_COLUMNS}, k.secret_hash, k.expires FROM idp_tokens k
         JOIN idps i ON i.id = k.idp_id JOIN tenants t ON t.id = i.tenant_id WHERE k.token_id = ?1"
    );
    c.query_opt(&sql, &[&token_id])?
        .map(|r| Ok(TokenRecord { idp: idp_row(&r)?, secret_hash: r.get(IDP_COLUMN_COUNT)?, expires: r.get(IDP_COLUMN_COUNT + 1)? }))
        .transpose()
}

pub fn add_admin_token(t: &dyn Sql, token_id: &str, hash: &[u8], tenant_id: Option<i64>, name: &str, role: TokenRole) -> StoreResult<()> {
    t.execute(
        "INSERT INTO admin_tokens (token_id, tenant_id, name, secret_hash, created, role) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[&token_id, &tenant_id, &name, &hash, &Timestamp::now(), &role.as_str()],
    )?;
    Ok(())
}

pub fn find_admin_token(c: &dyn Sql, token_id: &str) -> StoreResult<Option<AdminTokenRecord>> {
    let sql = "SELECT a.name, a.secret_hash, t.id, t.name, t.created, a.role FROM admin_tokens a LEFT JOIN tenants t ON t.id = a.tenant_id WHERE a.token_id = ?1";
    c.query_opt(sql, &[&token_id])?
        .map(|r| {
            let tenant = match r.get::<Option<i64>>(2)? {
                Some(id) => Some(Tenant { id, name: r.get(3)?, created: r.get(4)? }),
                None => None,
            };
            // An unknown role grants nothing beyond reading.
            let role = match r.get::<String>(5)?.as_str() {
                "admin" => TokenRole::Admin,
                "signin" => TokenRole::Signin,
                _ => TokenRole::Directory,
            };
            Ok(AdminTokenRecord { name: r.get(0)?, secret_hash: r.get(1)?, tenant, role })
        })
        .transpose()
}

pub fn count_admin_tokens(c: &dyn Sql) -> StoreResult<i64> {
    c.query_one("SELECT count(*) FROM admin_tokens", &[])?.get(0)
}

pub fn set_idp_disabled(t: &dyn Sql, idp_id: i64, disabled: bool) -> StoreResult<()> {
    if t.execute("UPDATE idps SET disabled = ?2 WHERE id = ?1", &[&idp_id, &disabled])? == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
