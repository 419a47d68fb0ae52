//! A page of servers read as only the columns a caller chose: each row is its id and one
//! [`Cell`] per chosen column, read straight from the statement's row with no row type in
//! between. A dashboard's page selects a handful of a server's columns; reading the whole row
//! (and its grant's) decodes, and allocates for, every one of them.
//!
//! The statement is written from the chosen columns, so each set of columns is a statement of
//! its own. A prepared statement is kept per connection for the first [`KEPT_SHAPES`] sets a
//! process reads; any further set is prepared for each read, so callers choosing ever new sets
//! cannot grow the statement caches without bound.

use std::sync::RwLock;

use chrono::{DateTime, Utc};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, QueryableByName};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::row::{Field, NamedRow, Row};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Bool, HasSqlType, Integer, Text, Untyped};
use uuid::Uuid;

use super::types::{
    AuthStatus, AuthType, ConnectionStatus, CredentialMode, PortableTimestamp, PortableUuid,
    RegistrationKind, StatusReason, Transport,
};
use super::{DbConn, DbError, DbTime, DbUuid};

/// Declares [`Column`]: each column a projected page can read, with the SQL that reads it and
/// the kind of value it holds.
macro_rules! columns {
    ($( $(#[$meta:meta])* $name:ident => $sql:literal as $kind:ident, )+) => {
        /// A column a projected page can read: one of the server's, or one of its shared
        /// grant's (read through a left join, so null for a server without one).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Column {
            $( $(#[$meta])* $name, )+
        }

        impl Column {
            /// Every column, in declaration order (which is also the order of their bits).
            pub const ALL: &'static [Column] = &[$(Column::$name),+];

            /// The SQL expression that reads it (`s` is the server, `g` its shared grant).
            const fn sql(self) -> &'static str {
                match self {
                    $(Column::$name => $sql,)+
                }
            }

            /// What its value is.
            const fn kind(self) -> Kind {
                match self {
                    $(Column::$name => Kind::$kind,)+
                }
            }
        }
    };
}

columns! {
    /// `name`.
    Name => "s.name" as Text,
    /// `description`.
    Description => "s.description" as Text,
    /// `url`.
    Url => "s.url" as Text,
    /// `transport`.
    Transport => "s.transport" as Transport,
    /// `protocol_version`.
    ProtocolVersion => "s.protocol_version" as Text,
    /// `tools_fresh_until`.
    ToolsFreshUntil => "s.tools_fresh_until" as Time,
    /// `enabled`.
    Enabled => "s.enabled" as Bool,
    /// `timeout_ms`.
    TimeoutMs => "s.timeout_ms" as Int,
    /// `retries`.
    Retries => "s.retries" as Int,
    /// `auth_type`.
    AuthType => "s.auth_type" as AuthType,
    /// `header_names` (their JSON list; the values are sealed elsewhere and never read here).
    HeaderNames => "s.header_names" as Text,
    /// `oauth_client_id`.
    OauthClientId => "s.oauth_client_id" as Text,
    /// `oauth_lenient_pkce`.
    OauthLenientPkce => "s.oauth_lenient_pkce" as Bool,
    /// `credential_mode`.
    CredentialMode => "s.credential_mode" as CredentialMode,
    /// Whether a client secret is stored (never the secret).
    HasOauthClientSecret => "s.oauth_client_secret_sealed IS NOT NULL" as Bool,
    /// Whether a client key is stored (never the key).
    HasOauthClientKey => "s.oauth_client_key_sealed IS NOT NULL" as Bool,
    /// `connection_status`.
    ConnectionStatus => "s.connection_status" as ConnectionStatus,
    /// `auth_status`.
    AuthStatus => "s.auth_status" as AuthStatus,
    /// `status_reason`.
    StatusReason => "s.status_reason" as StatusReason,
    /// `last_error`.
    LastError => "s.last_error" as Text,
    /// `last_connected_at`.
    LastConnectedAt => "s.last_connected_at" as Time,
    /// `tool_count`.
    ToolCount => "s.tool_count" as Int,
    /// `tools_refreshed_at`.
    ToolsRefreshedAt => "s.tools_refreshed_at" as Time,
    /// `created_at`.
    CreatedAt => "s.created_at" as Time,
    /// `updated_at`.
    UpdatedAt => "s.updated_at" as Time,
    /// Whether the server has a shared grant.
    HasGrant => "g.server_id IS NOT NULL" as Bool,
    /// The shared grant's `issuer`.
    GrantIssuer => "g.issuer" as Text,
    /// The shared grant's `granted_scopes`.
    GrantScopes => "g.granted_scopes" as Text,
    /// The shared grant's `access_expires_at`.
    GrantExpiresAt => "g.access_expires_at" as Time,
    /// The shared grant's `last_refreshed_at`.
    GrantLastRefreshedAt => "g.last_refreshed_at" as Time,
    /// The shared grant's `registration_kind`.
    GrantRegistration => "g.registration_kind" as Registration,
    /// Whether the reading user's own grant holds tokens (false without one).
    MyAuthorized => "m.tokens_sealed IS NOT NULL" as Bool,
    /// The reading user's own grant's `access_expires_at`.
    MyExpiresAt => "m.access_expires_at" as Time,
    /// The reading user's own grant's `granted_scopes`.
    MyScopes => "m.granted_scopes" as Text,
    /// When the reading user's own grant was first stored.
    MyAuthorizedAt => "m.created_at" as Time,
}

impl Column {
    /// Whether it reads the shared grant.
    fn of_shared_grant(self) -> bool {
        (Column::HasGrant as u8..Column::MyAuthorized as u8).contains(&(self as u8))
    }

    /// Whether it reads the reading user's own grant.
    fn of_own_grant(self) -> bool {
        self as u8 >= Column::MyAuthorized as u8
    }

    fn bit(self) -> u64 {
        1 << (self as u8)
    }
}

/// What a column holds, and so how its value is read.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bool,
    Time,
    Transport,
    AuthType,
    CredentialMode,
    ConnectionStatus,
    AuthStatus,
    StatusReason,
    Registration,
}

/// A column's value in one row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// SQL null.
    Null,
    /// Text.
    Text(String),
    /// An integer.
    Int(i32),
    /// A boolean.
    Bool(bool),
    /// A timestamp.
    Time(DateTime<Utc>),
    /// A transport.
    Transport(Transport),
    /// An authentication type.
    AuthType(AuthType),
    /// A credential mode.
    CredentialMode(CredentialMode),
    /// A connection status.
    ConnectionStatus(ConnectionStatus),
    /// An authorization status.
    AuthStatus(AuthStatus),
    /// Why a status is what it is.
    StatusReason(StatusReason),
    /// How a grant's client was registered.
    Registration(RegistrationKind),
}

/// A set of columns, in their declaration order whatever the order they were added in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Columns(u64);

impl Columns {
    /// Add `column` (once, however often it is added).
    pub fn add(&mut self, column: Column) {
        self.0 |= column.bit();
    }

    /// Where `column`'s cell is in a row read with these columns, when it is one of them.
    pub fn position(self, column: Column) -> Option<usize> {
        (self.0 & column.bit() != 0).then(|| (self.0 & (column.bit() - 1)).count_ones() as usize)
    }

    fn iter(self) -> impl Iterator<Item = Column> {
        Column::ALL
            .iter()
            .copied()
            .filter(move |c| self.0 & c.bit() != 0)
    }

    fn reads_shared_grant(self) -> bool {
        self.iter().any(Column::of_shared_grant)
    }

    fn reads_own_grant(self) -> bool {
        self.iter().any(Column::of_own_grant)
    }
}

/// A server of a projected page: its id, and a cell per column read, in the columns' order
/// (see [`Columns::position`]).
#[derive(Debug, PartialEq)]
pub struct ProjectedRow {
    /// The server's id.
    pub id: Uuid,
    /// The cells.
    pub cells: Vec<Cell>,
}

impl ProjectedRow {
    /// The cell of `column` in this row, read with `columns`; `None` when it was not read.
    pub fn cell(&self, columns: Columns, column: Column) -> Option<&Cell> {
        self.cells.get(columns.position(column)?)
    }
}

/// How many sets of columns keep their prepared statements (per connection, with and without
/// a cursor each).
pub const KEPT_SHAPES: usize = 64;

/// The statement keys (columns, and whether a cursor is given) whose statements are kept.
static KEPT: RwLock<Vec<(Columns, bool)>> = RwLock::new(Vec::new());

/// Whether the statement for `key` may be kept prepared: it already is somewhere, or there is
/// still room for it.
fn keep(key: (Columns, bool)) -> bool {
    // A poisoned lock only means another thread panicked while holding it; the list is
    // still whole (a push either happened or not).
    if KEPT
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&key)
    {
        return true;
    }
    let mut kept = KEPT.write().unwrap_or_else(|e| e.into_inner());
    if kept.contains(&key) {
        return true;
    }
    if kept.len() < KEPT_SHAPES {
        kept.push(key);
        return true;
    }
    false
}

/// The statement of a projected page.
struct PageStatement {
    /// Everything before the first parameter: the reading user's, when their own grant is
    /// read, otherwise the workspace's.
    head: String,
    /// The reading user, when their own grant is read.
    reader: Option<DbUuid>,
    workspace_id: DbUuid,
    after: Option<DbUuid>,
    limit: i64,
    /// Whether its prepared statement may be kept.
    keep: bool,
}

impl PageStatement {
    fn new(
        columns: Columns,
        workspace_id: Uuid,
        reader: Uuid,
        after: Option<Uuid>,
        limit: i64,
    ) -> Self {
        let mut head = String::with_capacity(64 + 48 * columns.0.count_ones() as usize);
        head.push_str("SELECT s.id");
        for column in columns.iter() {
            head.push_str(", ");
            head.push_str(column.sql());
            head.push_str(" AS c");
            head.push_str(&(column as u8).to_string());
        }
        head.push_str(" FROM mcp_servers s");
        // A server has at most one shared grant and one grant per user (unique indexes), so
        // neither join repeats a server and the limit counts servers.
        if columns.reads_shared_grant() {
            head.push_str(
                " LEFT JOIN mcp_oauth_grants g ON g.server_id = s.id AND g.user_id IS NULL",
            );
        }
        let reader = columns.reads_own_grant().then_some(DbUuid(reader));
        if reader.is_some() {
            head.push_str(" LEFT JOIN mcp_oauth_grants m ON m.server_id = s.id AND m.user_id = ");
        } else {
            head.push_str(" WHERE s.workspace_id = ");
        }
        PageStatement {
            head,
            reader,
            workspace_id: DbUuid(workspace_id),
            after: after.map(DbUuid),
            limit,
            keep: keep((columns, after.is_some())),
        }
    }
}

impl QueryId for PageStatement {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for PageStatement {
    type SqlType = Untyped;
}

impl<Conn> diesel::RunQueryDsl<Conn> for PageStatement {}

impl<DB> QueryFragment<DB> for PageStatement
where
    DB: Backend + HasSqlType<PortableUuid> + HasSqlType<BigInt>,
    DbUuid: ToSql<PortableUuid, DB>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> diesel::QueryResult<()> {
        if !self.keep {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql(&self.head);
        if let Some(reader) = &self.reader {
            out.push_bind_param::<PortableUuid, _>(reader)?;
            out.push_sql(" WHERE s.workspace_id = ");
        }
        out.push_bind_param::<PortableUuid, _>(&self.workspace_id)?;
        if let Some(after) = &self.after {
            out.push_sql(" AND s.id > ");
            out.push_bind_param::<PortableUuid, _>(after)?;
        }
        out.push_sql(" ORDER BY s.id LIMIT ");
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        Ok(())
    }
}

impl<DB> QueryableByName<DB> for ProjectedRow
where
    DB: Backend,
    DbUuid: FromSql<PortableUuid, DB>,
    DbTime: FromSql<PortableTimestamp, DB>,
    String: FromSql<Text, DB>,
    i32: FromSql<Integer, DB>,
    bool: FromSql<Bool, DB>,
    Transport: FromSql<Text, DB>,
    AuthType: FromSql<Text, DB>,
    CredentialMode: FromSql<Text, DB>,
    ConnectionStatus: FromSql<Text, DB>,
    AuthStatus: FromSql<Text, DB>,
    StatusReason: FromSql<Text, DB>,
    RegistrationKind: FromSql<Text, DB>,
{
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        let count = row.field_count();
        let id = Row::get(row, 0).ok_or("a projected row without its id")?;
        let id = id.value().ok_or("a projected row with a null id")?;
        let id = <DbUuid as FromSql<PortableUuid, DB>>::from_sql(id)?.0;
        let mut cells = Vec::with_capacity(count.saturating_sub(1));
        for index in 1..count {
            let field = Row::get(row, index).ok_or("a projected row ended early")?;
            // Each column is named after its place in `Column`, which says how to read it.
            let column = field
                .field_name()
                .and_then(|name| name.strip_prefix('c')?.parse::<usize>().ok())
                .and_then(|at| Column::ALL.get(at).copied())
                .ok_or("a projected column without its name")?;
            let Some(value) = field.value() else {
                cells.push(Cell::Null);
                continue;
            };
            cells.push(match column.kind() {
                Kind::Text => Cell::Text(FromSql::<Text, DB>::from_sql(value)?),
                Kind::Int => Cell::Int(FromSql::<Integer, DB>::from_sql(value)?),
                Kind::Bool => Cell::Bool(FromSql::<Bool, DB>::from_sql(value)?),
                Kind::Time => {
                    Cell::Time(<DbTime as FromSql<PortableTimestamp, DB>>::from_sql(value)?.0)
                }
                Kind::Transport => Cell::Transport(FromSql::<Text, DB>::from_sql(value)?),
                Kind::AuthType => Cell::AuthType(FromSql::<Text, DB>::from_sql(value)?),
                Kind::CredentialMode => Cell::CredentialMode(FromSql::<Text, DB>::from_sql(value)?),
                Kind::ConnectionStatus => {
                    Cell::ConnectionStatus(FromSql::<Text, DB>::from_sql(value)?)
                }
                Kind::AuthStatus => Cell::AuthStatus(FromSql::<Text, DB>::from_sql(value)?),
                Kind::StatusReason => Cell::StatusReason(FromSql::<Text, DB>::from_sql(value)?),
                Kind::Registration => Cell::Registration(FromSql::<Text, DB>::from_sql(value)?),
            });
        }
        Ok(ProjectedRow { id, cells })
    }
}

/// A page of a workspace's servers in id (creation) order, after `after` when given, each as
/// the `columns` chosen, with `reader`'s own grant where they are chosen: one statement, one
/// read on the caller's thread on SQLite ([`super::read_here`]).
pub async fn page(
    conn: &mut DbConn,
    workspace_id: Uuid,
    reader: Uuid,
    columns: Columns,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ProjectedRow>, DbError> {
    let statement = PageStatement::new(columns, workspace_id, reader, after, limit);
    Ok(match conn {
        DbConn::Postgres(c) => {
            let c: &mut diesel_async::AsyncPgConnection = c;
            diesel_async::RunQueryDsl::load(statement, c).await?
        }
        // At most 100 rows: read on the caller's thread.
        DbConn::Sqlite(c) => {
            super::read_here(c, move |c| diesel::RunQueryDsl::load(statement, c)).await?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_placed_in_column_order_whatever_the_order_added() {
        let mut columns = Columns::default();
        for column in [
            Column::GrantExpiresAt,
            Column::Url,
            Column::Name,
            Column::Url,
        ] {
            columns.add(column);
        }
        assert_eq!(columns.position(Column::Name), Some(0));
        assert_eq!(columns.position(Column::Url), Some(1));
        assert_eq!(columns.position(Column::GrantExpiresAt), Some(2));
        assert_eq!(columns.position(Column::Description), None);
        assert!(columns.reads_shared_grant());
        assert!(!columns.reads_own_grant());
        let mut without_grant = Columns::default();
        without_grant.add(Column::UpdatedAt);
        assert!(!without_grant.reads_shared_grant());
        without_grant.add(Column::MyScopes);
        assert!(without_grant.reads_own_grant());
        assert!(!without_grant.reads_shared_grant());
        // Every column has a bit of its own.
        assert!(Column::ALL.len() <= 64);
        for (at, column) in Column::ALL.iter().enumerate() {
            assert_eq!(*column as usize, at);
        }
    }

    #[test]
    fn only_so_many_statements_are_kept() {
        // Column sets no other test reads: bits above every column's.
        let keys: Vec<(Columns, bool)> = (0..3 * KEPT_SHAPES as u64)
            .map(|n| (Columns((n + 1) << 40), n % 2 == 0))
            .collect();
        let kept: Vec<bool> = keys.iter().map(|key| keep(*key)).collect();
        let count = kept.iter().filter(|k| **k).count();
        assert!(count <= KEPT_SHAPES, "{count} kept");
        assert!(count < keys.len());
        // A statement keeps its answer: kept once, kept always, and the others never.
        for (key, was) in keys.iter().zip(&kept) {
            assert_eq!(keep(*key), *was);
        }
    }

    #[test]
    fn the_statement_names_each_column_after_its_place() {
        let mut columns = Columns::default();
        columns.add(Column::Name);
        columns.add(Column::GrantIssuer);
        let statement = PageStatement::new(columns, Uuid::nil(), Uuid::max(), None, 3);
        assert_eq!(
            statement.head,
            "SELECT s.id, s.name AS c0, g.issuer AS c26 FROM mcp_servers s \
             LEFT JOIN mcp_oauth_grants g ON g.server_id = s.id AND g.user_id IS NULL \
             WHERE s.workspace_id = "
        );
        assert_eq!(statement.reader, None);
        let mut plain = Columns::default();
        plain.add(Column::ToolCount);
        let statement = PageStatement::new(plain, Uuid::nil(), Uuid::max(), Some(Uuid::nil()), 3);
        assert_eq!(
            statement.head,
            "SELECT s.id, s.tool_count AS c21 FROM mcp_servers s WHERE s.workspace_id = "
        );
        let mut own = Columns::default();
        own.add(Column::MyScopes);
        let statement = PageStatement::new(own, Uuid::nil(), Uuid::max(), None, 3);
        assert_eq!(
            statement.head,
            "SELECT s.id, m.granted_scopes AS c33 FROM mcp_servers s \
             LEFT JOIN mcp_oauth_grants m ON m.server_id = s.id AND m.user_id = "
        );
        assert_eq!(statement.reader, Some(DbUuid(Uuid::max())));
    }
}
