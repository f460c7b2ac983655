//! The one SQL layer both backends share: every statement, column list and row decoder of the store is
//! written once (in the family modules) against this module's small vocabulary.
//!
//! - [`Stmt`]: SQL text with `?N` placeholders and a few dialect marks, rendered once per dialect:
//!   `{now}` is the lease clock (PostgreSQL's `clock_timestamp()`, so instances whose clocks disagree still agree
//!   on leases; on SQLite, whose file belongs to one host, the caller's `now` passed as a trailing
//!   [`Value::Clock`]); `{pg:…}` / `{sqlite:…}` keep text for one dialect only (locking clauses, `seq` vs
//!   `rowid`); `{*}`, `{c.*}` and `{?*}` are the column list of the statement's record (`sql!(Record: "…")`),
//!   qualified, and its placeholders.
//! - [`record!`]: a record struct is its table's column list: field names are column names, and the same
//!   declaration gives the decoder ([`Columns::read`], by position) and the insert parameters
//!   ([`Columns::values`]). Column types implement [`Column`]; tuples of them decode ad-hoc rows.
//! - [`Value`]: one parameter type ([`Param`] binds a Rust value); on PostgreSQL it adapts to the column type
//!   the server inferred (UUID or text, `INTEGER` or `BIGINT`, `BOOLEAN`), on SQLite it binds without allocating.
//! - [`SqlRow`]: reading a result column by position, for `rusqlite::Row` and `tokio_postgres::Row`.
//! - [`Session`] runs statements; [`Driver`] hands a session out for a read or a transaction, with one-statement
//!   helpers (`exec`, `changed`, `one`, `opt`, `all`) decoding into the type asked for. The drivers
//!   (`sqlite`, `postgres`) keep only what truly differs: the SQLite writer thread and snapshot readers, the
//!   PostgreSQL pool, the migration runners.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::OnceLock;

use linkvault_domain::{ClientId, ConnectionStatus, RevokedReason, Scope, TokenId, TokenMode};
use rusqlite::types::ValueRef;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::time_conv::{opt_from_millis, to_millis};
use crate::{Result, StorageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite = 0,
    Postgres = 1,
}

/// The database clock in Unix milliseconds. `clock_timestamp()`, not `now()`: the latter is frozen at the
/// start of the transaction, and leases must be measured against the time the statement actually runs.
const PG_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A statement, rendered for a dialect on first use and kept (the hot reads must not format SQL each time).
#[derive(Debug)]
pub(crate) struct Stmt {
    text: Cow<'static, str>,
    /// The record whose columns `{*}` names (see [`columns`]).
    cols: Option<fn() -> Vec<&'static str>>,
    rendered: [OnceLock<String>; 2],
}

impl Stmt {
    pub(crate) const fn new(text: &'static str, cols: Option<fn() -> Vec<&'static str>>) -> Self {
        Self { text: Cow::Borrowed(text), cols, rendered: [OnceLock::new(), OnceLock::new()] }
    }

    /// A statement assembled at run time (rendered at each use).
    pub(crate) fn owned(text: String, cols: Option<fn() -> Vec<&'static str>>) -> Self {
        Self { text: Cow::Owned(text), cols, rendered: [OnceLock::new(), OnceLock::new()] }
    }

    pub(crate) fn text(&self, dialect: Dialect) -> &str {
        self.rendered[dialect as usize].get_or_init(|| render(&self.text, self.cols.map(|c| c()), dialect))
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

fn render(text: &str, cols: Option<Vec<&'static str>>, dialect: Dialect) -> String {
    let cols = cols.unwrap_or_default();
    let (list, placeholders) = (cols.join(", "), (1..=cols.len()).map(|n| format!("?{n}")).collect::<Vec<_>>());
    let placeholders = placeholders.join(", ");
    let inserts = if text.contains("{?*}") { cols.len() } else { 0 };
    // `{?+K}` is the K-th parameter after the record's columns (a statement with more than the record).
    let after = |mark: &str| mark.strip_prefix("?+").and_then(|k| k.parse::<usize>().ok()).map(|k| cols.len() + k);
    let extra = text.split('{').filter_map(|m| m.split_once('}').and_then(|(m, _)| after(m))).max().unwrap_or(0);
    let clock = max_placeholder(text).max(inserts).max(extra) + 1;
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else { break };
        let mark = &rest[open + 1..open + close];
        match (mark, dialect) {
            ("now", Dialect::Postgres) => out.push_str(PG_NOW_MS),
            ("now", Dialect::Sqlite) => out.push_str(&format!("?{clock}")),
            ("*", _) => out.push_str(&list),
            ("?*", _) => out.push_str(&placeholders),
            (m, _) if after(m).is_some() => out.push_str(&format!("?{}", after(m).unwrap_or_default())),
            (m, _) if m.ends_with(".*") => {
                out.push_str(&cols.iter().map(|c| format!("{}{c}", &m[..m.len() - 1])).collect::<Vec<_>>().join(", "))
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

/// The parameter list of a statement, each bound with [`Param::put`].
macro_rules! vals {
    ($($v:expr),* $(,)?) => { [$($crate::sql::Param::put(&$v)),*] };
}
pub(crate) use vals;

impl Value {
    pub(crate) fn clock(now: OffsetDateTime) -> Self {
        Value::Clock(to_millis(now))
    }

    fn uuid(v: Uuid) -> Self {
        let mut text = [0; 36];
        v.hyphenated().encode_lower(&mut text);
        Value::Uuid(v, text)
    }
}

/// What can be bound as a statement parameter: every [`Column`] type, and borrowed text and bytes.
pub(crate) trait Param {
    fn put(&self) -> Value;
}

impl<T: Param + ?Sized> Param for &T {
    fn put(&self) -> Value {
        (**self).put()
    }
}
impl<T: Param> Param for Option<T> {
    fn put(&self) -> Value {
        self.as_ref().map_or(Value::Null, Param::put)
    }
}
impl Param for Value {
    fn put(&self) -> Value {
        self.clone()
    }
}
impl Param for str {
    fn put(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl Param for [u8] {
    fn put(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
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
}

/// The Rust type of one column: how it is read (NULL as `None`); [`Param`] binds it.
pub(crate) trait Column: Param + Sized + Send + 'static {
    fn get(r: &dyn SqlRow, i: usize) -> Result<Option<Self>>;
}

/// A run of columns, read by position and bound in the same order: one [`Column`], a record of them (declared
/// with [`record!`]) or a tuple. The record is the column list: its field names are the column names.
pub(crate) trait Columns: Sized + Send + 'static {
    /// Appends the column names; a single column is called after its `field`.
    fn names(field: &'static str, out: &mut Vec<&'static str>);
    fn read(r: &dyn SqlRow, at: &mut usize) -> Result<Self>;
    fn put_all(&self, out: &mut Vec<Value>);

    /// The parameters of the record's columns, in order (`{?*}`).
    fn values(&self) -> Vec<Value> {
        let mut out = Vec::new();
        self.put_all(&mut out);
        out
    }
}

/// The column names of a record, for the `{*}` marks of a statement.
pub(crate) fn columns<T: Columns>() -> Vec<&'static str> {
    let mut out = Vec::new();
    T::names("", &mut out);
    out
}

impl<T: Column> Columns for T {
    fn names(field: &'static str, out: &mut Vec<&'static str>) {
        out.push(field);
    }
    fn read(r: &dyn SqlRow, at: &mut usize) -> Result<Self> {
        *at += 1;
        T::get(r, *at - 1)?.ok_or_else(|| corrupt("column", format!("{} is NULL", *at - 1)))
    }
    fn put_all(&self, out: &mut Vec<Value>) {
        out.push(self.put());
    }
}

impl<T: Column> Column for Option<T> {
    fn get(r: &dyn SqlRow, i: usize) -> Result<Option<Self>> {
        T::get(r, i).map(Some)
    }
}

macro_rules! tuple_columns {
    ($($t:ident),*) => {
        impl<$($t: Columns),*> Columns for ($($t,)*) {
            fn names(_: &'static str, out: &mut Vec<&'static str>) {
                $($t::names("", out);)*
            }
            fn read(r: &dyn SqlRow, at: &mut usize) -> Result<Self> {
                Ok(($($t::read(r, at)?,)*))
            }
            #[allow(non_snake_case)]
            fn put_all(&self, out: &mut Vec<Value>) {
                let ($($t,)*) = self;
                $($t.put_all(out);)*
            }
        }
    };
}
tuple_columns!(A, B);
tuple_columns!(A, B, C);

/// [`Column`] impls: `Type: |row, index| read, |value| bind;`.
macro_rules! column {
    ($($t:ty: |$r:ident, $i:ident| $get:expr, |$v:ident| $put:expr;)*) => {$(
        impl Column for $t {
            fn get($r: &dyn SqlRow, $i: usize) -> Result<Option<Self>> {
                $get
            }
        }
        impl Param for $t {
            fn put(&self) -> Value {
                let $v = self;
                $put
            }
        }
    )*};
}

column! {
    i64: |r, i| r.int_opt(i), |v| Value::Int(*v);
    u32: |r, i| r.int_opt(i)?.map(|n| u32::try_from(n).map_err(|e| corrupt("counter", e))).transpose(),
        |v| Value::Int(i64::from(*v));
    u64: |r, i| r.int_opt(i)?.map(|n| u64::try_from(n).map_err(|e| corrupt("negative counter", e))).transpose(),
        |v| Value::Int(i64::try_from(*v).unwrap_or(i64::MAX));
    bool: |r, i| Ok(r.int_opt(i)?.map(|n| n != 0)), |v| Value::Bool(*v);
    f64: |r, i| r.float_opt(i), |v| Value::Float(*v);
    String: |r, i| Ok(r.text_opt(i)?.map(str::to_owned)), |v| Value::Text(v.clone());
    Vec<u8>: |r, i| Ok(r.bytes_opt(i)?.map(<[u8]>::to_vec)), |v| Value::Bytes(v.clone());
    Uuid: |r, i| r.uuid_opt(i), |v| Value::uuid(*v);
    ClientId: |r, i| Ok(r.uuid_opt(i)?.map(ClientId::from_uuid)), |v| Value::uuid(*v.as_uuid());
    TokenId: |r, i| Ok(r.uuid_opt(i)?.map(TokenId::from_uuid)), |v| Value::uuid(*v.as_uuid());
    OffsetDateTime: |r, i| opt_from_millis(r.int_opt(i)?), |v| Value::Int(to_millis(*v));
    // An unknown reason reads as none (the family still counts as revoked, as `superseded`).
    RevokedReason: |r, i| Ok(r.text_opt(i)?.and_then(RevokedReason::parse)), |v| v.as_str().put();
}

/// Enumerations stored as their `as_str` text; text they do not know is corrupt data.
macro_rules! text_column {
    ($($t:ty: $parse:expr;)*) => {$(
        impl $crate::sql::Column for $t {
            fn get(r: &dyn $crate::sql::SqlRow, i: usize) -> $crate::Result<Option<Self>> {
                r.text_opt(i)?.map(|t| $parse(t).ok_or_else(|| $crate::sql::corrupt(stringify!($t), t))).transpose()
            }
        }
        impl $crate::sql::Param for $t {
            fn put(&self) -> $crate::sql::Value {
                $crate::sql::Value::Text(self.as_str().to_owned())
            }
        }
    )*};
}
pub(crate) use text_column;

text_column! {
    Scope: |t: &str| t.parse().ok();
    ConnectionStatus: |t: &str| t.parse().ok();
    TokenMode: |t: &str| t.parse().ok();
}

/// Declares an enumeration stored as text (`Variant = "text"`), with `ALL`, `as_str`, a `parse` that ignores
/// case and surrounding blanks, and its [`Column`] impl.
macro_rules! text_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident = $text:literal,)* }) => {
        $(#[$m])*
        pub enum $name {
            $($(#[$vm])* $v,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $text,)*
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            }
        }

        $crate::sql::text_column! {
            $name: $name::parse;
        }
    };
}
pub(crate) use text_enum;

/// Declares record structs, each also its table's column list ([`Columns`]): each field is a column of
/// the same name (`field: Type as column` renames it; `field: Type where check` passes what is read through
/// `check`), or a nested record whose columns follow in place. Adding a field adds the column to every
/// `{*}` list, decoder and `{?*}` insert written for the record.
macro_rules! record {
    (@name $f:ident) => { stringify!($f) };
    (@name $f:ident $col:ident) => { stringify!($col) };
    (@check $v:expr) => { $v };
    (@check $v:expr, $check:path) => { $check($v)? };
    ($(
        $(#[$m:meta])*
        pub struct $name:ident {
            $($(#[$fm:meta])* pub $f:ident: $t:ty $(as $col:ident)? $(where $check:path)?,)*
        }
    )*) => {$(
        $(#[$m])*
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
        }

        impl $crate::sql::Columns for $name {
            fn names(_: &'static str, out: &mut Vec<&'static str>) {
                $(<$t as $crate::sql::Columns>::names($crate::sql::record!(@name $f $($col)?), out);)*
            }
            fn read(r: &dyn $crate::sql::SqlRow, at: &mut usize) -> $crate::Result<Self> {
                Ok(Self { $($f: $crate::sql::record!(@check <$t as $crate::sql::Columns>::read(r, at)? $(, $check)?),)* })
            }
            fn put_all(&self, out: &mut Vec<$crate::sql::Value>) {
                $($crate::sql::Columns::put_all(&self.$f, out);)*
            }
        }
    )*};
}
pub(crate) use record;

// Reads through `get_ref` and a match on the value's storage class: `Row::get` goes through `FromSql` and its
// error conversions for every column, which the hottest reads (a status: fourteen columns) notice: with the
// UUID parse below, 530 fewer instructions a resolve under callgrind (62,582 → 62,050; docs/benchmarks.md).
impl SqlRow for rusqlite::Row<'_> {
    fn int_opt(&self, i: usize) -> Result<Option<i64>> {
        match self.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(n) => Ok(Some(n)),
            v => Err(corrupt("integer column", v.data_type())),
        }
    }
    fn float_opt(&self, i: usize) -> Result<Option<f64>> {
        Ok(self.get(i)?)
    }
    fn text_opt(&self, i: usize) -> Result<Option<&str>> {
        match self.get_ref(i)? {
            ValueRef::Null => Ok(None),
            v => v.as_str().map(Some).map_err(|e| corrupt("text column", e)),
        }
    }
    fn bytes_opt(&self, i: usize) -> Result<Option<&[u8]>> {
        match self.get_ref(i)? {
            ValueRef::Null => Ok(None),
            v => v.as_blob().map(Some).map_err(|e| corrupt("blob column", e)),
        }
    }
    fn uuid_opt(&self, i: usize) -> Result<Option<Uuid>> {
        // Parsed from the stored bytes: the parser accepts ASCII hex and hyphens only, so no UTF-8 check first.
        match self.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => Uuid::try_parse_ascii(t).map(Some).map_err(|e| corrupt("uuid", e)),
            v => Err(corrupt("uuid column", v.data_type())),
        }
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

    /// Every row of a query, decoded as `T`.
    fn all<T: Columns>(&mut self, stmt: &Stmt, params: &[Value]) -> impl Future<Output = Result<Vec<T>>> + Send {
        self.query(stmt, params, |r| T::read(r, &mut 0))
    }

    /// The first row of a query, if any.
    fn opt<T: Columns>(&mut self, stmt: &Stmt, params: &[Value]) -> impl Future<Output = Result<Option<T>>> + Send {
        async move { Ok(self.all(stmt, params).await?.into_iter().next()) }
    }

    /// The first row of a query that always returns one.
    fn one<T: Columns>(&mut self, stmt: &Stmt, params: &[Value]) -> impl Future<Output = Result<T>> + Send {
        async move {
            self.opt(stmt, params)
                .await?
                .ok_or_else(|| StorageError::Database("a query that returns one row returned none".into()))
        }
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

    /// One write statement; the number of rows it changed.
    fn exec(&self, stmt: &'static Stmt, params: impl Params) -> Fut<'_, u64> {
        let run =
            self.run(Mode::Write, move |s| Box::pin(async move { s.execute(stmt, params.as_ref()).await.map(Some) }));
        Box::pin(async move { ran(run.await) })
    }

    /// One write statement that changes a single row: whether it did.
    fn changed(&self, stmt: &'static Stmt, params: impl Params) -> Fut<'_, bool> {
        let n = self.exec(stmt, params);
        Box::pin(async move { Ok(n.await? == 1) })
    }

    /// Every row of one query.
    fn all<T: Columns>(&self, mode: Mode, stmt: &'static Stmt, params: impl Params) -> Fut<'_, Vec<T>> {
        let run = self.run(mode, move |s| Box::pin(async move { s.all(stmt, params.as_ref()).await.map(Some) }));
        Box::pin(async move { ran(run.await) })
    }

    /// The first row of one query, if any.
    fn opt<T: Columns>(&self, mode: Mode, stmt: &'static Stmt, params: impl Params) -> Fut<'_, Option<T>> {
        let run = self.run(mode, move |s| Box::pin(async move { s.opt(stmt, params.as_ref()).await.map(Some) }));
        Box::pin(async move { ran(run.await) })
    }

    /// The first row of a read that always returns one.
    fn one<T: Columns>(&self, stmt: &'static Stmt, params: impl Params) -> Fut<'_, T> {
        let run = self.run(Mode::Read, move |s| Box::pin(async move { s.one(stmt, params.as_ref()).await.map(Some) }));
        Box::pin(async move { ran(run.await) })
    }
}

/// A statement's parameters, moved into the closure a [`Driver`] runs.
pub(crate) trait Params: AsRef<[Value]> + Send + 'static {}
impl<P: AsRef<[Value]> + Send + 'static> Params for P {}

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
/// A statement kept in a `static`, rendered once per dialect: `sql!("SELECT …")`, or `sql!(Record: "…")`
/// where `{*}` (or `{c.*}`, qualified) lists the record's columns and `{?*}` their placeholders `?1…?N`.
macro_rules! sql {
    ($text:expr) => {{
        static STMT: $crate::sql::Stmt = $crate::sql::Stmt::new($text, None);
        &STMT
    }};
    ($record:ty: $text:expr) => {{
        static STMT: $crate::sql::Stmt = $crate::sql::Stmt::new($text, Some($crate::sql::columns::<$record>));
        &STMT
    }};
}
pub(crate) use {run, sql};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_marks_render_per_dialect() {
        let s = Stmt::new(
            "SELECT a FROM t WHERE b = ?1 AND c <= {now} ORDER BY {sqlite:rowid}{pg:seq}{pg: FOR UPDATE}",
            None,
        );
        assert_eq!(s.text(Dialect::Sqlite), "SELECT a FROM t WHERE b = ?1 AND c <= ?2 ORDER BY rowid");
        assert_eq!(
            s.text(Dialect::Postgres),
            format!("SELECT a FROM t WHERE b = $1 AND c <= {PG_NOW_MS} ORDER BY seq FOR UPDATE")
        );
    }

    #[test]
    fn record_columns_expand_plain_qualified_and_as_placeholders() {
        let s = Stmt::new("RETURNING {c.*}", Some(columns::<crate::ConnectionRecord>));
        assert!(s.text(Dialect::Postgres).starts_with("RETURNING c.token_id, c.client_id, c.user_id"));
        assert!(s.text(Dialect::Postgres).ends_with("c.reauth_warned_at"), "the nested refresh state comes last");
        let s = Stmt::new("INSERT INTO clients ({*}) VALUES ({?*}) WHERE {now}", Some(columns::<crate::ClientRecord>));
        assert_eq!(
            s.text(Dialect::Sqlite),
            "INSERT INTO clients (client_id, name, token_mode, created_at, api_rate_limit) VALUES (?1, ?2, ?3, ?4, ?5) \
             WHERE ?6"
        );
        let s = Stmt::new(
            "INSERT INTO clients ({*}) SELECT {?*} WHERE {?+2} > {?+1} AND {now}",
            Some(columns::<crate::ClientRecord>),
        );
        assert_eq!(
            s.text(Dialect::Sqlite),
            "INSERT INTO clients (client_id, name, token_mode, created_at, api_rate_limit) SELECT ?1, ?2, ?3, ?4, ?5 \
             WHERE ?7 > ?6 AND ?8"
        );
        let s = Stmt::new("SELECT {*}", Some(columns::<crate::TransferExecutionRecord>));
        assert!(s.text(Dialect::Sqlite).contains("to_address, transfer_status, hash"), "renamed follow columns");
        assert!(s.text(Dialect::Sqlite).ends_with("checks, follow_gave_up_at"));
    }
}
