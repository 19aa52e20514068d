//! Versioned schema migrations, tracked in `PRAGMA user_version`. Append only: never edit a
//! migration that has shipped.

use rusqlite::Connection;

use crate::store::{StoreError, StoreResult};

const MIGRATIONS: &[&str] = &[
    // 1: tenants, IdP connections, tokens; the IdP view; the directory.
    r#"
    CREATE TABLE tenants (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL
    );
    CREATE TABLE idps (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        rate_per_sec REAL NOT NULL,
        burst INTEGER NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE idp_tokens (
        token_id TEXT PRIMARY KEY,
        idp_id INTEGER NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
        secret_hash BLOB NOT NULL,
        created TEXT NOT NULL,
        expires TEXT
    );
    CREATE INDEX idp_tokens_idp ON idp_tokens(idp_id);

    -- The directory: what the application consumes, after the mapping pipeline.
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        user_name TEXT NOT NULL,
        user_name_fold TEXT NOT NULL,
        active INTEGER NOT NULL,
        attributes TEXT NOT NULL,
        created TEXT NOT NULL,
        modified TEXT NOT NULL,
        UNIQUE (tenant_id, user_name_fold)
    );
    CREATE TABLE app_groups (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        name_fold TEXT NOT NULL,
        created TEXT NOT NULL,
        UNIQUE (tenant_id, name_fold)
    );
    -- A membership holds while any owner holds it; owner 'g:<pk>' is an IdP group.
    CREATE TABLE app_memberships (
        group_id INTEGER NOT NULL REFERENCES app_groups(id) ON DELETE CASCADE,
        entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
        owner TEXT NOT NULL,
        PRIMARY KEY (group_id, entry_id, owner)
    ) WITHOUT ROWID;
    CREATE INDEX app_memberships_entry ON app_memberships(entry_id);
    CREATE INDEX app_memberships_owner ON app_memberships(owner, entry_id);

    -- The IdP view: each connection's resources as the IdP wrote them.
    CREATE TABLE users (
        pk INTEGER PRIMARY KEY,
        idp_id INTEGER NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
        id TEXT NOT NULL UNIQUE,
        entry_id INTEGER NOT NULL REFERENCES entries(id),
        user_name_fold TEXT NOT NULL,
        external_id TEXT,
        display_name_fold TEXT,
        active INTEGER NOT NULL,
        body TEXT NOT NULL,
        created TEXT NOT NULL,
        modified TEXT NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX users_user_name ON users(idp_id, user_name_fold);
    CREATE INDEX users_external ON users(idp_id, external_id);
    CREATE INDEX users_display ON users(idp_id, display_name_fold);
    CREATE INDEX users_entry ON users(entry_id);
    CREATE TABLE user_emails (
        value_fold TEXT NOT NULL,
        user_pk INTEGER NOT NULL REFERENCES users(pk) ON DELETE CASCADE,
        PRIMARY KEY (value_fold, user_pk)
    ) WITHOUT ROWID;
    CREATE INDEX user_emails_user ON user_emails(user_pk);

    CREATE TABLE groups (
        pk INTEGER PRIMARY KEY,
        idp_id INTEGER NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
        id TEXT NOT NULL UNIQUE,
        display_name_fold TEXT NOT NULL,
        external_id TEXT,
        body TEXT NOT NULL,
        created TEXT NOT NULL,
        modified TEXT NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE INDEX groups_display ON groups(idp_id, display_name_fold);
    CREATE INDEX groups_external ON groups(idp_id, external_id);
    CREATE TABLE group_members (
        group_pk INTEGER NOT NULL REFERENCES groups(pk) ON DELETE CASCADE,
        user_pk INTEGER NOT NULL REFERENCES users(pk) ON DELETE CASCADE,
        PRIMARY KEY (group_pk, user_pk)
    ) WITHOUT ROWID;
    CREATE INDEX group_members_user ON group_members(user_pk, group_pk);
    -- The app groups an IdP group maps to (the groups hook may give several).
    CREATE TABLE group_targets (
        group_pk INTEGER NOT NULL REFERENCES groups(pk) ON DELETE CASCADE,
        app_group_id INTEGER NOT NULL REFERENCES app_groups(id) ON DELETE CASCADE,
        PRIMARY KEY (group_pk, app_group_id)
    ) WITHOUT ROWID;
    "#,
    // 2: planner statistics describing the shape of a directory (many resources per IdP
    // connection; names, ids and emails nearly unique). Without them SQLite guesses on a young
    // database and may walk a whole connection where one index lookup answers. They are hints
    // about proportions, not counts, so they stay valid as the data grows; ANALYZE is not run.
    r#"
    ANALYZE sqlite_schema;
    DELETE FROM sqlite_stat1;
    INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
        ('users', NULL, '1000000'),
        ('users', 'sqlite_autoindex_users_1', '1000000 1'),
        ('users', 'users_user_name', '1000000 100000 1'),
        ('users', 'users_external', '1000000 100000 1'),
        ('users', 'users_display', '1000000 100000 2'),
        ('users', 'users_entry', '1000000 1'),
        ('user_emails', 'user_emails', '1200000 2 1'),
        ('user_emails', 'user_emails_user', '1200000 2'),
        ('groups', NULL, '100000'),
        ('groups', 'sqlite_autoindex_groups_1', '100000 1'),
        ('groups', 'groups_display', '100000 10000 1'),
        ('groups', 'groups_external', '100000 10000 1'),
        ('group_members', 'group_members', '5000000 1000 1'),
        ('group_members', 'group_members_user', '5000000 5 1'),
        ('entries', NULL, '1000000'),
        ('entries', 'sqlite_autoindex_entries_1', '1000000 100000 1'),
        ('app_memberships', 'app_memberships', '5000000 1000 1 1'),
        ('app_memberships', 'app_memberships_entry', '5000000 5'),
        ('app_memberships', 'app_memberships_owner', '5000000 1000 1');
    "#,
    // 3: deprovisioning: soft deletion with retention, and what deactivation snapshotted.
    r#"
    ALTER TABLE entries ADD COLUMN deleted_at TEXT;
    ALTER TABLE entries ADD COLUMN purge_after TEXT;
    -- JSON: {"memberships": [[app_group_id, owner], ...]} taken at deprovisioning.
    ALTER TABLE entries ADD COLUMN snapshot TEXT;
    CREATE INDEX entries_purge ON entries(purge_after) WHERE purge_after IS NOT NULL;
    "#,
    // 4: rules: plugins stored by content hash, immutable chain versions per connection, the
    // active pointer and the history of activations.
    r#"
    CREATE TABLE plugins (
        hash TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        contract TEXT NOT NULL,
        hooks TEXT NOT NULL,
        size INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        uploaded TEXT NOT NULL
    );
    CREATE TABLE tenant_plugins (
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        hash TEXT NOT NULL REFERENCES plugins(hash),
        added TEXT NOT NULL,
        PRIMARY KEY (tenant_id, hash)
    ) WITHOUT ROWID;
    CREATE TABLE chain_versions (
        idp_id INTEGER NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        definition TEXT NOT NULL,
        author TEXT NOT NULL,
        note TEXT NOT NULL,
        source TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (idp_id, number)
    ) WITHOUT ROWID;
    -- Which plugins each version uses: a stored plugin is never lost while a version needs it.
    CREATE TABLE chain_version_plugins (
        idp_id INTEGER NOT NULL,
        number INTEGER NOT NULL,
        hash TEXT NOT NULL REFERENCES plugins(hash),
        PRIMARY KEY (idp_id, number, hash),
        FOREIGN KEY (idp_id, number) REFERENCES chain_versions(idp_id, number) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE TABLE chain_activations (
        id INTEGER PRIMARY KEY,
        idp_id INTEGER NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        at TEXT NOT NULL,
        author TEXT NOT NULL
    );
    CREATE INDEX chain_activations_idp ON chain_activations(idp_id, id);
    ALTER TABLE idps ADD COLUMN active_chain INTEGER;
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO counters (name, value) VALUES ('rules_epoch', 0);
    "#,
    // 5: the audit trail: one record per change, written in the change's transaction, never
    // updated or deleted (not even with the tenant or connection it names).
    r#"
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL,
        idp_id INTEGER,
        idp_name TEXT,
        actor TEXT NOT NULL,
        request_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        resource_type TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        entry_id INTEGER,
        entry_user_name TEXT,
        chain_version INTEGER,
        decisions TEXT NOT NULL,
        changes TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX audit_tenant ON audit(tenant_id, id);
    CREATE INDEX audit_resource ON audit(tenant_id, resource_id, id);
    CREATE INDEX audit_entry ON audit(tenant_id, entry_id, id);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
    "#,
    // 6: re-apply jobs: progress committed with each batch, so a crash resumes after it.
    r#"
    CREATE TABLE reapply_jobs (
        id INTEGER PRIMARY KEY,
        idp_id INTEGER NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
        chain_version INTEGER,
        phase TEXT NOT NULL,
        cursor INTEGER NOT NULL DEFAULT 0,
        seen INTEGER NOT NULL DEFAULT 0,
        changed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL,
        author TEXT NOT NULL,
        started TEXT NOT NULL,
        updated TEXT NOT NULL,
        finished TEXT,
        error TEXT
    );
    CREATE UNIQUE INDEX reapply_running ON reapply_jobs(idp_id) WHERE finished IS NULL;
    "#,
    // 7: destructive operations held by a connection's guard for an admin's decision.
    r#"
    CREATE TABLE held_ops (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        idp_id INTEGER NOT NULL,
        idp_name TEXT NOT NULL,
        kind TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        entry_id INTEGER NOT NULL,
        user_name TEXT NOT NULL,
        action TEXT NOT NULL,
        request_id TEXT NOT NULL,
        at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'held',
        decided_by TEXT,
        decided_at TEXT
    );
    CREATE INDEX held_ops_tenant ON held_ops(tenant_id, status, id);
    CREATE INDEX held_ops_entry ON held_ops(entry_id, status);
    "#,
    // 8: shadow evaluation: a candidate version run beside the active one, and where their
    // decisions differed on live traffic.
    r#"
    ALTER TABLE idps ADD COLUMN shadow_chain INTEGER;
    CREATE TABLE shadow_diffs (
        id INTEGER PRIMARY KEY,
        idp_id INTEGER NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
        active_version INTEGER,
        shadow_version INTEGER NOT NULL,
        resource_type TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        request_id TEXT NOT NULL,
        diff TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX shadow_diffs_idp ON shadow_diffs(idp_id, shadow_version, id);
    "#,
    // 9: held membership removals: the (entry, owner) pairs an approval removes.
    r#"
    ALTER TABLE held_ops ADD COLUMN memberships TEXT;
    "#,
    // 10: admin tokens: global, or scoped to one tenant; only the hash of the secret.
    r#"
    CREATE TABLE admin_tokens (
        token_id TEXT PRIMARY KEY,
        tenant_id INTEGER REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        secret_hash BLOB NOT NULL,
        created TEXT NOT NULL
    );
    "#,
    // 11: who owns each attribute of an entry: `idp:<connection>` or `local` (set in the
    // application). Keys without an owner behave as before (any IdP write may replace them).
    r#"
    ALTER TABLE entries ADD COLUMN attr_owners TEXT NOT NULL DEFAULT '{}';
    "#,
    // 12: the directory as the application reads it. Entries and app groups get stable public
    // ids (an integer id can come back after a purge); `changes` is the change feed, filled by
    // triggers so that no write path can forget it; directory-reader tokens.
    r#"
    ALTER TABLE entries ADD COLUMN uid TEXT;
    UPDATE entries SET uid = lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-a'
        || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)));
    CREATE UNIQUE INDEX entries_uid ON entries(uid);
    ALTER TABLE app_groups ADD COLUMN uid TEXT;
    UPDATE app_groups SET uid = lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-a'
        || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)));
    CREATE UNIQUE INDEX app_groups_uid ON app_groups(uid);
    ALTER TABLE admin_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';

    -- AUTOINCREMENT: a sequence number is never handed out twice, even after the oldest (or
    -- all) rows are purged, so a cursor can never see a change it has seen before.
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id INTEGER NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        entry_uid TEXT,
        user_name TEXT,
        active INTEGER,
        attributes TEXT,
        group_uid TEXT,
        group_name TEXT
    );
    CREATE INDEX changes_tenant ON changes(tenant_id, seq);
    CREATE INDEX changes_at ON changes(at);

    -- An entry appears (created, or restored from a soft delete), changes, or disappears
    -- (soft-deleted or deleted). Soft-deleted entries are hidden: their changes are not news.
    CREATE TRIGGER entries_feed_insert AFTER INSERT ON entries BEGIN
        INSERT INTO changes (tenant_id, at, kind, entry_uid, user_name, active, attributes)
        VALUES (NEW.tenant_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'user.created', NEW.uid, NEW.user_name, NEW.active, NEW.attributes);
    END;
    CREATE TRIGGER entries_feed_update AFTER UPDATE OF user_name, active, attributes, deleted_at ON entries
    WHEN NOT (OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NOT NULL)
        AND (OLD.user_name IS NOT NEW.user_name OR OLD.active IS NOT NEW.active OR OLD.attributes IS NOT NEW.attributes
             OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL))
    BEGIN
        INSERT INTO changes (tenant_id, at, kind, entry_uid, user_name, active, attributes)
        VALUES (NEW.tenant_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            CASE WHEN NEW.deleted_at IS NOT NULL THEN 'user.deleted' WHEN OLD.deleted_at IS NOT NULL THEN 'user.created' ELSE 'user.updated' END,
            NEW.uid, NEW.user_name, NEW.active, CASE WHEN NEW.deleted_at IS NULL THEN NEW.attributes END);
    END;
    CREATE TRIGGER entries_feed_delete AFTER DELETE ON entries WHEN OLD.deleted_at IS NULL BEGIN
        INSERT INTO changes (tenant_id, at, kind, entry_uid, user_name)
        VALUES (OLD.tenant_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'user.deleted', OLD.uid, OLD.user_name);
    END;
    CREATE TRIGGER app_groups_feed_insert AFTER INSERT ON app_groups BEGIN
        INSERT INTO changes (tenant_id, at, kind, group_uid, group_name)
        VALUES (NEW.tenant_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'group.created', NEW.uid, NEW.name);
    END;
    -- A membership holds while any owner holds it: news when the first owner arrives or the
    -- last one leaves, and only for entries the application can see.
    CREATE TRIGGER memberships_feed_insert AFTER INSERT ON app_memberships
    WHEN NOT EXISTS (SELECT 1 FROM app_memberships WHERE group_id = NEW.group_id AND entry_id = NEW.entry_id AND owner <> NEW.owner)
    BEGIN
        INSERT INTO changes (tenant_id, at, kind, entry_uid, user_name, group_uid, group_name)
        SELECT e.tenant_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'membership.added', e.uid, e.user_name, g.uid, g.name
        FROM entries e, app_groups g WHERE e.id = NEW.entry_id AND g.id = NEW.group_id AND e.deleted_at IS NULL;
    END;
    CREATE TRIGGER memberships_feed_delete AFTER DELETE ON app_memberships
    WHEN NOT EXISTS (SELECT 1 FROM app_memberships WHERE group_id = OLD.group_id AND entry_id = OLD.entry_id)
    BEGIN
        INSERT INTO changes (tenant_id, at, kind, entry_uid, user_name, group_uid, group_name)
        SELECT e.tenant_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'membership.removed', e.uid, e.user_name, g.uid, g.name
        FROM entries e, app_groups g WHERE e.id = OLD.entry_id AND g.id = OLD.group_id AND e.deleted_at IS NULL;
    END;
    "#,
    // 13: the change feed is purged in position order (rows are appended in time order), so
    // the index on `at` only cost every directory change a b-tree insert on the writer.
    r#"
    DROP INDEX changes_at;
"#,
    // 14: delivery targets. The change feed is their outbox: each target keeps a cursor into it;
    // what it created or adopted in the target is mapped (with what was last sent), and events it
    // could not deliver wait in `delivery_dead` (parked, or held behind a parked one).
    r#"
    CREATE TABLE delivery_targets (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        url TEXT NOT NULL,
        settings TEXT NOT NULL,
        credential BLOB NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        cursor INTEGER NOT NULL DEFAULT 0,
        needs_sync INTEGER NOT NULL DEFAULT 1,
        created TEXT NOT NULL,
        last_success TEXT,
        last_error TEXT,
        last_error_at TEXT,
        delivered INTEGER NOT NULL DEFAULT 0,
        parked INTEGER NOT NULL DEFAULT 0,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE delivery_map (
        target_id INTEGER NOT NULL REFERENCES delivery_targets(id) ON DELETE CASCADE,
        resource TEXT NOT NULL,
        uid TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        origin TEXT NOT NULL,
        sent TEXT NOT NULL,
        PRIMARY KEY (target_id, resource, uid)
    ) WITHOUT ROWID;
    CREATE TABLE delivery_dead (
        id INTEGER PRIMARY KEY,
        target_id INTEGER NOT NULL REFERENCES delivery_targets(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        resource TEXT NOT NULL,
        event TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        answer TEXT,
        at TEXT NOT NULL,
        decided_by TEXT,
        decided_at TEXT
    );
    CREATE INDEX delivery_dead_target ON delivery_dead(target_id, state, id);
    INSERT INTO counters (name, value) VALUES ('delivery_epoch', 0) ON CONFLICT (name) DO NOTHING;
"#,
    // 15: what a target receives is itself a rule: numbered shape versions per target (a
    // chain of shaping plugins), the one it runs, and every activation.
    r#"
    ALTER TABLE delivery_targets ADD COLUMN shape_version INTEGER;
    CREATE TABLE delivery_shapes (
        target_id INTEGER NOT NULL REFERENCES delivery_targets(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        entries TEXT NOT NULL,
        author TEXT NOT NULL,
        note TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (target_id, number)
    ) WITHOUT ROWID;
    CREATE TABLE delivery_shape_activations (
        id INTEGER PRIMARY KEY,
        target_id INTEGER NOT NULL REFERENCES delivery_targets(id) ON DELETE CASCADE,
        number INTEGER,
        at TEXT NOT NULL,
        author TEXT NOT NULL
    );
    CREATE INDEX delivery_shape_activations_target ON delivery_shape_activations(target_id, id);
"#,
    // 16: a connection's policies (one JSON document), and the members its group writes named
    // that it does not have (skipped by its `unknown_members` policy), for the drift report.
    r#"
    ALTER TABLE idps ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE skipped_members (
        group_pk INTEGER NOT NULL REFERENCES groups(pk) ON DELETE CASCADE,
        member_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (group_pk, member_id)
    ) WITHOUT ROWID;
"#,
    // 17: the connection whose user deletion left an entry without IdP users (held,
    // deactivated or soft-deleted): that connection creating the user again takes it back.
    r#"
    ALTER TABLE entries ADD COLUMN left_by INTEGER;
"#,
    // 18: scoping. An IdP user out of scope is kept in the IdP view with no directory entry:
    // `users.entry_id` becomes nullable (SQLite rebuilds the table for that, foreign keys off,
    // checked before commit) and `out_of_scope` says whether the rules keep it out (an entry
    // it had stays linked, deprovisioned, until it comes back).
    r#"-- foreign keys off
    CREATE TABLE users_new (
        pk INTEGER PRIMARY KEY,
        idp_id INTEGER NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
        id TEXT NOT NULL UNIQUE,
        entry_id INTEGER REFERENCES entries(id),
        user_name_fold TEXT NOT NULL,
        external_id TEXT,
        display_name_fold TEXT,
        active INTEGER NOT NULL,
        body TEXT NOT NULL,
        created TEXT NOT NULL,
        modified TEXT NOT NULL,
        version INTEGER NOT NULL,
        out_of_scope INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO users_new (pk, idp_id, id, entry_id, user_name_fold, external_id, display_name_fold, active, body, created, modified, version)
        SELECT pk, idp_id, id, entry_id, user_name_fold, external_id, display_name_fold, active, body, created, modified, version FROM users;
    DROP TABLE users;
    ALTER TABLE users_new RENAME TO users;
    CREATE UNIQUE INDEX users_user_name ON users(idp_id, user_name_fold);
    CREATE INDEX users_external ON users(idp_id, external_id);
    CREATE INDEX users_display ON users(idp_id, display_name_fold);
    CREATE INDEX users_entry ON users(entry_id);
    DELETE FROM sqlite_stat1 WHERE tbl = 'users';
    INSERT INTO sqlite_stat1 (tbl, idx, stat)
        SELECT 'users', NULL, '1000000'
        UNION ALL SELECT 'users', name, '1000000 1' FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'users' AND name LIKE 'sqlite_autoindex_users%'
        UNION ALL SELECT 'users', 'users_user_name', '1000000 100000 1'
        UNION ALL SELECT 'users', 'users_external', '1000000 100000 1'
        UNION ALL SELECT 'users', 'users_display', '1000000 100000 2'
        UNION ALL SELECT 'users', 'users_entry', '1000000 1';
"#,
    // 19: the guards' windows of destructive operations, in the database: shared by every
    // process on it, and kept across restarts; leases giving background work to one process.
    r#"
CREATE TABLE guard_spends (
    idp_id INTEGER NOT NULL REFERENCES idps(id) ON DELETE CASCADE,
    at_ms INTEGER NOT NULL
);
CREATE INDEX guard_spends_idp ON guard_spends(idp_id, at_ms);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
"#,
    // 20: a plugin's bytes last in its row. SQLite reads a row's columns in order, so any
    // column after a 250 KB blob meant walking its ~60 overflow pages: listing 3,000 plugins
    // read 180,000 pages (and every chain naming a stored plugin lists them). PostgreSQL keeps
    // large values out of line and needs no change.
    r#"-- foreign keys off
    CREATE TABLE plugins_new (
        hash TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        contract TEXT NOT NULL,
        hooks TEXT NOT NULL,
        size INTEGER NOT NULL,
        uploaded TEXT NOT NULL,
        bytes BLOB NOT NULL
    );
    INSERT INTO plugins_new (hash, name, version, contract, hooks, size, uploaded, bytes)
        SELECT hash, name, version, contract, hooks, size, uploaded, bytes FROM plugins;
    DROP TABLE plugins;
    ALTER TABLE plugins_new RENAME TO plugins;
"#,
];

/// A migration that must run with foreign keys off (a table rebuild) starts with this line.
const FOREIGN_KEYS_OFF: &str = "-- foreign keys off";

pub(crate) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the migrations up to schema version `target`.
fn migrate_to(conn: &mut Connection, target: usize) -> StoreResult<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::backend(format!(
            "the database is at schema version {current}, newer than this build knows ({known}); upgrade mapwright"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current as usize) {
        // SQLite's way to change a column: rebuild the table with foreign keys off (they
        // cannot be switched inside a transaction), then check them all before committing.
        let fk_off = sql.starts_with(FOREIGN_KEYS_OFF);
        if fk_off {
            conn.pragma_update(None, "foreign_keys", false)?;
        }
        let applied = (|| -> StoreResult<()> {
            let txn = conn.transaction()?;
            txn.execute_batch(sql)?;
            if fk_off {
                let broken: i64 = txn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
                if broken > 0 {
                    return Err(StoreError::backend(format!("migration {} would leave {broken} broken references; nothing was changed", i + 1)));
                }
            }
            txn.pragma_update(None, "user_version", i as i64 + 1)?;
            txn.commit()?;
            Ok(())
        })();
        if fk_off {
            conn.pragma_update(None, "foreign_keys", true)?;
        }
        applied?;
        tracing::info!(version = i + 1, "applied store migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The users table rebuild (18) keeps every row and every reference to it: emails and
    /// group memberships still cascade with their user, and an entry is still required to
    /// exist when one is named.
    #[test]
    fn the_users_rebuild_keeps_rows_and_references() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", true).unwrap();
        migrate_to(&mut c, 17).unwrap();
        c.execute_batch(
            "INSERT INTO tenants (id, name, created) VALUES (1, 'acme', 'x');
             INSERT INTO idps (id, tenant_id, name, kind, rate_per_sec, burst, created) VALUES (1, 1, 'okta', 'okta', 0, 1, 'x');
             INSERT INTO entries (id, tenant_id, user_name, user_name_fold, active, attributes, created, modified, attr_owners, uid) VALUES (1, 1, 'jdoe', 'jdoe', 1, '{}', 'x', 'x', '{}', 'u1');
             INSERT INTO users (pk, idp_id, id, entry_id, user_name_fold, active, body, created, modified, version) VALUES (7, 1, 'i7', 1, 'jdoe', 1, '{}', 'x', 'x', 3);
             INSERT INTO user_emails (value_fold, user_pk) VALUES ('jdoe@acme.com', 7);
             INSERT INTO groups (pk, idp_id, id, display_name_fold, body, created, modified, version) VALUES (1, 1, 'g1', 'eng', '{}', 'x', 'x', 1);
             INSERT INTO group_members (group_pk, user_pk) VALUES (1, 7);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let (entry, version, out): (Option<i64>, i64, bool) = c.query_row("SELECT entry_id, version, out_of_scope FROM users WHERE pk = 7", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!((entry, version, out), (Some(1), 3, false));
        assert!(c.execute("INSERT INTO users (idp_id, id, entry_id, user_name_fold, active, body, created, modified, version) VALUES (1, 'x', 99, 'x', 1, '{}', 'x', 'x', 1)", []).is_err(), "entry_id still references entries");
        c.execute("INSERT INTO users (idp_id, id, entry_id, user_name_fold, active, body, created, modified, version, out_of_scope) VALUES (1, 'out', NULL, 'out', 1, '{}', 'x', 'x', 1, 1)", []).unwrap();
        c.execute("DELETE FROM users WHERE pk = 7", []).unwrap();
        let left: (i64, i64) = c.query_row("SELECT (SELECT count(*) FROM user_emails), (SELECT count(*) FROM group_members)", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!(left, (0, 0), "emails and memberships cascade with their user");
        let fk: bool = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert!(fk, "foreign keys are on again after the rebuild");
    }

    /// The plugins rebuild (20) puts the bytes last and keeps rows and the references of
    /// tenants and chain versions to them.
    #[test]
    fn the_plugins_rebuild_puts_bytes_last_and_keeps_references() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", true).unwrap();
        migrate_to(&mut c, 19).unwrap();
        c.execute_batch(
            "INSERT INTO tenants (id, name, created) VALUES (1, 'acme', 'x');
             INSERT INTO plugins (hash, name, version, contract, hooks, size, bytes, uploaded) VALUES ('h1', 'p', '1', '0.1.0', 'username', 3, x'010203', 'when');
             INSERT INTO tenant_plugins (tenant_id, hash, added) VALUES (1, 'h1', 'x');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let last: String = c.query_row("SELECT name FROM pragma_table_info('plugins') ORDER BY cid DESC LIMIT 1", [], |r| r.get(0)).unwrap();
        assert_eq!(last, "bytes");
        let (bytes, uploaded): (Vec<u8>, String) = c.query_row("SELECT bytes, uploaded FROM plugins WHERE hash = 'h1'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((bytes, uploaded.as_str()), (vec![1, 2, 3], "when"));
        assert!(c.execute("INSERT INTO tenant_plugins (tenant_id, hash, added) VALUES (1, 'nope', 'x')", []).is_err(), "tenant_plugins still references plugins");
    }
}
