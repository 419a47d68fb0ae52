//! Every sealed column, declared once.
//!
//! A sealed value's additional authenticated data is its column's sealing name (table and
//! column), and its row id, so the same three names must be used to seal it, to open it and to
//! re-seal it after a key rotation. A sealing name is where the column first lived: it does not
//! follow a table that is split or renamed, so values sealed before stay readable (rows carried
//! over keep their ids). They are declared here and nowhere else: code that seals or opens a value asks
//! its column for the context ([`SealedColumn::context`]), and `rotate-key` walks [`ALL`]. A
//! test fails when a `*_sealed` column of the schema is missing from [`ALL`].

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::types::PortableUuid;
use super::{DbConn, DbError, DbUuid};
use crate::crypto::SealContext;

/// A column holding sealed values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedColumn {
    /// The table.
    pub table: &'static str,
    /// The column.
    pub column: &'static str,
    /// The id column whose value, as text, is the row part of the AAD.
    id_column: &'static str,
    /// The table and column names of the AAD.
    sealing_name: (&'static str, &'static str),
}

impl SealedColumn {
    /// The sealing context of this column's value in the row `row_id`.
    pub fn context(self, row_id: &str) -> SealContext<'_> {
        SealContext::new(self.sealing_name.0, self.sealing_name.1, row_id)
    }
}

const fn sealed(
    table: &'static str,
    column: &'static str,
    id_column: &'static str,
) -> SealedColumn {
    SealedColumn {
        table,
        column,
        id_column,
        sealing_name: (table, column),
    }
}

/// A column that moved: sealed under the name of the table and column it first lived in.
const fn moved(
    table: &'static str,
    column: &'static str,
    id_column: &'static str,
    first_home: (&'static str, &'static str),
) -> SealedColumn {
    SealedColumn {
        table,
        column,
        id_column,
        sealing_name: first_home,
    }
}

/// A server's static headers (JSON of name and value pairs).
pub const SERVER_HEADERS: SealedColumn = sealed("mcp_servers", "headers_sealed", "id");
/// A server's pre-registered OAuth client secret.
pub const SERVER_CLIENT_SECRET: SealedColumn =
    sealed("mcp_servers", "oauth_client_secret_sealed", "id");
/// A client registration with an authorization server.
pub const REGISTRATION_CLIENT: SealedColumn = moved(
    "mcp_oauth_registrations",
    "client_information_sealed",
    "id",
    ("mcp_server_oauth", "client_information_sealed"),
);
/// A machine client's private key.
pub const SERVER_CLIENT_KEY: SealedColumn = sealed("mcp_servers", "oauth_client_key_sealed", "id");
/// A grant's tokens.
pub const GRANT_TOKENS: SealedColumn = moved(
    "mcp_oauth_grants",
    "tokens_sealed",
    "id",
    ("mcp_server_oauth", "tokens_sealed"),
);
/// A pending flow's PKCE verifier.
pub const FLOW_VERIFIER: SealedColumn = sealed("mcp_oauth_flows", "code_verifier_sealed", "id");
/// A pending flow's authorization URL (it carries the state).
pub const FLOW_AUTHORIZATION_URL: SealedColumn =
    sealed("mcp_oauth_flows", "authorization_url_sealed", "id");
/// A pending flow's client registration.
pub const FLOW_CLIENT: SealedColumn = sealed("mcp_oauth_flows", "client_information_sealed", "id");

/// Every sealed column.
pub const ALL: [SealedColumn; 8] = [
    SERVER_HEADERS,
    SERVER_CLIENT_SECRET,
    SERVER_CLIENT_KEY,
    REGISTRATION_CLIENT,
    GRANT_TOKENS,
    FLOW_VERIFIER,
    FLOW_AUTHORIZATION_URL,
    FLOW_CLIENT,
];

/// One sealed value and the id of its row.
#[derive(QueryableByName, Debug, Clone)]
pub struct SealedCell {
    /// The row's id.
    #[diesel(sql_type = PortableUuid)]
    pub id: DbUuid,
    /// The sealed value.
    #[diesel(sql_type = Text)]
    pub value: String,
}

/// Up to `limit` sealed values of `column`, in row order, after the row `after`.
pub async fn batch(
    conn: &mut DbConn,
    column: SealedColumn,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<SealedCell>, DbError> {
    let SealedColumn {
        table,
        column,
        id_column: id,
        ..
    } = column;
    // The names are compile-time constants of this module, never input.
    let after = after.unwrap_or(Uuid::nil());
    let cells = match conn {
        DbConn::Postgres(c) => {
            let c: &mut diesel_async::AsyncPgConnection = c;
            diesel::sql_query(format!(
                "SELECT {id} AS id, {column} AS value FROM {table} \
                 WHERE {column} IS NOT NULL AND {id} > $1 ORDER BY {id} LIMIT $2"
            ))
            .bind::<PortableUuid, _>(DbUuid(after))
            .bind::<diesel::sql_types::BigInt, _>(limit)
            .load(c)
            .await?
        }
        DbConn::Sqlite(c) => {
            let c: &mut super::SqliteConn = c;
            diesel::sql_query(format!(
                "SELECT {id} AS id, {column} AS value FROM {table} \
                 WHERE {column} IS NOT NULL AND {id} > ? ORDER BY {id} LIMIT ?"
            ))
            .bind::<PortableUuid, _>(DbUuid(after))
            .bind::<diesel::sql_types::BigInt, _>(limit)
            .load(c)
            .await?
        }
    };
    Ok(cells)
}

/// Replace the sealed value of one row, but only if it is still `expected`: a value written
/// meanwhile (a refreshed token, say) is never overwritten by an older one. Returns whether it
/// was replaced.
pub async fn replace(
    conn: &mut DbConn,
    column: SealedColumn,
    row: Uuid,
    expected: &str,
    value: &str,
) -> Result<bool, DbError> {
    let SealedColumn {
        table,
        column,
        id_column: id,
        ..
    } = column;
    let changed = match conn {
        DbConn::Postgres(c) => {
            let c: &mut diesel_async::AsyncPgConnection = c;
            diesel::sql_query(format!(
                "UPDATE {table} SET {column} = $1 WHERE {id} = $2 AND {column} = $3"
            ))
            .bind::<Text, _>(value)
            .bind::<PortableUuid, _>(DbUuid(row))
            .bind::<Text, _>(expected)
            .execute(c)
            .await?
        }
        DbConn::Sqlite(c) => {
            let c: &mut super::SqliteConn = c;
            diesel::sql_query(format!(
                "UPDATE {table} SET {column} = ? WHERE {id} = ? AND {column} = ?"
            ))
            .bind::<Text, _>(value)
            .bind::<PortableUuid, _>(DbUuid(row))
            .bind::<Text, _>(expected)
            .execute(c)
            .await?
        }
    };
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `*_sealed` column of the schema, as (table, column).
    fn sealed_columns_of_the_schema() -> Vec<(String, String)> {
        let schema = include_str!("schema.rs");
        let mut found = Vec::new();
        let mut table = None;
        for line in schema.lines().map(str::trim) {
            if let Some(name) = line.strip_suffix('{').map(str::trim)
                && let Some((name, _)) = name.split_once(" (")
            {
                table = Some(name.trim().to_owned());
            }
            if let Some((column, _)) = line.split_once(" ->")
                && column.ends_with("_sealed")
                && let Some(table) = &table
            {
                found.push((table.clone(), column.trim().to_owned()));
            }
        }
        found
    }

    #[test]
    fn every_sealed_column_of_the_schema_is_registered() {
        let schema = sealed_columns_of_the_schema();
        assert!(schema.len() >= 7, "the schema scan found {schema:?}");
        for (table, column) in &schema {
            assert!(
                ALL.iter().any(|c| c.table == table && c.column == column),
                "{table}.{column} is sealed but missing from db::sealed::ALL"
            );
        }
        for registered in ALL {
            assert!(
                schema
                    .iter()
                    .any(|(t, c)| t == registered.table && c == registered.column),
                "{registered:?} is not a column of the schema"
            );
        }
    }
}
