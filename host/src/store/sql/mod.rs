//! The SQL the store's modules speak, over either database: one interface ([`Sql`]) with an
//! implementation for SQLite (`rusqlite`) and one for PostgreSQL (`postgres`), so each piece
//! of storage logic is written once.
//!
//! The statements are written in the subset both databases share: `?1`-style placeholders
//! (rewritten to `$1` for PostgreSQL), `INSERT … ON CONFLICT … DO NOTHING/UPDATE`, `RETURNING`,
//! integers for flags, text for times and JSON. What SQLite has and PostgreSQL lacks
//! (`json_extract`, …) PostgreSQL gets as functions its migrations create. Values cross as
//! five kinds ([`Param`], [`Cell`]); each side converts them to the column's own type, so
//! a `bool` bound to PostgreSQL's `BOOLEAN` or an integer read from its `INTEGER` just work.

pub mod postgres;
mod sqlite;

use crate::model::Timestamp;
use crate::store::{StoreError, StoreResult};

/// Which database a statement runs on, for the few places the SQL must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The distinct values of `expr` in a group, joined by commas (SQLite's
    /// `group_concat(DISTINCT …)`, PostgreSQL's `string_agg(DISTINCT …, ',')`).
    pub fn distinct_list(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("group_concat(DISTINCT {expr})"),
            Dialect::Postgres => format!("string_agg(DISTINCT {expr}, ',')"),
        }
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    /// `NULL`.
    Null,
    /// An integer (also a flag: 0 or 1).
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// `NULL`.
    Null,
    /// An integer (PostgreSQL's booleans read as 0 or 1).
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Cell {
    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "null",
            Cell::Int(_) => "an integer",
            Cell::Real(_) => "a float",
            Cell::Text(_) => "text",
            Cell::Blob(_) => "bytes",
        }
    }
}

/// What can be bound to a statement.
pub trait ToParam {
    /// The value as a statement takes it.
    fn param(&self) -> Param<'_>;
}

/// What a row's cell can be read as.
pub trait FromCell: Sized {
    /// The value, or why the cell is not one.
    fn from_cell(cell: Cell) -> Result<Self, String>;
}

/// One row of a result.
pub struct Row {
    cells: Vec<Cell>,
}

impl Row {
    /// A row of these cells (what each backend builds).
    pub fn new(cells: Vec<Cell>) -> Row {
        Row { cells }
    }

    /// The `i`-th column (from 0), as `T`.
    pub fn get<T: FromCell>(&self, i: usize) -> StoreResult<T> {
        let cell = self.cells.get(i).cloned().ok_or_else(|| StoreError::backend(format!("no column {i} in the row")))?;
        T::from_cell(cell).map_err(|why| StoreError::backend(format!("column {i}: {why}")))
    }

    /// The `i`-th column as JSON text parsed into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> StoreResult<T> {
        let text: String = self.get(i)?;
        serde_json::from_str(&text).map_err(|e| StoreError::backend(format!("column {i} is not the JSON it should be: {e}")))
    }
}

/// The `SET` list of an `UPDATE` that names only the columns whose values change, with its
/// parameters: the statement's own parameters first (`?1`…), then one per column set.
///
/// Why not set every column to its value: either database rewrites an index entry whenever
/// the `UPDATE` names one of the index's columns, changed or not, and on SQLite each index
/// entry rewritten is one more page in the commit's WAL frames.
///
/// ```ignore
/// let mut set = Assignments::new(&[&pk]);
/// set.column_if(name != old_name, "user_name", &name);
/// set.expression("version = version + 1");
/// t.execute(&format!("UPDATE users SET {} WHERE pk = ?1", set.list()), set.params())?;
/// ```
pub struct Assignments<'a> {
    list: String,
    params: Vec<&'a dyn ToParam>,
}

impl<'a> Assignments<'a> {
    /// No column set yet; `fixed` are the statement's own parameters (`?1`…, in its `WHERE`).
    pub fn new(fixed: &[&'a dyn ToParam]) -> Self {
        Assignments { list: String::new(), params: fixed.to_vec() }
    }

    /// Sets `column` to `value`.
    pub fn column(&mut self, column: &str, value: &'a dyn ToParam) {
        self.params.push(value);
        let n = self.params.len();
        self.expression(&format!("{column} = ?{n}"));
    }

    /// Sets `column` to `value` when `changed`.
    pub fn column_if(&mut self, changed: bool, column: &str, value: &'a dyn ToParam) {
        if changed {
            self.column(column, value);
        }
    }

    /// Adds an assignment written out (`version = version + 1`), with no parameter of its own.
    pub fn expression(&mut self, assignment: &str) {
        if !self.list.is_empty() {
            self.list.push_str(", ");
        }
        self.list.push_str(assignment);
    }

    /// The `SET` list (empty when nothing is set).
    pub fn list(&self) -> &str {
        &self.list
    }

    /// The parameters: the fixed ones, then the columns' values.
    pub fn params(&self) -> &[&'a dyn ToParam] {
        &self.params
    }
}

/// A connection or transaction of either database. Statements are prepared once per
/// connection and cached by their text.
pub trait Sql {
    /// Which database this is.
    fn dialect(&self) -> Dialect;
    /// Runs a statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> StoreResult<u64>;
    /// Runs a query; every row, in order.
    fn query(&self, sql: &str, params: &[&dyn ToParam]) -> StoreResult<Vec<Row>>;

    /// The only row of a query; [`StoreError::NotFound`] when there is none.
    fn query_one(&self, sql: &str, params: &[&dyn ToParam]) -> StoreResult<Row> {
        self.query(sql, params)?.into_iter().next().ok_or(StoreError::NotFound)
    }

    /// The first row of a query, if any.
    fn query_opt(&self, sql: &str, params: &[&dyn ToParam]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

// -- Conversions ---------------------------------------------------------------------------

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn param(&self) -> Param<'_> {
                Param::Int(i64::from(*self))
            }
        }
    )*};
}
int_param!(i64, i32, u32, u16, u8, bool);

impl ToParam for f64 {
    fn param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}

impl ToParam for str {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for String {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for [u8] {
    fn param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}

impl ToParam for Vec<u8> {
    fn param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}

impl ToParam for Timestamp {
    fn param(&self) -> Param<'_> {
        Param::Text(self.as_str())
    }
}

impl ToParam for Cell {
    fn param(&self) -> Param<'_> {
        match self {
            Cell::Null => Param::Null,
            Cell::Int(i) => Param::Int(*i),
            Cell::Real(f) => Param::Real(*f),
            Cell::Text(s) => Param::Text(s),
            Cell::Blob(b) => Param::Blob(b),
        }
    }
}

/// Parameters held as values (a compiled filter's), as a statement takes them.
pub fn params_of(cells: &[Cell]) -> Vec<&dyn ToParam> {
    cells.iter().map(|c| c as &dyn ToParam).collect()
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn param(&self) -> Param<'_> {
        (**self).param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn param(&self) -> Param<'_> {
        self.as_ref().map_or(Param::Null, ToParam::param)
    }
}

impl FromCell for i64 {
    fn from_cell(cell: Cell) -> Result<Self, String> {
        match cell {
            Cell::Int(i) => Ok(i),
            other => Err(format!("expected an integer, found {}", other.kind())),
        }
    }
}

macro_rules! narrow_int {
    ($($t:ty),*) => {$(
        impl FromCell for $t {
            fn from_cell(cell: Cell) -> Result<Self, String> {
                let i = i64::from_cell(cell)?;
                <$t>::try_from(i).map_err(|_| format!("{i} does not fit {}", stringify!($t)))
            }
        }
    )*};
}
narrow_int!(usize, u64, u32, u16, u8, i32);

impl FromCell for bool {
    fn from_cell(cell: Cell) -> Result<Self, String> {
        Ok(i64::from_cell(cell)? != 0)
    }
}

impl FromCell for f64 {
    fn from_cell(cell: Cell) -> Result<Self, String> {
        match cell {
            Cell::Real(f) => Ok(f),
            // Integer-valued floats may come back as integers (SQLite's REAL affinity).
            Cell::Int(i) => Ok(i as f64),
            other => Err(format!("expected a float, found {}", other.kind())),
        }
    }
}

impl FromCell for String {
    fn from_cell(cell: Cell) -> Result<Self, String> {
        match cell {
            Cell::Text(s) => Ok(s),
            other => Err(format!("expected text, found {}", other.kind())),
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(cell: Cell) -> Result<Self, String> {
        match cell {
            Cell::Blob(b) => Ok(b),
            other => Err(format!("expected bytes, found {}", other.kind())),
        }
    }
}

impl FromCell for Timestamp {
    fn from_cell(cell: Cell) -> Result<Self, String> {
        String::from_cell(cell).map(Timestamp::from_stored)
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: Cell) -> Result<Self, String> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// Rewrites `?N` placeholders to PostgreSQL's `$N`, leaving string literals, quoted names and
/// comments alone. (A bare `?` is not used by the store's SQL; it is refused.)
pub fn postgres_placeholders(sql: &str) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                // To the closing quote; a doubled quote is an escaped one and stays inside.
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == c {
                        if chars.peek() == Some(&c) {
                            out.push(c);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                if n.is_empty() {
                    return Err("a bare `?` placeholder: number them (`?1`)".into());
                }
                out.push('$');
                out.push_str(&n);
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
