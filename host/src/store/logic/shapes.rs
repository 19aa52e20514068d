//! Shape versions of delivery targets: stored immutable, one active per target, every
//! activation recorded.

use super::delivery::{bump_epoch, text};
use crate::model::{ChainEntryDef, ShapeActivation, ShapeVersion, Timestamp, VersionNote};
use crate::store::sql::{Row, Sql};
use crate::store::{StoreError, StoreResult};

fn row(r: &Row) -> StoreResult<ShapeVersion> {
    Ok(ShapeVersion {
        target_id: r.get(0)?,
        number: r.get(1)?,
        entries: r.json(2)?,
        author: r.get(3)?,
        note: r.get(4)?,
        created: r.get(5)?,
        active: r.get(6)?,
    })
}

const COLUMNS: &str = "s.target_id, s.number, s.entries, s.author, s.note, s.created, CASE WHEN d.shape_version = s.number THEN 1 ELSE 0 END";

/// A target's versions, newest first.
pub fn versions(c: &dyn Sql, target_id: i64) -> StoreResult<Vec<ShapeVersion>> {
    let sql = format!("SELECT {COLUMNS} FROM delivery_shapes s JOIN delivery_targets d ON d.id = s.target_id WHERE s.target_id = ?1 ORDER BY s.number DESC");
    c.query(&sql, &[&target_id])?.iter().map(row).collect()
}

fn version(c: &dyn Sql, target_id: i64, number: i64) -> StoreResult<Option<ShapeVersion>> {
    let sql = format!("SELECT {COLUMNS} FROM delivery_shapes s JOIN delivery_targets d ON d.id = s.target_id WHERE s.target_id = ?1 AND s.number = ?2");
    c.query_opt(&sql, &[&target_id, &number])?.as_ref().map(row).transpose()
}

/// Stores the next version of a target, active or not.
pub fn add(t: &dyn Sql, target_id: i64, entries: &[ChainEntryDef], note: &VersionNote, activate: bool) -> StoreResult<ShapeVersion> {
    let exists: bool = t.query_one("SELECT EXISTS (SELECT 1 FROM delivery_targets WHERE id = ?1)", &[&target_id])?.get(0)?;
    if !exists {
        return Err(StoreError::NotFound);
    }
    let number: i64 = t.query_one("SELECT COALESCE(MAX(number), 0) + 1 FROM delivery_shapes WHERE target_id = ?1", &[&target_id])?.get(0)?;
    t.execute(
        "INSERT INTO delivery_shapes (target_id, number, entries, author, note, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[&target_id, &number, &text(&entries)?, &note.author, &note.note, &Timestamp::now()],
    )?;
    if activate {
        activate_version(t, target_id, Some(number), &note.author)?;
    }
    version(t, target_id, number)?.ok_or(StoreError::NotFound)
}

/// Makes `number` the version a target runs (`None`: none). A SCIM target is reconciled
/// next, so what it has is reshaped; its worker reloads (the epoch moves).
pub fn activate_version(t: &dyn Sql, target_id: i64, number: Option<i64>, author: &str) -> StoreResult<()> {
    if let Some(n) = number
        && version(t, target_id, n)?.is_none()
    {
        return Err(StoreError::InvalidReference(format!("the target has no shape version {n}")));
    }
    let n = t.execute(
        "UPDATE delivery_targets SET shape_version = ?2, needs_sync = CASE WHEN kind = 'scim' THEN 1 ELSE needs_sync END WHERE id = ?1",
        &[&target_id, &number],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    t.execute("INSERT INTO delivery_shape_activations (target_id, number, at, author) VALUES (?1, ?2, ?3, ?4)", &[&target_id, &number, &Timestamp::now(), &author])?;
    bump_epoch(t)
}

/// A target's activations, newest first.
pub fn activations(c: &dyn Sql, target_id: i64) -> StoreResult<Vec<ShapeActivation>> {
    c.query("SELECT number, at, author FROM delivery_shape_activations WHERE target_id = ?1 ORDER BY id DESC", &[&target_id])?
        .iter()
        .map(|r| Ok(ShapeActivation { number: r.get(0)?, at: r.get(1)?, author: r.get(2)? }))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::model::{Limits, NewTarget, TargetKind, TargetSettings, VersionSource};
    use rusqlite::Connection;

    fn db() -> (Connection, i64) {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::sqlite::migrations::migrate(&mut c).unwrap();
        c.execute("INSERT INTO tenants (name, created) VALUES ('acme', '2026-01-01T00:00:00Z')", []).unwrap();
        let tenant: i64 = c.query_row("SELECT id FROM tenants WHERE name = 'acme'", [], |r| r.get(0)).unwrap();
        let t = c.transaction().unwrap();
        let new = NewTarget { name: "app".into(), kind: TargetKind::Scim, url: "http://127.0.0.1:1/scim".into(), settings: TargetSettings::default(), credential: vec![] };
        let target = super::super::delivery::add(&t, tenant, &new).unwrap();
        super::super::delivery::update(&t, target.id, &crate::model::TargetChange { needs_sync: Some(false), ..Default::default() }).unwrap();
        t.commit().unwrap();
        (c, target.id)
    }

    fn note() -> VersionNote {
        VersionNote { author: "ana".into(), note: "no enterprise".into(), source: VersionSource::Admin }
    }

    #[test]
    fn versions_are_numbered_and_activation_moves_the_pointer_and_asks_for_a_reconciliation() {
        let (mut c, id) = db();
        let entry = ChainEntryDef { plugin: "ab".repeat(32), name: "shape".into(), config: serde_json::json!({"users": {}}), limits: Limits::default() };
        let t = c.transaction().unwrap();
        let v1 = add(&t, id, std::slice::from_ref(&entry), &note(), true).unwrap();
        let v2 = add(&t, id, &[entry], &note(), false).unwrap();
        t.commit().unwrap();
        assert_eq!((v1.number, v1.active, v2.number, v2.active), (1, true, 2, false));
        let target = super::super::delivery::get(&c, id).unwrap().unwrap();
        assert_eq!(target.shape_version, Some(1));
        assert!(target.needs_sync, "a reshaped SCIM target is reconciled");
        let t = c.transaction().unwrap();
        activate_version(&t, id, None, "bo").unwrap();
        assert!(matches!(activate_version(&t, id, Some(9), "bo"), Err(StoreError::InvalidReference(_))));
        t.commit().unwrap();
        assert_eq!(super::super::delivery::get(&c, id).unwrap().unwrap().shape_version, None);
        let a = activations(&c, id).unwrap();
        assert_eq!(a.iter().map(|a| a.number).collect::<Vec<_>>(), [None, Some(1)]);
        assert_eq!(versions(&c, id).unwrap().iter().map(|v| (v.number, v.active)).collect::<Vec<_>>(), [(2, false), (1, false)]);
    }
}
