#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

#[test]
fn placeholders_are_numbered_for_postgres_outside_literals_and_comments() {
    let sql = "SELECT '?1', \"a?2\" FROM t -- ?3 stays\nWHERE a = ?1 AND b = ?12 AND c = 'it''s ?4'";
    assert_eq!(postgres_placeholders(sql).unwrap(), "SELECT '?1', \"a?2\" FROM t -- ?3 stays\nWHERE a = $1 AND b = $12 AND c = 'it''s ?4'");
    assert!(postgres_placeholders("SELECT ?").is_err());
}

/// The same statements on both databases; `ddl` is each one's table.
fn exercise(db: &dyn Sql) {
    let ddl = match db.dialect() {
        Dialect::Sqlite => "CREATE TABLE things (pk INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, flag INTEGER NOT NULL, data BLOB, at TEXT, score REAL)",
        Dialect::Postgres => "CREATE TABLE things (pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE, flag BOOLEAN NOT NULL, data BYTEA, at TEXT, score DOUBLE PRECISION)",
    };
    db.execute(ddl, &[]).unwrap();
    let at = Timestamp::from_stored("2026-12-06T07:00:00.000Z".into());
    let insert = "INSERT INTO things (name, flag, data, at, score) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING RETURNING pk";
    let pk: i64 = db.query_one(insert, &[&"jane", &true, &vec![0u8, 255], &at, &1.5]).unwrap().get(0).unwrap();
    let none: Option<Vec<u8>> = None;
    db.query_one(insert, &[&"bob", &false, &none, &Option::<Timestamp>::None, &2.0]).unwrap();
    // A conflict ignored: no row back, nothing changed.
    assert!(db.query_opt(insert, &[&"jane", &false, &none, &Option::<Timestamp>::None, &0.0]).unwrap().is_none());
    assert_eq!(db.execute("UPDATE things SET score = score + ?1 WHERE name = ?2", &[&1.0, &"bob"]).unwrap(), 1);

    let r = db.query_one("SELECT pk, name, flag, data, at, score, '?1' FROM things WHERE pk = ?1", &[&pk]).unwrap();
    assert_eq!(r.get::<String>(1).unwrap(), "jane");
    assert!(r.get::<bool>(2).unwrap());
    assert_eq!(r.get::<Option<Vec<u8>>>(3).unwrap(), Some(vec![0, 255]));
    assert_eq!(r.get::<Timestamp>(4).unwrap(), at);
    assert_eq!(r.get::<f64>(5).unwrap(), 1.5);
    assert_eq!(r.get::<String>(6).unwrap(), "?1", "a literal is not a placeholder");
    assert!(r.get::<i64>(1).unwrap_err().to_string().contains("expected an integer"));

    let names: Vec<(String, bool, Option<String>)> = db
        .query("SELECT name, flag, at FROM things ORDER BY name", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()))
        .collect();
    assert_eq!(names, [("bob".to_string(), false, None), ("jane".to_string(), true, Some(at.as_str().to_string()))]);
    assert_eq!(db.query_one("SELECT count(*) FROM things WHERE flag = ?1", &[&false]).unwrap().get::<usize>(0).unwrap(), 1);
    assert_eq!(db.query_one("SELECT score FROM things WHERE name = ?1", &[&"bob"]).unwrap().get::<f64>(0).unwrap(), 3.0);
    assert!(matches!(db.query_one("SELECT pk FROM things WHERE name = ?1", &[&"nobody"]), Err(StoreError::NotFound)));
    // Only the columns that change: the fixed parameters first, then one per column set.
    let (score, unchanged_flag) = (4.5, false);
    let mut set = Assignments::new(&[&"bob"]);
    set.column_if(false, "flag", &unchanged_flag);
    set.column("score", &score);
    set.expression("at = NULL");
    assert_eq!(set.list(), "score = ?2, at = NULL");
    assert_eq!(db.execute(&format!("UPDATE things SET {} WHERE name = ?1", set.list()), set.params()).unwrap(), 1);
    assert_eq!(db.query_one("SELECT score FROM things WHERE name = ?1", &[&"bob"]).unwrap().get::<f64>(0).unwrap(), 4.5);
    // A uniqueness rule is a conflict on both.
    let dup = db.execute("INSERT INTO things (name, flag) VALUES (?1, ?2)", &[&"jane", &true]).unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
}

#[test]
fn sqlite_runs_the_shared_sql() {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    exercise(&c);
}

/// The PostgreSQL cluster `scripts/test.sh` starts (`MW_DATABASE_URL`).
pub fn database_url() -> String {
    std::env::var("MW_DATABASE_URL").expect("the PostgreSQL tests need MW_DATABASE_URL: run scripts/test.sh (it starts a throwaway cluster), or point it at a database you can write")
}

#[test]
fn postgres_runs_the_same_sql() {
    let mut c = postgres::PgConn::connect(&database_url()).unwrap();
    // A schema of its own, dropped with the transaction: nothing is left behind.
    let schema = format!("sqltest_{}", uuid::Uuid::new_v4().simple());
    let result = c.transaction(::postgres::IsolationLevel::ReadCommitted, false, true, |t| {
        t.execute(&format!("CREATE SCHEMA {schema}"), &[])?;
        t.execute(&format!("SET LOCAL search_path TO {schema}"), &[])?;
        // The uniqueness conflict comes last: PostgreSQL aborts a transaction at its first error.
        exercise(t);
        Err::<(), _>(StoreError::backend("roll back"))
    });
    assert!(matches!(result, Err(StoreError::Backend(_))));
    let left = c.query_one("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?1", &[&schema]).unwrap().get::<i64>(0).unwrap();
    assert_eq!(left, 0);
}

