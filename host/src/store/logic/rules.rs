//! Plugins, chain versions and activations.

use crate::model::{Activation, ChainDefinition, ChainVersion, Hook, PluginRecord, ShadowDiff, Timestamp, VersionNote, VersionSource};
use crate::store::sql::{Row, Sql};
use crate::store::{StoreError, StoreResult};

/// Stores a plugin's bytes under their hash. The bytes for a hash never change, so storing
/// them again is a no-op, except that it repairs a copy damaged in the database.
pub fn put_plugin(t: &dyn Sql, tenant_id: i64, rec: &PluginRecord, bytes: &[u8]) -> StoreResult<PluginRecord> {
    let hooks = rec.hooks.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(",");
    t.execute(
        "INSERT INTO plugins (hash, name, version, contract, hooks, size, bytes, uploaded) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (hash) DO UPDATE SET bytes = excluded.bytes WHERE plugins.bytes IS DISTINCT FROM excluded.bytes",
        &[&rec.hash, &rec.name, &rec.version, &rec.contract, &hooks, &(rec.size as i64), &bytes, &Timestamp::now()],
    )?;
    t.execute("INSERT INTO tenant_plugins (tenant_id, hash, added) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING", &[&tenant_id, &rec.hash, &Timestamp::now()])?;
    plugin_row(&t.query_one(&format!("SELECT {PLUGIN_COLUMNS} FROM plugins WHERE hash = ?1"), &[&rec.hash])?)
}

const PLUGIN_COLUMNS: &str = "hash, name, version, contract, hooks, size, uploaded";

fn plugin_row(r: &Row) -> StoreResult<PluginRecord> {
    let hooks: String = r.get(4)?;
    Ok(PluginRecord {
        hash: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        contract: r.get(3)?,
        // A hook this server does not know (stored by a newer one) is left out.
        hooks: hooks.split(',').filter_map(Hook::parse).collect(),
        size: r.get(5)?,
        uploaded: r.get(6)?,
    })
}

pub fn plugin_bytes(c: &dyn Sql, hash: &str) -> StoreResult<Vec<u8>> {
    c.query_one("SELECT bytes FROM plugins WHERE hash = ?1", &[&hash])?.get(0)
}

pub fn list_plugins(c: &dyn Sql, tenant_id: i64) -> StoreResult<Vec<PluginRecord>> {
    c.query(
        "SELECT p.hash, p.name, p.version, p.contract, p.hooks, p.size, p.uploaded FROM plugins p
         JOIN tenant_plugins tp ON tp.hash = p.hash WHERE tp.tenant_id = ?1 ORDER BY tp.added DESC, p.name",
        &[&tenant_id],
    )?
    .iter()
    .map(plugin_row)
    .collect()
}

const VERSION_COLUMNS: &str = "v.idp_id, v.number, v.definition, v.author, v.note, v.source, v.created, (i.active_chain IS NOT DISTINCT FROM v.number)";

fn version_row(r: &Row) -> StoreResult<ChainVersion> {
    let definition = r.json(2)?;
    let source: String = r.get(5)?;
    Ok(ChainVersion {
        idp_id: r.get(0)?,
        number: r.get(1)?,
        definition,
        author: r.get(3)?,
        note: r.get(4)?,
        source: VersionSource::parse(&source),
        created: r.get(6)?,
        active: r.get(7)?,
    })
}

fn get_version(c: &dyn Sql, idp_id: i64, number: i64) -> StoreResult<ChainVersion> {
    version_row(&c.query_one(&format!("SELECT {VERSION_COLUMNS} FROM chain_versions v JOIN idps i ON i.id = v.idp_id WHERE v.idp_id = ?1 AND v.number = ?2"), &[&idp_id, &number])?)
}

fn activate(t: &dyn Sql, idp_id: i64, number: i64, author: &str) -> StoreResult<()> {
    t.execute("UPDATE idps SET active_chain = ?2 WHERE id = ?1", &[&idp_id, &number])?;
    t.execute("INSERT INTO chain_activations (idp_id, number, at, author) VALUES (?1, ?2, ?3, ?4)", &[&idp_id, &number, &Timestamp::now(), &author])?;
    t.execute("UPDATE counters SET value = value + 1 WHERE name = 'rules_epoch'", &[])?;
    Ok(())
}

pub fn add_version(t: &dyn Sql, idp_id: i64, def: &ChainDefinition, note: &VersionNote, activate_now: bool) -> StoreResult<ChainVersion> {
    if t.query_opt("SELECT id FROM idps WHERE id = ?1", &[&idp_id])?.is_none() {
        return Err(StoreError::InvalidReference(format!("no IdP connection with id {idp_id}")));
    }
    for e in &def.entries {
        if t.query_opt("SELECT hash FROM plugins WHERE hash = ?1", &[&e.plugin])?.is_none() {
            return Err(StoreError::InvalidReference(format!("no stored plugin with hash {} ({})", e.plugin, e.name)));
        }
    }
    let number: i64 = t.query_one("SELECT COALESCE(MAX(number), 0) + 1 FROM chain_versions WHERE idp_id = ?1", &[&idp_id])?.get(0)?;
    let text = serde_json::to_string(def).map_err(|e| StoreError::Backend(Box::new(e)))?;
    t.execute(
        "INSERT INTO chain_versions (idp_id, number, definition, author, note, source, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &[&idp_id, &number, &text, &note.author, &note.note, &note.source.as_str(), &Timestamp::now()],
    )?;
    for e in &def.entries {
        t.execute("INSERT INTO chain_version_plugins (idp_id, number, hash) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING", &[&idp_id, &number, &e.plugin])?;
    }
    if activate_now {
        activate(t, idp_id, number, &note.author)?;
    }
    get_version(t, idp_id, number)
}

pub fn activate_version(t: &dyn Sql, idp_id: i64, number: i64, author: &str) -> StoreResult<ChainVersion> {
    get_version(t, idp_id, number).map_err(|e| match e {
        StoreError::NotFound => StoreError::InvalidReference(format!("the connection has no chain version {number}")),
        other => other,
    })?;
    activate(t, idp_id, number, author)?;
    get_version(t, idp_id, number)
}

pub fn versions(c: &dyn Sql, idp_id: i64) -> StoreResult<Vec<ChainVersion>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM chain_versions v JOIN idps i ON i.id = v.idp_id WHERE v.idp_id = ?1 ORDER BY v.number DESC");
    c.query(&sql, &[&idp_id])?.iter().map(version_row).collect()
}

pub fn activations(c: &dyn Sql, idp_id: i64) -> StoreResult<Vec<Activation>> {
    c.query("SELECT number, at, author FROM chain_activations WHERE idp_id = ?1 ORDER BY id DESC", &[&idp_id])?
        .iter()
        .map(|r| Ok(Activation { number: r.get(0)?, at: r.get(1)?, author: r.get(2)? }))
        .collect()
}

pub fn active(c: &dyn Sql) -> StoreResult<Vec<ChainVersion>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM idps i JOIN chain_versions v ON v.idp_id = i.id AND v.number = i.active_chain ORDER BY i.id");
    c.query(&sql, &[])?.iter().map(version_row).collect()
}

pub fn set_shadow(t: &dyn Sql, idp_id: i64, number: Option<i64>) -> StoreResult<()> {
    if let Some(n) = number {
        get_version(t, idp_id, n).map_err(|e| match e {
            StoreError::NotFound => StoreError::InvalidReference(format!("the connection has no chain version {n}")),
            other => other,
        })?;
    }
    t.execute("UPDATE idps SET shadow_chain = ?2 WHERE id = ?1", &[&idp_id, &number])?;
    t.execute("UPDATE counters SET value = value + 1 WHERE name = 'rules_epoch'", &[])?;
    Ok(())
}

pub fn shadows(c: &dyn Sql) -> StoreResult<Vec<ChainVersion>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM idps i JOIN chain_versions v ON v.idp_id = i.id AND v.number = i.shadow_chain ORDER BY i.id");
    c.query(&sql, &[])?.iter().map(version_row).collect()
}

pub fn add_shadow_diff(t: &dyn Sql, idp_id: i64, d: &ShadowDiff) -> StoreResult<()> {
    t.execute(
        "INSERT INTO shadow_diffs (idp_id, active_version, shadow_version, resource_type, resource_id, operation, request_id, diff, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[&idp_id, &d.active_version, &d.shadow_version, &d.resource_type, &d.resource, &d.operation, &d.request_id, &d.diff.to_string(), &Timestamp::now()],
    )?;
    Ok(())
}

pub fn shadow_diffs(c: &dyn Sql, idp_id: i64, version: i64, limit: usize) -> StoreResult<Vec<ShadowDiff>> {
    let rows = c.query(
        "SELECT active_version, shadow_version, resource_type, resource_id, operation, request_id, diff, at FROM shadow_diffs
         WHERE idp_id = ?1 AND shadow_version = ?2 ORDER BY id DESC LIMIT ?3",
        &[&idp_id, &version, &(limit as i64)],
    )?;
    rows.iter().map(|r| {
        let diff: String = r.get(6)?;
        Ok(ShadowDiff {
            active_version: r.get(0)?,
            shadow_version: r.get(1)?,
            resource_type: r.get(2)?,
            resource: r.get(3)?,
            operation: r.get(4)?,
            request_id: r.get(5)?,
            diff: serde_json::from_str(&diff).unwrap_or(serde_json::Value::String(diff)),
            at: r.get(7)?,
        })
    })
    .collect()
}

pub fn epoch(c: &dyn Sql) -> StoreResult<i64> {
    c.query_one("SELECT value FROM counters WHERE name = 'rules_epoch'", &[])?.get(0)
}
