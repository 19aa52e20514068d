//! [`Sql`] on SQLite: rusqlite's cached statements, values by their storage class.

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::{Cell, Dialect, Param, Row, Sql, ToParam};
use crate::store::StoreResult;

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(i),
            Param::Real(f) => ValueRef::Real(f),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Real(f) => Cell::Real(f),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    }
}

fn params<'a>(params: &'a [&'a dyn ToParam]) -> Vec<Param<'a>> {
    params.iter().map(|p| p.param()).collect()
}

fn execute(c: &rusqlite::Connection, sql: &str, p: &[&dyn ToParam]) -> StoreResult<u64> {
    let n = c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params(p)))?;
    Ok(n as u64)
}

fn query(c: &rusqlite::Connection, sql: &str, p: &[&dyn ToParam]) -> StoreResult<Vec<Row>> {
    let mut st = c.prepare_cached(sql)?;
    let width = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(params(p)))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut cells = Vec::with_capacity(width);
        for i in 0..width {
            cells.push(cell(r.get_ref(i)?));
        }
        out.push(Row::new(cells));
    }
    Ok(out)
}

// A transaction is a connection (it derefs to one); both are written as such.
macro_rules! sql {
    ($($t:ty),*) => {$(
        impl Sql for $t {
            fn dialect(&self) -> Dialect {
                Dialect::Sqlite
            }
            fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> StoreResult<u64> {
                execute(self, sql, params)
            }
            fn query(&self, sql: &str, params: &[&dyn ToParam]) -> StoreResult<Vec<Row>> {
                query(self, sql, params)
            }
        }
    )*};
}
sql!(rusqlite::Connection, rusqlite::Transaction<'_>);
