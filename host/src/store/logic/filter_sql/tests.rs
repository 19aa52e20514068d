//! The SQL filters against the planner (index use) and against the in-memory evaluator.

#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;
use crate::scim::list::ListParams;
use crate::store::sql::{Sql, params_of};

fn plan(conn: &rusqlite::Connection, kind: ResourceKind, filter: &str) -> Vec<String> {
    let q = ListParams { filter: Some(filter.into()), ..Default::default() }.resolve(kind).unwrap();
    let sql = list_sql(kind, 1, &q, Dialect::Sqlite);
    let table = if kind == ResourceKind::User { "users" } else { "groups" };
    let c: &dyn Sql = conn;
    let rows = c.query(&format!("EXPLAIN QUERY PLAN SELECT r.pk FROM {table} r WHERE {}", sql.where_), &params_of(&sql.params)).unwrap();
    rows.iter().map(|r| r.get::<String>(3).unwrap()).collect()
}

/// The filters IdPs send on every sync are answered from indexes: the resource table is
/// never scanned, neither whole nor over all of one connection's rows.
#[test]
fn idp_filters_are_index_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(crate::store::SqlStore::sqlite(&path, Default::default()).unwrap());
    let conn = crate::store::sqlite::open(&path, Default::default(), false).unwrap();
    let cases = [
        (ResourceKind::User, r#"userName eq "a@b.c""#, "users_user_name"),
        (ResourceKind::User, r#"externalId eq "x""#, "users_external (idp_id=? AND external_id=?)"),
        (ResourceKind::User, r#"displayName eq "x""#, "users_display (idp_id=? AND display_name_fold=?)"),
        (ResourceKind::User, r#"id eq "x""#, "(id=?)"),
        (ResourceKind::User, r#"emails.value eq "a@b.c""#, "USING INTEGER PRIMARY KEY"),
        (ResourceKind::User, r#"emails[type eq "work" and value eq "a@b.c"]"#, "USING INTEGER PRIMARY KEY"),
        (ResourceKind::Group, r#"displayName eq "x""#, "groups_display (idp_id=? AND display_name_fold=?)"),
        (ResourceKind::Group, r#"externalId eq "x""#, "groups_external (idp_id=? AND external_id=?)"),
        (ResourceKind::Group, r#"members.value eq "u""#, "USING INTEGER PRIMARY KEY"),
        (ResourceKind::Group, r#"id eq "g" and members[value eq "u"]"#, "(id=?)"),
    ];
    for (kind, f, want) in cases {
        let p = plan(&conn, kind, f);
        let text = p.join(" | ");
        assert!(!p.iter().any(|l| l.starts_with("SCAN r")), "{f}: full scan: {text}");
        assert!(!p.iter().any(|l| l.starts_with("SEARCH r") && l.ends_with("(idp_id=?)")), "{f}: scans the connection: {text}");
        assert!(text.contains(want), "{f}: expected {want}: {text}");
    }
}

/// The in-memory evaluator (PATCH value paths, `scim::eval`) and the SQL compiled for list
/// filters select the same users, for random filters over a population with the awkward
/// cases (case folding, accents, empty strings, missing attributes, multi-valued emails).
mod agrees_with_eval {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::scim::filter::Filter;

    fn population() -> Vec<Value> {
        vec![
            json!({"userName": "alice@acme.com", "externalId": "ext-1", "displayName": "Alice Adams", "title": "Engineer", "userType": "Employee", "active": true,
                   "name": {"givenName": "Alice", "familyName": "Adams"},
                   "emails": [{"value": "alice@acme.com", "type": "work", "primary": true}, {"value": "alice@home.org", "type": "home"}],
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering"}}),
            json!({"userName": "Bob@Acme.com", "externalId": "ext-2", "displayName": "Bob Brown", "userType": "Intern", "active": false,
                   "name": {"givenName": "Bob", "familyName": "O'Brown"}, "emails": [{"value": "bob@acme.com", "type": "work"}],
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"}}),
            json!({"userName": "chloé@other.org", "displayName": "Chloé Çelik", "title": "", "active": true, "emails": [{"value": "CHLOE@OTHER.ORG", "type": "home"}]}),
            json!({"userName": "dan", "active": true}),
        ]
    }

    /// Writes the population as the store does, and returns each user as a rendered
    /// resource (what `eval::matches` sees).
    fn load(c: &dyn Sql) -> Vec<(String, Value)> {
        c.execute("INSERT INTO tenants (id, name, created) VALUES (1, 't', 'x')", &[]).unwrap();
        c.execute("INSERT INTO idps (id, tenant_id, name, kind, rate_per_sec, burst, created) VALUES (1, 1, 'i', 'generic', 0, 0, 'x')", &[]).unwrap();
        let mut resources = Vec::new();
        for (k, body) in population().into_iter().enumerate() {
            let ix = crate::store::logic::users::index_for_tests(&body);
            let (pk, id, created) = (k as i64 + 1, format!("id-{k}"), format!("2026-01-0{}T00:00:00.000Z", k + 1));
            c.execute(
                "INSERT INTO entries (id, tenant_id, user_name, user_name_fold, active, attributes, created, modified, uid) VALUES (?1, 1, ?2, ?2, 1, '{}', 'x', 'x', ?2)",
                &[&pk, &id],
            )
            .unwrap();
            c.execute(
                "INSERT INTO users (pk, idp_id, id, entry_id, user_name_fold, external_id, display_name_fold, active, body, created, modified, version)
                 VALUES (?1, 1, ?2, ?1, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1)",
                &[&pk, &id, &fold(&ix.0), &ix.1, &ix.2, &ix.3, &body.to_string(), &created],
            )
            .unwrap();
            for e in ix.4 {
                c.execute("INSERT INTO user_emails (value_fold, user_pk) VALUES (?1, ?2)", &[&e, &pk]).unwrap();
            }
            let mut r = body.clone();
            r["id"] = json!(id);
            r["meta"] = json!({"resourceType": "User", "created": created, "lastModified": created});
            resources.push((id, r));
        }
        resources
    }

    /// SQLite, as the store opens it.
    fn sqlite_fixture() -> (tempfile::TempDir, rusqlite::Connection, Vec<(String, Value)>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(crate::store::SqlStore::sqlite(&path, Default::default()).unwrap());
        let conn = crate::store::sqlite::open(&path, Default::default(), true).unwrap();
        let resources = load(&conn);
        (dir, conn, resources)
    }

    /// A scratch PostgreSQL database, migrated as the store does.
    fn postgres_fixture() -> (crate::store::postgres::scratch::ScratchDb, crate::store::sql::postgres::PgConn, Vec<(String, Value)>) {
        let db = crate::store::postgres::scratch::ScratchDb::create(&crate::store::sql::tests::database_url()).unwrap();
        crate::store::postgres::PgStore::open(db.url(), Default::default()).unwrap().close();
        let conn = crate::store::sql::postgres::PgConn::connect(db.url()).unwrap();
        let resources = load(&conn);
        (db, conn, resources)
    }

    /// The ids the SQL compiled for `typed` selects, and the ids `eval` selects.
    fn both(c: &dyn Sql, resources: &[(String, Value)], typed: &crate::scim::filter::Typed) -> (Vec<String>, Vec<String>) {
        let mut in_memory: Vec<String> = resources.iter().filter(|(_, r)| crate::scim::eval::matches(typed, r)).map(|(id, _)| id.clone()).collect();
        let q = crate::scim::list::ListQuery { filter: Some(typed.clone()), sort_by: None, descending: false, start_index: 1, count: 100, projection: Default::default() };
        let sql = list_sql(ResourceKind::User, 1, &q, c.dialect());
        let rows = c.query(&format!("SELECT r.id FROM users r WHERE {}", sql.where_), &params_of(&sql.params)).unwrap();
        let mut in_sql: Vec<String> = rows.iter().map(|r| r.get(0).unwrap()).collect();
        in_memory.sort();
        in_sql.sort();
        (in_memory, in_sql)
    }

    const STRINGS: &[&str] = &[
        "\"alice@acme.com\"", "\"BOB@ACME.COM\"", "\"Engineer\"", "\"\"", "\"a\"", "\"@acme.com\"", "\"chloé\"", "\"CHLOÉ\"", "\"work\"",
        "\"Sales\"", "\"id-1\"", "\"2026-01-02T00:00:00Z\"", "null",
    ];
    const OPS: &[&str] = &["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"];

    /// One comparison, typed sensibly most of the time (a string attribute with a string,
    /// a boolean with a boolean) so that most filters resolve and reach both engines.
    fn compare(strings: Vec<&'static str>, booleans: Vec<&'static str>) -> BoxedStrategy<String> {
        let strings = prop::sample::select(strings);
        let booleans = prop::sample::select(booleans);
        prop_oneof![
            4 => (strings.clone(), prop::sample::select(OPS.to_vec()), prop::sample::select(STRINGS.to_vec())).prop_map(|(p, o, v)| format!("{p} {o} {v}")),
            1 => (booleans.clone(), prop::sample::select(vec!["eq", "ne"]), prop::sample::select(vec!["true", "false", "null"])).prop_map(|(p, o, v)| format!("{p} {o} {v}")),
            1 => prop_oneof![strings, booleans].prop_map(|p| format!("{p} pr")),
        ]
        .boxed()
    }

    fn arb_filter() -> impl Strategy<Value = String> {
        let top = compare(
            vec![
                "userName", "displayName", "title", "externalId", "userType", "name.givenName", "name.familyName", "emails.value", "emails.type",
                "meta.created", "id", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "nickName",
            ],
            vec!["active", "emails.primary"],
        );
        // A value path over emails: conditions on its sub-attributes.
        let element = compare(vec!["value", "type", "display"], vec!["primary"]);
        let value_path = (element.clone(), element, any::<bool>()).prop_map(|(a, b, and)| format!("emails[{a} {} {b}]", if and { "and" } else { "or" }));
        let leaf = prop_oneof![4 => top, 1 => value_path];
        leaf.prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
                inner.prop_map(|a| format!("not ({a})")),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn the_same_users_match_in_sqlite(f in arb_filter()) {
            thread_local! { static FIXTURE: (tempfile::TempDir, rusqlite::Connection, Vec<(String, Value)>) = sqlite_fixture(); }
            // Filters the resolver refuses (a value path over something that is not
            // multi-valued, a comparison that cannot be typed) are errors in both places.
            let Ok(typed) = Filter::parse(&f).and_then(|p| p.resolve(ResourceKind::User)) else { return Ok(()) };
            let (in_memory, in_sql) = FIXTURE.with(|(_, conn, resources)| both(conn, resources, &typed));
            prop_assert_eq!(in_memory, in_sql, "{}", f);
        }

        #[test]
        fn the_same_users_match_in_postgres(f in arb_filter()) {
            thread_local! { static FIXTURE: (crate::store::postgres::scratch::ScratchDb, crate::store::sql::postgres::PgConn, Vec<(String, Value)>) = postgres_fixture(); }
            let Ok(typed) = Filter::parse(&f).and_then(|p| p.resolve(ResourceKind::User)) else { return Ok(()) };
            let (in_memory, in_sql) = FIXTURE.with(|(_, conn, resources)| both(conn, resources, &typed));
            prop_assert_eq!(in_memory, in_sql, "{}", f);
        }
    }

    /// Sorting in PostgreSQL is by code point, as in SQLite and Rust, whatever the locale.
    #[test]
    fn postgres_sorts_as_sqlite_does() {
        let (_db, pg, _) = postgres_fixture();
        let (_dir, lite, _) = sqlite_fixture();
        for sort in ["userName", "name.familyName", "emails.value", "title", "active", "meta.created", "displayName"] {
            for descending in [false, true] {
                let q = crate::scim::list::ListParams { sort_by: Some(sort.into()), sort_order: Some(if descending { "descending" } else { "ascending" }.into()), ..Default::default() }
                    .resolve(ResourceKind::User)
                    .unwrap();
                let order = |c: &dyn Sql| -> Vec<String> {
                    let sql = list_sql(ResourceKind::User, 1, &q, c.dialect());
                    let rows = c.query(&format!("SELECT r.id FROM users r WHERE {} ORDER BY {}", sql.where_, sql.order), &params_of(&sql.params)).unwrap();
                    rows.iter().map(|r| r.get(0).unwrap()).collect()
                };
                assert_eq!(order(&pg), order(&lite), "sortBy={sort} descending={descending}");
            }
        }
    }
}
