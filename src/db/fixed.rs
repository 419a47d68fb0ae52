//! Statements whose SQL text is written once per process, on PostgreSQL.
//!
//! diesel-async writes a statement's SQL text for every execution before it looks for the
//! prepared statement, even when the statement's type alone finds it. For a row of many
//! columns that is a quoted identifier (an allocation each) per column, every time: the read
//! of a tool call's server was about a tenth of the call's instructions, and its grant's (for
//! a server behind OAuth) is of the same kind. A statement here is
//! the same query, written by diesel once, kept cut at its bind placeholders, and put back
//! together around the binds of each execution: the same text, the same binds, the same
//! prepared statement.

use std::sync::OnceLock;

use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::{AstPass, Query, QueryBuilder as _, QueryFragment, QueryId};
use diesel::result::Error as QueryError;
use diesel::sql_types::BigInt;
use uuid::Uuid;

use super::DbUuid;
use super::models::{McpServerRow, OauthGrantRow};
use super::schema::{mcp_oauth_grants, mcp_servers};
use super::types::PortableUuid;

/// A statement's SQL as diesel writes it for PostgreSQL, cut at its bind placeholders
/// (`$1`, `$2`, …): one more part than it has binds.
struct Text {
    parts: Vec<Box<str>>,
}

impl Text {
    /// The text of `query`, which has `binds` binds; `None` if it does not write as expected.
    fn of(query: &impl QueryFragment<Pg>, binds: usize) -> Option<Text> {
        let mut builder = PgQueryBuilder::default();
        query.to_sql(&mut builder, &Pg).ok()?;
        let sql = builder.finish();
        let mut parts = Vec::with_capacity(binds + 1);
        let mut rest = sql.as_str();
        for number in 1..=binds {
            let placeholder = format!("${number}");
            let at = rest.find(&placeholder)?;
            let after = &rest[at + placeholder.len()..];
            if after.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            parts.push(rest[..at].into());
            rest = after;
        }
        if rest.contains('$') {
            return None;
        }
        parts.push(rest.into());
        Some(Text { parts })
    }

    /// The parts of `text`, written by `write` the first time.
    fn parts(
        text: &'static OnceLock<Option<Text>>,
        write: impl FnOnce() -> Option<Text>,
    ) -> Result<&'static [Box<str>], QueryError> {
        text.get_or_init(write)
            .as_ref()
            .map(|text| text.parts.as_slice())
            .ok_or_else(unwritten)
    }
}

/// A bind of a kept statement.
enum Bind<'b> {
    Id(&'b DbUuid),
    Int(&'b i64),
}

/// Write a kept statement: its parts around its binds, which must be one fewer.
fn write<'b>(
    mut out: AstPass<'_, 'b, Pg>,
    parts: &[Box<str>],
    binds: &[Bind<'b>],
) -> diesel::QueryResult<()> {
    let (first, rest) = parts.split_first().ok_or_else(unwritten)?;
    if rest.len() != binds.len() {
        return Err(unwritten());
    }
    out.push_sql(first);
    for (bind, part) in binds.iter().zip(rest) {
        match bind {
            Bind::Id(id) => out.push_bind_param::<PortableUuid, _>(*id)?,
            Bind::Int(n) => out.push_bind_param::<BigInt, _>(*n)?,
        }
        out.push_sql(part);
    }
    Ok(())
}

const ONE: i64 = 1;

/// A statement of this module: found by its type, its rows of the SQL type of `$query`, the
/// diesel query whose text it keeps.
macro_rules! kept_statement {
    ($name:ty, $query:ty) => {
        impl QueryId for $name {
            type QueryId = Self;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl Query for $name {
            type SqlType = <$query as Query>::SqlType;
        }
    };
}

/// The server with this id, as [`server_query`] reads it.
pub struct ServerById(pub DbUuid);

type ServerQuery = diesel::dsl::Limit<
    diesel::dsl::Select<
        diesel::dsl::Find<mcp_servers::table, DbUuid>,
        diesel::dsl::AsSelect<McpServerRow, Pg>,
    >,
>;

kept_statement!(ServerById, ServerQuery);

impl QueryFragment<Pg> for ServerById {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        use diesel::prelude::*;
        static TEXT: OnceLock<Option<Text>> = OnceLock::new();
        let parts = Text::parts(&TEXT, || {
            let query: ServerQuery = server_query!(Uuid::nil());
            Text::of(&query, 2)
        })?;
        write(out, parts, &[Bind::Id(&self.0), Bind::Int(&ONE)])
    }
}

/// The grants of a server, as [`grant_read`] starts them.
type GrantsOfServer = diesel::dsl::Select<
    diesel::dsl::Filter<
        mcp_oauth_grants::table,
        diesel::dsl::Eq<mcp_oauth_grants::server_id, DbUuid>,
    >,
    diesel::dsl::AsSelect<OauthGrantRow, Pg>,
>;
type UserGrantQuery = diesel::dsl::Limit<
    diesel::dsl::Filter<GrantsOfServer, diesel::dsl::Eq<mcp_oauth_grants::user_id, DbUuid>>,
>;
type SharedGrantQuery = diesel::dsl::Limit<
    diesel::dsl::Filter<GrantsOfServer, diesel::dsl::IsNull<mcp_oauth_grants::user_id>>,
>;

fn grants_of_server() -> GrantsOfServer {
    use diesel::prelude::*;
    mcp_oauth_grants::table
        .filter(mcp_oauth_grants::server_id.eq(DbUuid(Uuid::nil())))
        .select(OauthGrantRow::as_select())
}

/// A user's grant of a server, as [`grant_read`] reads it with `first`.
pub struct UserGrant {
    pub server: DbUuid,
    pub user: DbUuid,
}

kept_statement!(UserGrant, UserGrantQuery);

impl QueryFragment<Pg> for UserGrant {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        use diesel::prelude::*;
        static TEXT: OnceLock<Option<Text>> = OnceLock::new();
        let parts = Text::parts(&TEXT, || {
            let query: UserGrantQuery = grants_of_server()
                .filter(mcp_oauth_grants::user_id.eq(DbUuid(Uuid::nil())))
                .limit(1);
            Text::of(&query, 3)
        })?;
        let binds = [
            Bind::Id(&self.server),
            Bind::Id(&self.user),
            Bind::Int(&ONE),
        ];
        write(out, parts, &binds)
    }
}

/// The workspace's shared grant of a server, as [`grant_read`] reads it with `first`.
pub struct SharedGrant(pub DbUuid);

kept_statement!(SharedGrant, SharedGrantQuery);

impl QueryFragment<Pg> for SharedGrant {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        use diesel::prelude::*;
        static TEXT: OnceLock<Option<Text>> = OnceLock::new();
        let parts = Text::parts(&TEXT, || {
            let query: SharedGrantQuery = grants_of_server()
                .filter(mcp_oauth_grants::user_id.is_null())
                .limit(1);
            Text::of(&query, 2)
        })?;
        write(out, parts, &[Bind::Id(&self.0), Bind::Int(&ONE)])
    }
}

fn unwritten() -> QueryError {
    QueryError::QueryBuilderError("a statement's text did not write".into())
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    use super::*;

    #[test]
    fn the_server_read_writes_as_its_query() {
        let id = Uuid::from_u128(7);
        let ours = diesel::debug_query::<Pg, _>(&ServerById(DbUuid(id))).to_string();
        let query: ServerQuery = server_query!(id);
        let theirs = diesel::debug_query::<Pg, _>(&query).to_string();
        assert_eq!(ours, theirs);
        assert!(ours.contains("LIMIT $2"), "{ours}");
    }

    #[test]
    fn the_grant_reads_write_as_their_queries() {
        let (server, user) = (Uuid::from_u128(7), Uuid::from_u128(9));
        let theirs = |user: Option<Uuid>| {
            grant_read!(server, user, |query| diesel::debug_query::<Pg, _>(
                &query.limit(1)
            )
            .to_string())
        };
        let own = UserGrant {
            server: DbUuid(server),
            user: DbUuid(user),
        };
        let ours = diesel::debug_query::<Pg, _>(&own).to_string();
        assert_eq!(ours, theirs(Some(user)));
        assert!(ours.contains("LIMIT $3"), "{ours}");
        let shared = diesel::debug_query::<Pg, _>(&SharedGrant(DbUuid(server))).to_string();
        assert_eq!(shared, theirs(None));
        assert!(shared.contains("IS NULL"), "{shared}");
    }

    #[test]
    fn a_text_is_cut_at_its_placeholders_only() {
        let parts = |sql: &str, binds| {
            struct Raw<'a>(&'a str);
            impl QueryFragment<Pg> for Raw<'_> {
                fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                    out.push_sql(self.0);
                    Ok(())
                }
            }
            Text::of(&Raw(sql), binds)
                .map(|text| text.parts.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            parts("a = $1 AND b = $2", 2),
            Some(vec!["a = ".into(), " AND b = ".into(), String::new()])
        );
        assert_eq!(parts("a = $1", 2), None);
        assert_eq!(parts("a = $1 AND b = $2", 1), None);
        assert_eq!(parts("a = $12", 1), None);
    }
}
