//! The one SQL layer both backends share: every statement, column list and row decoder of the store is
//! written once (in the family modules) against this module's small vocabulary.
//!
//! - [`Stmt`]: SQL text with `?N` placeholders and a few dialect marks, rendered once per dialect:
//!   `{now}` is the lease clock (PostgreSQL's `clock_timestamp()`, so instances whose clocks disagree still agree
//!   on leases; on SQLite, whose file belongs to one host, the caller's `now` passed as a trailing
//!   [`Value::Clock`]); `{pg:…}` / `{sqlite:…}` keep text for one dialect only (locking clauses, `seq` vs
//!   `rowid`); `{connection}` / `{c.connection}` expand to the connection column list.
//! - [`Value`]: one parameter type; on PostgreSQL it adapts to the column type the server inferred (UUID or
//!   text, `INTEGER` or `BIGINT`, `BOOLEAN`), on SQLite it binds without allocating.
//! - [`SqlRow`]: reading a result column by position, for `rusqlite::Row` and `tokio_postgres::Row`.
//! - [`Session`] runs statements; [`Driver`] hands a session out for a read or a transaction. The drivers
//!   (`sqlite`, `postgres`) keep only what truly differs: the SQLite writer thread and snapshot readers, the
//!   PostgreSQL pool, the migration runners.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::OnceLock;

use linkvault_domain::{ClientId, TokenId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::time_conv::{from_millis, opt_from_millis, to_millis};
use crate::{Result, StorageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite = 0,
    Postgres = 1,
}

/// The database clock in Unix milliseconds. `clock_timestamp()`, not `now()`: the latter is frozen at the
/// start of the transaction, and leases must be measured against the time the statement actually runs.
const PG_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The columns of a [`crate::ConnectionRecord`], read by position by `connection_from_row` (in this order).
pub(crate) const CONNECTION_COLUMNS: &str = "token_id, client_id, user_id, integration, scope, status, key_version, \
    wrapped_data_key, data_key_generation, data_key_uses, credentials, account_id, account_name, access_expires_at, \
    refresh_expires_at, last_refreshed_at, refresh_count, created_at, updated_at, version, next_refresh_at, \
    lease_owner, lease_until, grant_in_flight, refresh_failures, last_error, reauth_warned_at";

/// A statement, rendered for a dialect on first use and kept (the hot reads must not format SQL each time).
#[derive(Debug)]
pub(crate) struct Stmt {
    text: Cow<'static, str>,
    rendered: [OnceLock<String>; 2],
}

impl Stmt {
    pub(crate) const fn new(text: &'static str) -> Self {
        Self { text: Cow::Borrowed(text), rendered: [OnceLock::new(), OnceLock::new()] }
    }

    /// A statement assembled at run time (rendered at each use).
    pub(crate) fn owned(text: String) -> Self {
        Self { text: Cow::Owned(text), rendered: [OnceLock::new(), OnceLock::new()] }
    }

    pub(crate) fn text(&self, dialect: Dialect) -> &str {
        self.rendered[dialect as usize].get_or_init(|| render(&self.text, dialect))
    }
}

/// The highest `?N` in a text (the clock parameter of SQLite comes after it).
fn max_placeholder(text: &str) -> usize {
    let mut max = 0;
    let mut rest = text;
    while let Some(at) = rest.find('?') {
        let digits: String = rest[at + 1..].chars().take_while(char::is_ascii_digit).collect();
        max = max.max(digits.parse().unwrap_or(0));
        rest = &rest[at + 1..];
    }
    max
}

fn render(text: &str, dialect: Dialect) -> String {
    let clock = max_placeholder(text) + 1;
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else { break };
        let mark = &rest[open + 1..open + close];
        match (mark, dialect) {
            ("now", Dialect::Postgres) => out.push_str(PG_NOW_MS),
            ("now", Dialect::Sqlite) => out.push_str(&format!("?{clock}")),
            ("connection", _) => out.push_str(CONNECTION_COLUMNS),
            ("c.connection", _) => {
                out.push_str(&CONNECTION_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", "))
            }
            (m, Dialect::Postgres) if m.starts_with("pg:") => out.push_str(&m[3..]),
            (m, Dialect::Sqlite) if m.starts_with("sqlite:") => out.push_str(&m[7..]),
            _ => {}
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    match dialect {
        Dialect::Sqlite => out,
        Dialect::Postgres => out.replace('?', "$"),
    }
}

/// One statement parameter.
#[derive(Clone)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    /// A UUID with its stored text form (SQLite keeps UUIDs as text; PostgreSQL as `UUID`).
    Uuid(Uuid, [u8; 36]),
    /// The process clock for `{now}`: bound on SQLite, left out on PostgreSQL (which reads its own clock).
    Clock(i64),
}

/// The parameter list of a statement, each converted with [`Value::from`].
macro_rules! vals {
    ($($v:expr),* $(,)?) => { [$($crate::sql::Value::from($v)),*] };
}
pub(crate) use vals;

impl Value {
    pub(crate) fn clock(now: OffsetDateTime) -> Self {
        Value::Clock(to_millis(now))
    }
}

/// `From` impls for parameter types: `value_from!(T => |v| expression)`.
macro_rules! value_from {
    ($($t:ty => |$v:ident| $e:expr;)*) => {
        $(impl From<$t> for Value {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

value_from! {
    i64 => |v| Value::Int(v);
    u32 => |v| Value::Int(i64::from(v));
    u64 => |v| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
    f64 => |v| Value::Float(v);
    bool => |v| Value::Bool(v);
    String => |v| Value::Text(v);
    &String => |v| Value::Text(v.clone());
    &str => |v| Value::Text(v.to_owned());
    Vec<u8> => |v| Value::Bytes(v);
    &Vec<u8> => |v| Value::Bytes(v.clone());
    &[u8] => |v| Value::Bytes(v.to_vec());
    ClientId => |v| Value::from(*v.as_uuid());
    TokenId => |v| Value::from(*v.as_uuid());
    OffsetDateTime => |v| Value::Int(to_millis(v));
}

impl From<Uuid> for Value {
    fn from(v: Uuid) -> Self {
        let mut text = [0; 36];
        v.hyphenated().encode_lower(&mut text);
        Value::Uuid(v, text)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
impl<T: Clone + Into<Value>> From<&Option<T>> for Value {
    fn from(v: &Option<T>) -> Self {
        v.clone().map_or(Value::Null, Into::into)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ValueRef;
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) | Value::Clock(v) => ValueRef::Integer(*v),
            Value::Float(v) => ValueRef::Real(*v),
            Value::Bool(v) => ValueRef::Integer(i64::from(*v)),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Bytes(v) => ValueRef::Blob(v),
            Value::Uuid(_, text) => ValueRef::Text(text),
        }))
    }
}

impl std::fmt::Debug for Value {
    // Parameters carry ciphertexts and digests: never worth printing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Value")
    }
}

impl tokio_postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::{IsNull, Type};
        match self {
            Value::Null | Value::Clock(_) => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Float(v) => v.to_sql(ty, out),
            Value::Bool(v) => v.to_sql(ty, out),
            Value::Text(v) => v.as_str().to_sql(ty, out),
            Value::Bytes(v) => v.as_slice().to_sql(ty, out),
            Value::Uuid(id, _) if *ty == Type::UUID => id.to_sql(ty, out),
            Value::Uuid(_, text) => std::str::from_utf8(text)?.to_sql(ty, out),
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

pub(crate) fn parse<T: FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| corrupt(what, e))
}

/// A result row, read by position (by name costs a string comparison per column on the hottest reads).
pub(crate) trait SqlRow {
    /// An integer column (on PostgreSQL any of `SMALLINT`, `INTEGER`, `BIGINT`, `BOOLEAN`).
    fn int_opt(&self, i: usize) -> Result<Option<i64>>;
    fn float_opt(&self, i: usize) -> Result<Option<f64>>;
    /// A text column, borrowed from the row.
    fn text_opt(&self, i: usize) -> Result<Option<&str>>;
    fn bytes_opt(&self, i: usize) -> Result<Option<&[u8]>>;
    fn uuid_opt(&self, i: usize) -> Result<Option<Uuid>>;

    fn int(&self, i: usize) -> Result<i64> {
        self.int_opt(i)?.ok_or_else(|| corrupt("column", format!("{i} is NULL")))
    }
    fn u64(&self, i: usize) -> Result<u64> {
        u64::try_from(self.int(i)?).map_err(|e| corrupt("negative counter", e))
    }
    fn u32(&self, i: usize) -> Result<u32> {
        u32::try_from(self.int(i)?).map_err(|e| corrupt("counter", e))
    }
    fn flag(&self, i: usize) -> Result<bool> {
        Ok(self.int(i)? != 0)
    }
    fn text(&self, i: usize) -> Result<&str> {
        self.text_opt(i)?.ok_or_else(|| corrupt("column", format!("{i} is NULL")))
    }
    fn string(&self, i: usize) -> Result<String> {
        self.text(i).map(str::to_owned)
    }
    fn string_opt(&self, i: usize) -> Result<Option<String>> {
        Ok(self.text_opt(i)?.map(str::to_owned))
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>> {
        Ok(self.bytes_opt(i)?.ok_or_else(|| corrupt("column", format!("{i} is NULL")))?.to_vec())
    }
    fn uuid(&self, i: usize) -> Result<Uuid> {
        self.uuid_opt(i)?.ok_or_else(|| corrupt("column", format!("{i} is NULL")))
    }
    fn client_id(&self, i: usize) -> Result<ClientId> {
        self.uuid(i).map(ClientId::from_uuid)
    }
    fn token_id(&self, i: usize) -> Result<TokenId> {
        self.uuid(i).map(TokenId::from_uuid)
    }
    fn time(&self, i: usize) -> Result<OffsetDateTime> {
        from_millis(self.int(i)?)
    }
    fn time_opt(&self, i: usize) -> Result<Option<OffsetDateTime>> {
        opt_from_millis(self.int_opt(i)?)
    }
}

impl SqlRow for rusqlite::Row<'_> {
    fn int_opt(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.get(i)?)
    }
    fn float_opt(&self, i: usize) -> Result<Option<f64>> {
        Ok(self.get(i)?)
    }
    fn text_opt(&self, i: usize) -> Result<Option<&str>> {
        match self.get_ref(i)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            v => v.as_str().map(Some).map_err(|e| corrupt("text column", e)),
        }
    }
    fn bytes_opt(&self, i: usize) -> Result<Option<&[u8]>> {
        match self.get_ref(i)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            v => v.as_blob().map(Some).map_err(|e| corrupt("blob column", e)),
        }
    }
    fn uuid_opt(&self, i: usize) -> Result<Option<Uuid>> {
        self.text_opt(i)?.map(|t| parse("uuid", t)).transpose()
    }
}

impl SqlRow for tokio_postgres::Row {
    fn int_opt(&self, i: usize) -> Result<Option<i64>> {
        use tokio_postgres::types::Type;
        let ty = self.columns().get(i).map(|c| c.type_());
        Ok(if ty == Some(&Type::INT2) {
            self.try_get::<_, Option<i16>>(i)?.map(i64::from)
        } else if ty == Some(&Type::INT4) {
            self.try_get::<_, Option<i32>>(i)?.map(i64::from)
        } else if ty == Some(&Type::BOOL) {
            self.try_get::<_, Option<bool>>(i)?.map(i64::from)
        } else {
            self.try_get(i)?
        })
    }
    fn float_opt(&self, i: usize) -> Result<Option<f64>> {
        Ok(self.try_get(i)?)
    }
    fn text_opt(&self, i: usize) -> Result<Option<&str>> {
        Ok(self.try_get(i)?)
    }
    fn bytes_opt(&self, i: usize) -> Result<Option<&[u8]>> {
        Ok(self.try_get(i)?)
    }
    fn uuid_opt(&self, i: usize) -> Result<Option<Uuid>> {
        match self.columns().get(i).map(|c| c.type_() == &tokio_postgres::types::Type::UUID) {
            Some(true) => Ok(self.try_get(i)?),
            _ => self.text_opt(i)?.map(|t| parse("uuid", t)).transpose(),
        }
    }
}

/// A connection (or an open transaction) statements run on.
pub(crate) trait Session: Send {
    const DIALECT: Dialect;

    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, stmt: &Stmt, params: &[Value]) -> impl Future<Output = Result<u64>> + Send;

    /// Runs a query and decodes every row with `f`.
    fn query<T: Send>(
        &mut self,
        stmt: &Stmt,
        params: &[Value],
        f: impl FnMut(&dyn SqlRow) -> Result<T> + Send,
    ) -> impl Future<Output = Result<Vec<T>>> + Send;

    /// The first row of a query, if any.
    fn query_opt<T: Send>(
        &mut self,
        stmt: &Stmt,
        params: &[Value],
        f: impl FnMut(&dyn SqlRow) -> Result<T> + Send,
    ) -> impl Future<Output = Result<Option<T>>> + Send {
        async move { Ok(self.query(stmt, params, f).await?.into_iter().next()) }
    }

    /// The first row of a query that always returns one.
    fn query_one<T: Send>(
        &mut self,
        stmt: &Stmt,
        params: &[Value],
        f: impl FnMut(&dyn SqlRow) -> Result<T> + Send,
    ) -> impl Future<Output = Result<T>> + Send {
        async move {
            self.query_opt(stmt, params, f)
                .await?
                .ok_or_else(|| StorageError::Database("a query that returns one row returned none".into()))
        }
    }

    /// `COUNT(*)` and friends.
    fn count(&mut self, stmt: &Stmt, params: &[Value]) -> impl Future<Output = Result<u64>> + Send {
        async move { self.query_one(stmt, params, |r| r.u64(0)).await }
    }
}

/// A boxed, sendable future borrowing `'a` (the closures handed to a [`Driver`] return one).
pub(crate) type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// How a [`Driver`] runs a closure's statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Reads only (SQLite: a pooled reader and its snapshot; PostgreSQL: a pooled connection).
    Read,
    /// A short indexed read of a few rows, on the hot paths (SQLite: as [`Mode::Read`]; PostgreSQL: a shared
    /// connection that pipelines concurrent lookups, so nothing slow may run in this mode).
    Lookup,
    /// Writes that need no transaction of their own, typically one statement (SQLite: the writer thread;
    /// PostgreSQL: one round trip, no `BEGIN`/`COMMIT`).
    Write,
    /// One transaction, committed when the closure answers `Some`, rolled back on `None` or an error.
    Transaction,
}

/// A backend: where sessions come from. Closures are `'static` because SQLite runs writes on its writer
/// thread; what they need is moved in.
pub(crate) trait Driver: Send + Sync + std::fmt::Debug + 'static {
    type Conn<'c>: Session;

    /// A short name of the backend, for logs and metrics.
    const BACKEND: &'static str;

    fn run<T, F>(&self, mode: Mode, f: F) -> Fut<'_, Option<T>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Self::Conn<'c>) -> Fut<'c, Option<T>> + Send + 'static;

    /// Applies pending migrations (each backend has its own runner and files).
    fn migrate_schema(&self) -> Fut<'_, ()>;

    /// Makes sure deleted bytes do not survive in the database files (SQLite: a truncating WAL checkpoint).
    fn scrub_deleted(&self) -> Fut<'_, ()>;

    /// One statement; the number of rows it changed.
    fn exec<P: AsRef<[Value]> + Send + 'static>(&self, mode: Mode, stmt: &'static Stmt, params: P) -> Fut<'_, u64> {
        let run = self.run(mode, move |s| Box::pin(async move { s.execute(stmt, params.as_ref()).await.map(Some) }));
        Box::pin(async move { ran(run.await) })
    }

    /// The first row of one query, if any.
    fn opt<T: Send + 'static, P: AsRef<[Value]> + Send + 'static>(
        &self,
        mode: Mode,
        stmt: &'static Stmt,
        params: P,
        f: fn(&dyn SqlRow) -> Result<T>,
    ) -> Fut<'_, Option<T>> {
        let run =
            self.run(mode, move |s| Box::pin(async move { s.query_opt(stmt, params.as_ref(), f).await.map(Some) }));
        Box::pin(async move { ran(run.await) })
    }

    /// The first row of a query that always returns one.
    fn one<T: Send + 'static, P: AsRef<[Value]> + Send + 'static>(
        &self,
        mode: Mode,
        stmt: &'static Stmt,
        params: P,
        f: fn(&dyn SqlRow) -> Result<T>,
    ) -> Fut<'_, T> {
        let run =
            self.run(mode, move |s| Box::pin(async move { s.query_one(stmt, params.as_ref(), f).await.map(Some) }));
        Box::pin(async move { ran(run.await) })
    }

    /// Every row of one query.
    fn all<T: Send + 'static, P: AsRef<[Value]> + Send + 'static>(
        &self,
        mode: Mode,
        stmt: &'static Stmt,
        params: P,
        f: fn(&dyn SqlRow) -> Result<T>,
    ) -> Fut<'_, Vec<T>> {
        let run = self.run(mode, move |s| Box::pin(async move { s.query(stmt, params.as_ref(), f).await.map(Some) }));
        Box::pin(async move { ran(run.await) })
    }

    /// A `COUNT(*)`.
    fn count<P: AsRef<[Value]> + Send + 'static>(&self, mode: Mode, stmt: &'static Stmt, params: P) -> Fut<'_, u64> {
        self.one(mode, stmt, params, |r| r.u64(0))
    }
}

/// Only a transaction's closure may answer `None` (to roll back); for the other modes it is a bug.
pub(crate) fn ran<T>(out: Result<Option<T>>) -> Result<T> {
    out?.ok_or_else(|| StorageError::Database("statement batch rolled back".into()))
}

/// `driver.run(mode, …)` with the boxing written once: `run!(self, Read, |s| body)` where `body` is a
/// `Result` expression that may `.await` and `?`.
macro_rules! run {
    ($d:expr, $mode:ident, |$s:ident| $body:expr) => {
        $crate::sql::ran(
            $crate::sql::Driver::run($d, $crate::sql::Mode::$mode, move |$s| {
                Box::pin(async move { async move { $body }.await.map(Some) })
            })
            .await,
        )
    };
}
/// A statement kept in a `static`, rendered once per dialect: `sql!("SELECT …")`.
macro_rules! sql {
    ($text:expr) => {{
        static STMT: $crate::sql::Stmt = $crate::sql::Stmt::new($text);
        &STMT
    }};
}
pub(crate) use {run, sql};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_marks_render_per_dialect() {
        let s =
            Stmt::new("SELECT a FROM t WHERE b = ?1 AND c <= {now} ORDER BY {sqlite:rowid}{pg:seq}{pg: FOR UPDATE}");
        assert_eq!(s.text(Dialect::Sqlite), "SELECT a FROM t WHERE b = ?1 AND c <= ?2 ORDER BY rowid");
        assert_eq!(
            s.text(Dialect::Postgres),
            format!("SELECT a FROM t WHERE b = $1 AND c <= {PG_NOW_MS} ORDER BY seq FOR UPDATE")
        );
    }

    #[test]
    fn connection_columns_expand_qualified() {
        let s = Stmt::new("RETURNING {c.connection}");
        assert!(s.text(Dialect::Postgres).starts_with("RETURNING c.token_id, c.client_id, c.user_id"));
        assert!(s.text(Dialect::Postgres).ends_with("c.reauth_warned_at"));
    }
}
