//! Portable SQL types shared by both backends.
//!
//! One hand-written schema serves SQLite and PostgreSQL, so ids and timestamps use custom SQL
//! types that map to the native type on each backend: a UUID is `uuid` on PostgreSQL and a
//! 16-byte BLOB on SQLite; a timestamp is `timestamptz` on PostgreSQL and fixed-width RFC 3339
//! text on SQLite (fixed width so that text order is time order).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sqlite::{Sqlite, SqliteValue};
use uuid::Uuid;

/// SQL type of every id column.
#[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId, Debug, Clone, Copy)]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
#[diesel(sqlite_type(name = "Binary"))]
pub struct PortableUuid;

/// SQL type of every timestamp column.
#[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId, Debug, Clone, Copy)]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
#[diesel(sqlite_type(name = "Text"))]
pub struct PortableTimestamp;

/// A UUID as stored in the database.
#[derive(AsExpression, FromSqlRow, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[diesel(sql_type = PortableUuid)]
pub struct DbUuid(pub Uuid);

/// A UTC timestamp as stored in the database.
#[derive(AsExpression, FromSqlRow, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[diesel(sql_type = PortableTimestamp)]
pub struct DbTime(pub DateTime<Utc>);

impl From<Uuid> for DbUuid {
    fn from(id: Uuid) -> Self {
        DbUuid(id)
    }
}

impl From<DbUuid> for Uuid {
    fn from(id: DbUuid) -> Self {
        id.0
    }
}

impl From<DateTime<Utc>> for DbTime {
    fn from(at: DateTime<Utc>) -> Self {
        DbTime(at)
    }
}

impl From<DbTime> for DateTime<Utc> {
    fn from(at: DbTime) -> Self {
        at.0
    }
}

impl ToSql<PortableUuid, Pg> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <Uuid as ToSql<diesel::sql_types::Uuid, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<PortableUuid, Pg> for DbUuid {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <Uuid as FromSql<diesel::sql_types::Uuid, Pg>>::from_sql(value).map(DbUuid)
    }
}

impl ToSql<PortableUuid, Sqlite> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.as_bytes().as_slice());
        Ok(IsNull::No)
    }
}

impl FromSql<PortableUuid, Sqlite> for DbUuid {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        Ok(DbUuid(Uuid::from_slice(value.read_blob())?))
    }
}

impl ToSql<PortableTimestamp, Pg> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<diesel::sql_types::Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<PortableTimestamp, Pg> for DbTime {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let micros: [u8; 8] = value
            .as_bytes()
            .try_into()
            .map_err(|_| "a timestamptz of other than 8 bytes")?;
        pg_time(i64::from_be_bytes(micros))
            .map(DbTime)
            .ok_or_else(|| "a timestamptz out of range".into())
    }
}

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The instant of a binary `timestamptz` (microseconds since PostgreSQL's epoch): the value
/// diesel's own reading gives, without its general date arithmetic, which a page pays for in
/// every row. `None` where chrono has no such instant (PostgreSQL's infinities among them).
fn pg_time(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros.checked_add(PG_EPOCH_MICROS)?)
}

impl ToSql<PortableTimestamp, Sqlite> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(sqlite_text(self.0));
        Ok(IsNull::No)
    }
}

impl FromSql<PortableTimestamp, Sqlite> for DbTime {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        parse_sqlite_text(value.read_text()).map(DbTime)
    }
}

/// The SQLite text form: microsecond precision, always `Z`, so every value has the same width.
fn sqlite_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_sqlite_text(text: &str) -> deserialize::Result<DateTime<Utc>> {
    if let Some(at) = parse_fixed_width(text) {
        return Ok(at);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    // SQLite's own CURRENT_TIMESTAMP form, in case a row was written by hand.
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")?;
    Ok(naive.and_utc())
}

/// The form [`sqlite_text`] writes (`2026-01-02T03:04:05.123456Z`), read without a general
/// parser: every row of a page holds several. `None` for anything else, which the general
/// parsers then read.
fn parse_fixed_width(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let shape = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ];
    if b.len() != 27 || shape.iter().any(|&(at, byte)| b[at] != byte) {
        return None;
    }
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, &digit| {
            digit
                .is_ascii_digit()
                .then(|| n * 10 + u32::from(digit - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(number(0, 4)?).ok()?,
        number(5, 7)?,
        number(8, 10)?,
    )?;
    let time = NaiveTime::from_hms_micro_opt(
        number(11, 13)?,
        number(14, 16)?,
        number(17, 19)?,
        number(20, 26)?,
    )?;
    Some(date.and_time(time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_fixed_width_form_reads_as_the_general_parser_reads_it() {
        for text in [
            "2026-01-02T03:04:05.123456Z",
            "1970-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "2024-02-29T12:00:00.000001Z",
        ] {
            let general = DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc));
            assert_eq!(parse_fixed_width(text), general.ok(), "{text}");
        }
        // Anything else is left to the general parsers, which still read the valid ones.
        for text in [
            "2026-02-30T03:04:05.123456Z",
            "2026-01-02T24:04:05.123456Z",
            "2026-01-02T03:04:60.123456Z",
            "2026-01-02T03:04:05.12345aZ",
            "2026-01-02T03:04:05.123456+00:00",
            "2026-01-02T03:04:05Z",
            "+026-01-02T03:04:05.123456Z",
        ] {
            assert_eq!(parse_fixed_width(text), None, "{text}");
        }
        assert!(parse_sqlite_text("2026-01-02T03:04:05Z").is_ok());
        assert!(parse_sqlite_text("2026-01-02T03:04:05.123456+00:00").is_ok());
        assert!(parse_sqlite_text("2026-02-30T03:04:05.123456Z").is_err());
    }

    #[test]
    fn sqlite_text_is_fixed_width_and_round_trips() {
        let a = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .unwrap_or_default();
        let b = a + chrono::Duration::microseconds(1_234_567);
        let (ta, tb) = (sqlite_text(a), sqlite_text(b));
        assert_eq!(ta.len(), tb.len());
        assert!(ta < tb);
        assert_eq!(parse_sqlite_text(&tb).ok(), Some(b));
        assert!(parse_sqlite_text("2026-01-02 03:04:05").is_ok());
    }

    #[test]
    fn a_binary_timestamptz_reads_as_diesel_reads_it() {
        // Diesel's reading: its epoch plus the microseconds, in chrono's general arithmetic.
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .unwrap();
        let diesel = |micros: i64| {
            epoch
                .checked_add_signed(chrono::Duration::microseconds(micros))
                .map(|at| at.and_utc())
        };
        // A walk over some 20,000 years either side of the epoch, every microsecond count
        // of every length.
        let mut micros = -630_000_000_000_000_000_i64;
        let mut step = 1_i64;
        while micros < 630_000_000_000_000_000 {
            for at in [micros, micros + 1, micros - 1, -micros] {
                assert_eq!(pg_time(at), diesel(at), "{at}");
            }
            micros += 7_777_777_777_777 + step;
            step = (step * 31 + 7) % 1_000_000;
        }
        for at in [
            0,
            1,
            -1,
            i64::MAX,
            i64::MIN,
            i64::MAX - PG_EPOCH_MICROS,
            i64::MIN + 1,
        ] {
            assert_eq!(pg_time(at), diesel(at), "{at}");
        }
        assert_eq!(pg_time(i64::MAX), None);
        assert_eq!(pg_time(i64::MIN), None);
    }
}

/// A text column holding one of a fixed set of values, read and written as an enum on both
/// backends. The macro declares the enum with its stored texts; an unknown text read from the
/// database is an error, never a silent default.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, AsExpression, FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value a stored text names.
            pub fn from_text(text: &str) -> Option<$name> {
                $name::from_bytes(text.as_bytes())
            }

            /// The value a stored text names, read from its bytes: a text equal to one of
            /// the names is valid UTF-8 without being checked first.
            pub fn from_bytes(bytes: &[u8]) -> Option<$name> {
                match bytes {
                    $(bytes if bytes == $text.as_bytes() => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::from_text(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        concat!("unknown ", stringify!($name), " {:?}"),
                        text
                    ))
                })
            }
        }

        impl ToSql<diesel::sql_types::Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<diesel::sql_types::Text, Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl FromSql<diesel::sql_types::Text, Pg> for $name {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                let bytes = value.as_bytes();
                $name::from_bytes(bytes).ok_or_else(|| {
                    let text = String::from_utf8_lossy(bytes);
                    format!(concat!("unknown ", stringify!($name), " {:?}"), text).into()
                })
            }
        }

        impl ToSql<diesel::sql_types::Text, Sqlite> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
                out.set_value(self.as_str());
                Ok(IsNull::No)
            }
        }

        impl FromSql<diesel::sql_types::Text, Sqlite> for $name {
            fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
                let text = value.read_text();
                $name::from_text(text).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " {:?}"), text).into()
                })
            }
        }
    };
}

text_enum! {
    /// The MCP transport a server speaks.
    pub enum Transport {
        /// Streamable HTTP (the current MCP transport).
        StreamableHttp => "streamable_http",
        /// The older HTTP+SSE transport (revision 2024-11-05).
        Sse => "sse",
    }
}

text_enum! {
    /// How Switchboard authenticates to a server.
    pub enum AuthType {
        /// No authentication.
        None => "none",
        /// Static headers only.
        Headers => "headers",
        /// OAuth 2.1 (static headers are still sent, but never override `Authorization`).
        Oauth => "oauth",
        /// Not known yet: detection could not reach the server. It runs again on refresh, on a
        /// URL change and on request.
        Undetected => "undetected",
    }
}

text_enum! {
    /// Whether Switchboard can currently talk to a server.
    pub enum ConnectionStatus {
        /// The last contact succeeded.
        Connected => "connected",
        /// Not connected yet, or reset by a change.
        Disconnected => "disconnected",
        /// Repeated failures.
        Error => "error",
    }
}

text_enum! {
    /// Where a server's credentials stand.
    pub enum AuthStatus {
        /// The server needs no authorization (static headers, none, or not detected yet).
        NotRequired => "not_required",
        /// A usable OAuth grant is stored.
        Authorized => "authorized",
        /// Someone must run the OAuth flow.
        AuthorizationRequired => "authorization_required",
        /// A flow is in progress and no usable grant is stored.
        Authorizing => "authorizing",
        /// The last refresh failed for a reason other than a rejected grant.
        RefreshFailed => "refresh_failed",
        /// The server asked for more scopes than were granted.
        InsufficientScope => "insufficient_scope",
        /// The server rejected the configured static headers.
        HeadersRejected => "headers_rejected",
    }
}

text_enum! {
    /// What a user is.
    pub enum UserKind {
        /// A person.
        Human => "human",
        /// A non-human account a product's backend acts with (see `domain::onboarding`).
        ServiceAccount => "service_account",
    }
}

text_enum! {
    /// A role in a workspace, in increasing order of power.
    pub enum Role {
        /// Reads and calls tools.
        Viewer => "viewer",
        /// Also creates and updates servers and starts OAuth.
        Editor => "editor",
        /// Also deletes servers and manages members.
        Admin => "admin",
    }
}

text_enum! {
    /// Whose OAuth credentials a server is reached with.
    pub enum CredentialMode {
        /// One grant, shared by the whole workspace: whoever authorized, every member's calls
        /// act as that account upstream.
        Shared => "shared",
        /// Each member connects their own account, and their calls use it.
        PerUser => "per_user",
        /// The workspace's machine client: tokens from the client-credentials grant, no user.
        ClientCredentials => "client_credentials",
    }
}

text_enum! {
    /// How an OAuth client was registered with an authorization server.
    pub enum RegistrationKind {
        /// The server's pre-registered client id.
        PreRegistered => "pre_registered",
        /// A Client ID Metadata Document URL.
        MetadataDocument => "metadata_document",
        /// RFC 7591 Dynamic Client Registration.
        Dynamic => "dynamic",
        /// A machine client entered with the server (client-credentials grant).
        ClientCredentials => "client_credentials",
    }
}

text_enum! {
    /// Why a server's status last changed.
    pub enum StatusReason {
        /// The server was registered.
        Created => "created",
        /// Its URL changed.
        UrlChanged => "url_changed",
        /// Its OAuth client credentials changed.
        CredentialsChanged => "credentials_changed",
        /// Its auth type changed.
        AuthTypeChanged => "auth_type_changed",
        /// Its static headers changed.
        HeadersChanged => "headers_changed",
        /// How it authenticates was detected.
        Detected => "detected",
        /// Detection could not reach it (or got no answer it understood).
        DetectionFailed => "detection_failed",
        /// It was enabled.
        Enabled => "enabled",
        /// It was disabled.
        Disabled => "disabled",
        /// A call or a listing succeeded.
        Connected => "connected",
        /// It could not be reached, or answered with an error.
        Unreachable => "unreachable",
        /// It rejected the configured static headers.
        HeadersRejected => "headers_rejected",
        /// It needs an OAuth authorization that is missing or no longer accepted.
        AuthorizationRequired => "authorization_required",
        /// Someone started the OAuth flow.
        FlowStarted => "flow_started",
        /// An OAuth flow expired without completing.
        FlowExpired => "flow_expired",
        /// The OAuth flow completed.
        Authorized => "authorized",
        /// The access token was refreshed.
        TokenRefreshed => "token_refreshed",
        /// The authorization server rejected the refresh token.
        RefreshRejected => "refresh_rejected",
        /// The authorization server rejected the client registration.
        ClientRejected => "client_rejected",
        /// A token refresh failed for another reason; the tokens were kept.
        RefreshFailed => "refresh_failed",
        /// The stored tokens can no longer be read (a lost key).
        TokensUnreadable => "tokens_unreadable",
        /// The server needs more scopes than were granted.
        InsufficientScope => "insufficient_scope",
        /// The OAuth authorization was withdrawn.
        Disconnected => "disconnected",
        /// The authorization server refused the authorization.
        ProviderError => "provider_error",
        /// The server or the authorization server is not at a secure address.
        InsecureUrl => "insecure_url",
        /// The authorization server did not issue tokens for the code.
        TokenExchangeFailed => "token_exchange_failed",
        /// The server lists more tools than one server may have.
        TooManyTools => "too_many_tools",
        /// The server's tool catalogue is larger than one server may have.
        CatalogueTooLarge => "catalogue_too_large",
        /// The server said its tools changed, and they were listed again.
        ToolsChanged => "tools_changed",
        /// The server was deleted (only in the last status event).
        Deleted => "deleted",
    }
}

#[cfg(test)]
mod enum_tests {
    use super::*;

    #[test]
    fn every_stored_text_reads_back_and_unknown_text_is_refused() {
        for value in StatusReason::ALL {
            assert_eq!(StatusReason::from_text(value.as_str()), Some(*value));
            let json = serde_json::to_string(value).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", value.as_str()));
            assert_eq!(
                serde_json::from_str::<StatusReason>(&json).ok(),
                Some(*value)
            );
        }
        for value in AuthStatus::ALL {
            assert_eq!(AuthStatus::from_text(value.as_str()), Some(*value));
        }
        assert_eq!(AuthType::from_text("bearer"), None);
        // Bytes that are no name, UTF-8 or not, name nothing.
        assert_eq!(AuthType::from_bytes(b"oauth\xff"), None);
        assert_eq!(AuthType::from_bytes(b"OAUTH"), None);
        assert_eq!(AuthType::from_bytes(b"oauth"), Some(AuthType::Oauth));
        assert!(serde_json::from_str::<Role>("\"owner\"").is_err());
        assert!(Role::Admin > Role::Editor && Role::Editor > Role::Viewer);
    }
}
