//! [`Sql`] on PostgreSQL (the synchronous `postgres` client, run on blocking threads as the
//! SQLite connections are): placeholders rewritten, statements prepared once per connection,
//! and values converted to and from each column's own type.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as _;

use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Statement, Transaction};

use super::{Cell, Dialect, Param, Row, Sql, ToParam, postgres_placeholders};
use crate::store::{StoreError, StoreResult};

/// Whether PostgreSQL refused a transaction only because of a concurrent one (serialization
/// failure, deadlock): running it again is the remedy.
pub fn is_retryable(e: &StoreError) -> bool {
    let StoreError::Backend(source) = e else { return false };
    let code = source.downcast_ref::<PgError>().and_then(|e| e.0.code());
    matches!(code, Some(c) if *c == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE || *c == postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        match e.code() {
            Some(c) if *c == postgres::error::SqlState::UNIQUE_VIOLATION || *c == postgres::error::SqlState::FOREIGN_KEY_VIOLATION || *c == postgres::error::SqlState::CHECK_VIOLATION => {
                let detail = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
                StoreError::Conflict(detail)
            }
            _ => StoreError::Backend(Box::new(PgError(e))),
        }
    }
}

/// A PostgreSQL error that says what the server said: the client's own `Display` is only
/// "db error", the message, code and position live in its source.
#[derive(Debug)]
pub struct PgError(pub postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(d) => {
                write!(f, "{} ({})", d.message(), d.code().code())?;
                if let Some(detail) = d.detail() {
                    write!(f, ": {detail}")?;
                }
                if let Some(w) = d.where_() {
                    write!(f, " [{w}]")?;
                }
                Ok(())
            }
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A parameter converted to the type PostgreSQL inferred for its placeholder.
#[derive(Debug)]
struct Bound<'a>(Param<'a>);

impl ToSql for Bound<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let wrong = || -> Box<dyn std::error::Error + Sync + Send> { format!("cannot bind {:?} to a {ty} column", self.0).into() };
        match self.0 {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i).map_err(|_| wrong())?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i).map_err(|_| wrong())?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(wrong()),
            },
            Param::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(wrong()),
            },
            Param::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::UNKNOWN => s.to_sql(ty, out),
                Type::JSONB | Type::JSON => serde_json::from_str::<serde_json::Value>(s)?.to_sql(ty, out),
                _ => Err(wrong()),
            },
            Param::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                _ => Err(wrong()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column read as whatever it is.
struct Read(Cell);

impl<'a> FromSql<'a> for Read {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Read(match *ty {
            Type::INT8 => Cell::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Cell::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Cell::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Cell::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Cell::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Cell::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Cell::Blob(Vec::<u8>::from_sql(ty, raw)?),
            Type::JSONB | Type::JSON => Cell::Text(serde_json::Value::from_sql(ty, raw)?.to_string()),
            _ => Cell::Text(String::from_sql(ty, raw)?),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Read(Cell::Null))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::FLOAT8 | Type::FLOAT4 | Type::BYTEA | Type::JSONB | Type::JSON) || <String as FromSql>::accepts(ty)
    }
}

fn rows(raw: Vec<postgres::Row>) -> StoreResult<Vec<Row>> {
    raw.into_iter()
        .map(|r| (0..r.len()).map(|i| r.try_get::<_, Read>(i).map(|v| v.0)).collect::<Result<Vec<_>, _>>().map(Row::new))
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::backend(format!("reading a row: {}", e.source().map(ToString::to_string).unwrap_or_else(|| e.to_string()))))
}

/// How many statements one connection keeps prepared.
const MAX_STATEMENTS: usize = 512;

/// Statements prepared on one connection, by the store's SQL text.
#[derive(Default)]
pub struct Statements(HashMap<String, Statement>);

/// Anything that prepares and runs statements: a client or a transaction.
trait Run {
    fn prepare_(&mut self, sql: &str) -> Result<Statement, postgres::Error>;
    fn execute_(&mut self, st: &Statement, p: &[&(dyn ToSql + Sync)]) -> Result<u64, postgres::Error>;
    fn query_(&mut self, st: &Statement, p: &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>, postgres::Error>;
}

// The client and a transaction have the same three methods, not behind a common trait.
macro_rules! run {
    ($($t:ty),*) => {$(
        impl Run for $t {
            fn prepare_(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
                self.prepare(sql)
            }
            fn execute_(&mut self, st: &Statement, p: &[&(dyn ToSql + Sync)]) -> Result<u64, postgres::Error> {
                self.execute(st, p)
            }
            fn query_(&mut self, st: &Statement, p: &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>, postgres::Error> {
                self.query(st, p)
            }
        }
    )*};
}
run!(Client, Transaction<'_>);

fn statement<R: Run>(run: &mut R, cache: &mut Statements, sql: &str) -> StoreResult<Statement> {
    if let Some(st) = cache.0.get(sql) {
        return Ok(st.clone());
    }
    // Filters make statements of many shapes: keep a bounded number prepared (dropping a
    // statement closes it on the server).
    if cache.0.len() >= MAX_STATEMENTS {
        cache.0.clear();
    }
    let text = postgres_placeholders(sql).map_err(StoreError::backend)?;
    // A statement PostgreSQL refuses is a bug of ours: say which one.
    let st = run.prepare_(&text).map_err(|e| StoreError::backend(format!("{}; preparing: {}", PgError(e), sql.split_whitespace().collect::<Vec<_>>().join(" "))))?;
    cache.0.insert(sql.to_string(), st.clone());
    Ok(st)
}

fn bound<'a>(params: &'a [&'a dyn ToParam]) -> Vec<Bound<'a>> {
    params.iter().map(|p| Bound(p.param())).collect()
}

fn run_execute<R: Run>(run: &mut R, cache: &mut Statements, sql: &str, params: &[&dyn ToParam]) -> StoreResult<u64> {
    let st = statement(run, cache, sql)?;
    let b = bound(params);
    let refs: Vec<&(dyn ToSql + Sync)> = b.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    Ok(run.execute_(&st, &refs)?)
}

fn run_query<R: Run>(run: &mut R, cache: &mut Statements, sql: &str, params: &[&dyn ToParam]) -> StoreResult<Vec<Row>> {
    let st = statement(run, cache, sql)?;
    let b = bound(params);
    let refs: Vec<&(dyn ToSql + Sync)> = b.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    rows(run.query_(&st, &refs)?)
}

/// One PostgreSQL connection and its prepared statements.
pub struct PgConn {
    client: RefCell<Client>,
    statements: RefCell<Statements>,
    /// Set when the session may still hold an advisory lock it failed to release: such a
    /// connection must not go back to the pool.
    broken: std::cell::Cell<bool>,
}

impl PgConn {
    /// Connects (no TLS: the database is reached on a trusted network or loopback).
    pub fn connect(url: &str) -> StoreResult<PgConn> {
        let client = Client::connect(url, postgres::NoTls)?;
        Ok(PgConn { client: RefCell::new(client), statements: RefCell::default(), broken: std::cell::Cell::new(false) })
    }

    /// Runs `f` in a transaction at `isolation` (`read_only` when it only reads), committed
    /// when `commit` and `f` returns `Ok`, rolled back otherwise.
    pub fn transaction<T>(&mut self, isolation: postgres::IsolationLevel, read_only: bool, commit: bool, f: impl FnOnce(&PgTx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let client = self.client.get_mut();
        let statements = self.statements.get_mut();
        let tx = client.build_transaction().isolation_level(isolation).read_only(read_only).start()?;
        let tx = PgTx { tx: RefCell::new(tx), statements: RefCell::new(statements) };
        let out = f(&tx)?;
        if commit {
            tx.tx.into_inner().commit()?;
        } else {
            tx.tx.into_inner().rollback()?;
        }
        Ok(out)
    }

    /// [`Self::transaction`] holding the session's advisory lock `key` from before BEGIN to
    /// after the end: transactions under one key wait for one another instead of failing one
    /// another. (Taken inside a serializable transaction the lock would come after its
    /// snapshot, and a waiter would still fail once the holder commits.)
    pub fn transaction_locked<T>(&mut self, key: i64, isolation: postgres::IsolationLevel, read_only: bool, commit: bool, f: impl FnOnce(&PgTx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.execute("SELECT pg_advisory_lock(?1)", &[&key])?;
        let out = self.transaction(isolation, read_only, commit, f);
        if let Err(e) = self.execute("SELECT pg_advisory_unlock(?1)", &[&key]) {
            tracing::warn!(error = %e, "releasing an advisory lock failed; closing the connection");
            self.broken.set(true);
        }
        out
    }

    /// Whether the connection is gone (the server closed it, or it broke).
    pub fn is_closed(&self) -> bool {
        self.broken.get() || self.client.borrow().is_closed()
    }
}

impl Sql for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> StoreResult<u64> {
        run_execute(&mut *self.client.borrow_mut(), &mut self.statements.borrow_mut(), sql, params)
    }
    fn query(&self, sql: &str, params: &[&dyn ToParam]) -> StoreResult<Vec<Row>> {
        run_query(&mut *self.client.borrow_mut(), &mut self.statements.borrow_mut(), sql, params)
    }
}

/// A transaction on a [`PgConn`].
pub struct PgTx<'a> {
    tx: RefCell<Transaction<'a>>,
    statements: RefCell<&'a mut Statements>,
}

impl PgTx<'_> {
    /// Runs several statements, without parameters (a migration).
    pub fn batch(&self, sql: &str) -> StoreResult<()> {
        Ok(self.tx.borrow_mut().batch_execute(sql)?)
    }
}

impl Sql for PgTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> StoreResult<u64> {
        run_execute(&mut *self.tx.borrow_mut(), &mut self.statements.borrow_mut(), sql, params)
    }
    fn query(&self, sql: &str, params: &[&dyn ToParam]) -> StoreResult<Vec<Row>> {
        run_query(&mut *self.tx.borrow_mut(), &mut self.statements.borrow_mut(), sql, params)
    }
}
