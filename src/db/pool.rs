//! Connection pools for both backends and the `with_conn!` dispatch macro.
//!
//! diesel-async has no async `MultiConnection`, so the backend is a runtime enum: a URL starting
//! with `postgres://` or `postgresql://` selects PostgreSQL (pure-Rust driver, TLS through
//! rustls whenever `sslmode` asks for it), anything else is a SQLite path (`sqlite://path`,
//! `sqlite:path` or a bare path). Every query body passed to `with_conn!` is compiled once per
//! backend, so the compiler proves each query is valid on both.
//!
//! Every connection counts the statements it runs into one shared counter; tests and the
//! benchmark read it to prove that a request costs a constant number of queries.
//!
//! When traces are exported, every statement run inside a span gets a span of its own, named
//! by its kind and table only (`SELECT mcp_servers`): never the SQL text, which may hold
//! literals, nor a bound value. SQLite statements run on blocking threads, but for the short
//! reads of the hot requests ([`read_here`]); the connection's runtime ([`SpanCarrying`])
//! takes the caller's span along, so they have the same parent as PostgreSQL's, which run on
//! the caller's task.

use std::cell::Cell;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::{
    SpawnBlocking, SyncConnectionWrapper, SyncTransactionManagerWrapper,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection, TransactionManager};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::DbError;

/// The SQLite connection type: diesel's sync connection run on blocking threads, which carry
/// the caller's span ([`SpanCarrying`]).
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, SpanCarrying>;

/// The runtime a wrapped connection spawns its blocking work on.
trait RuntimeOf {
    type Runtime;
}

impl<C, S> RuntimeOf for SyncConnectionWrapper<C, S> {
    type Runtime = S;
}

/// diesel-async's own tokio runtime for wrapped connections (its type is not exported by name).
type TokioBlocking = <SyncConnectionWrapper<SqliteConnection> as RuntimeOf>::Runtime;

/// diesel-async's tokio runtime for SQLite's blocking work, which runs that work in the span
/// of the task that asked for it while traces are exported, so a statement's span has the
/// caller's span as parent. Work handed over by [`read_here`] runs on the caller's thread.
pub struct SpanCarrying(TokioBlocking);

thread_local! {
    /// Set by [`read_here`] for the one piece of work it hands over.
    static HERE: Cell<bool> = const { Cell::new(false) };
}

/// Run `read` on `conn` on this thread, within the call, rather than on a blocking thread:
/// for the short reads of the hot requests (a page of at most 100 servers, a tool call's server
/// and tool), whose trip to a blocking thread and back costs more than the read. In WAL mode a
/// read never waits for a writer, so the worker is held only for the read's own work. Writes,
/// which may wait for the write lock, always go to a blocking thread.
pub fn read_here<'a, R>(
    conn: &mut SqliteConn,
    read: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<R> + Send + 'static,
) -> BoxFuture<'a, diesel::QueryResult<R>>
where
    R: Send + 'static,
{
    /// Clears the flag however the call ends.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            HERE.set(false);
        }
    }
    HERE.set(true);
    let _reset = Reset;
    conn.spawn_blocking(read)
}

impl SpawnBlocking for SpanCarrying {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn StdError + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        if HERE.replace(false) {
            // A panic is an error of the read, as a blocking thread's would be.
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task))
                .map_err(|_| Box::from("a SQLite read panicked"));
            return futures_util::future::ready(done).boxed();
        }
        if crate::telemetry::exporting() {
            let span = tracing::Span::current();
            self.0.spawn_blocking(move || span.in_scope(task))
        } else {
            self.0.spawn_blocking(task)
        }
    }

    fn get_runtime() -> Self {
        SpanCarrying(TokioBlocking::get_runtime())
    }
}

/// Which database a URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A PostgreSQL connection string, passed to the driver as is.
    Postgres(String),
    /// A SQLite database file.
    Sqlite(PathBuf),
}

impl DatabaseTarget {
    /// Interpret a database URL. An empty SQLite path is refused.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseTarget::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || path.contains("://") {
            return Err(format!(
                "expected postgres://… or sqlite://path, got {:?}",
                url.split("://").next().unwrap_or_default()
            ));
        }
        if path == ":memory:" {
            return Err(
                "an in-memory SQLite database cannot be shared by a pool; use a file".into(),
            );
        }
        Ok(DatabaseTarget::Sqlite(PathBuf::from(path)))
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseTarget::Postgres(_))
    }
}

/// Options for building a pool.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Maximum connections in the pool.
    pub max_size: usize,
    /// How long a caller waits for a free connection before failing.
    pub wait_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 16,
            wait_timeout: Duration::from_secs(10),
        }
    }
}

/// A pool of connections to one of the two backends, plus the shared statement counter.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    target: DatabaseTarget,
    statements: Arc<AtomicU64>,
}

#[derive(Clone)]
enum DbPool {
    Postgres(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConn>),
}

/// One pooled connection. Data functions take `&mut DbConn` so callers can compose several
/// inside one transaction.
pub enum DbConn {
    /// A PostgreSQL connection (boxed: it is several times larger than the SQLite one).
    Postgres(Box<Object<AsyncPgConnection>>),
    /// A SQLite connection.
    Sqlite(Object<SqliteConn>),
}

/// Run `$body` with `$c` bound to the concrete connection of whichever backend `$conn` uses.
/// The body is compiled once per backend.
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Postgres($c) => {
                let $c: &mut ::diesel_async::AsyncPgConnection = &mut *$c;
                $body
            }
            $crate::db::DbConn::Sqlite($c) => {
                let $c: &mut $crate::db::SqliteConn = &mut *$c;
                $body
            }
        }
    };
}

/// Load every row of `$query` (an expression, compiled once per backend) into a `Vec`. On
/// SQLite the statement runs, and its rows are decoded, in one trip to a blocking thread: the
/// async wrapper's own `load` first copies every value of every row to hand the rows over, and
/// decodes the copies afterwards. For the hot reads; values used by `$query` are moved into
/// that thread, so they must be owned (`Copy` ids, numbers).
#[macro_export]
macro_rules! load_rows {
    ($conn:expr, $query:expr) => {
        match $conn {
            $crate::db::DbConn::Postgres(c) => {
                let c: &mut ::diesel_async::AsyncPgConnection = &mut *c;
                ::diesel_async::RunQueryDsl::load($query, c).await
            }
            $crate::db::DbConn::Sqlite(c) => {
                let c: &mut $crate::db::SqliteConn = &mut *c;
                c.spawn_blocking(move |c| ::diesel::RunQueryDsl::load($query, c))
                    .await
            }
        }
    };
}

/// Run `$body` (an expression producing `Result<T, E>` where `E: From<DbError>`) inside one
/// write transaction on `$conn`: committed when it returns `Ok`, rolled back otherwise. On
/// SQLite the transaction starts with `BEGIN IMMEDIATE` so two writers never deadlock on a
/// lock upgrade.
#[macro_export]
macro_rules! transaction {
    ($conn:ident, $body:expr) => {{
        $conn.begin().await?;
        let outcome = async { $body }.await;
        match outcome {
            Ok(value) => {
                $conn.commit().await?;
                Ok(value)
            }
            Err(error) => {
                $conn.rollback().await;
                Err(error)
            }
        }
    }};
}

/// Counts the statements a connection runs and, while traces are exported, gives each one run
/// inside a span a span of its own.
struct StatementInstrumentation {
    statements: Arc<AtomicU64>,
    /// `db.system.name`.
    system: &'static str,
    /// Spans of statements started and not yet finished (PostgreSQL may pipeline several;
    /// `None` for a statement run outside any span), oldest first.
    open: std::collections::VecDeque<Option<tracing::Span>>,
}

/// Statements a connection may have in flight at once, as far as spans go: a statement whose
/// end was never reported is let go once this many more have started.
const OPEN_STATEMENTS: usize = 16;

fn counting_instrumentation(
    statements: Arc<AtomicU64>,
    system: &'static str,
) -> impl Instrumentation {
    StatementInstrumentation {
        statements,
        system,
        open: std::collections::VecDeque::new(),
    }
}

impl Instrumentation for StatementInstrumentation {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                self.statements.fetch_add(1, Ordering::Relaxed);
                if !crate::telemetry::exporting() {
                    return;
                }
                if self.open.len() >= OPEN_STATEMENTS {
                    self.open.pop_front();
                }
                // Only statements run for something already traced: a background sweep's
                // would each be a trace of their own.
                let traced = !tracing::Span::current().is_none();
                self.open
                    .push_back(traced.then(|| statement_span(self.system, query)));
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                if let Some(Some(span)) = self.open.pop_front()
                    && error.is_some()
                {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", "database_error");
                }
            }
            _ => {}
        }
    }
}

/// The span of one statement: its kind and table, read from the start of its SQL.
fn statement_span(system: &'static str, query: &dyn std::fmt::Display) -> tracing::Span {
    let mut head = SqlHead::default();
    // Stops once the head is full: the rest (and the binds diesel prints after the SQL) is
    // never formatted.
    let _ = write!(head, "{query}");
    let (operation, table) = summarize(&head.0);
    let summary = match table {
        Some(table) => format!("{operation} {table}"),
        None => operation.clone(),
    };
    tracing::info_span!(
        target: crate::telemetry::SPANS,
        "db.statement",
        otel.name = %summary,
        otel.kind = "client",
        db.system.name = system,
        db.operation.name = %operation,
        db.collection.name = table,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// The first bytes of a statement's SQL, enough for its kind and table.
#[derive(Default)]
struct SqlHead(String);

/// How much of a statement is read for its summary.
const SQL_HEAD_BYTES: usize = 256;

impl std::fmt::Write for SqlHead {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let room = SQL_HEAD_BYTES.saturating_sub(self.0.len());
        let mut end = text.len().min(room);
        while !text.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        self.0.push_str(text.get(..end).unwrap_or_default());
        if end < text.len() {
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// The statement's kind (`SELECT`, `INSERT`, …) and, for the common kinds, its table: words
/// of the SQL that are plain identifiers, never a literal. Anything else is `OTHER`.
fn summarize(sql: &str) -> (String, Option<&str>) {
    // diesel prints the binds after the SQL.
    let sql = sql.split(" -- binds:").next().unwrap_or_default();
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ';')
        .filter(|word| !word.is_empty());
    let Some(first) = words.next() else {
        return ("OTHER".to_owned(), None);
    };
    let operation = first.to_ascii_uppercase();
    if !operation.chars().all(|c| c.is_ascii_alphabetic()) || operation.len() > 16 {
        return ("OTHER".to_owned(), None);
    }
    let table_after = match operation.as_str() {
        "SELECT" | "DELETE" => Some("FROM"),
        "INSERT" => Some("INTO"),
        "UPDATE" => None,
        _ => return (operation, None),
    };
    let table = match table_after {
        Some(keyword) => words
            .skip_while(|word| !word.eq_ignore_ascii_case(keyword))
            .nth(1),
        None => words.next(),
    };
    let table = table
        .map(|word| word.trim_matches(|c| c == '"' || c == '`'))
        .and_then(|word| word.rsplit('.').next())
        .map(|word| word.trim_matches('"'))
        .filter(|word| {
            !word.is_empty()
                && word.len() <= 64
                && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    (operation, table)
}

/// Open one PostgreSQL connection with TLS support: `sslmode=disable|prefer|require` in the URL
/// is honoured by the driver; certificates are checked against the Web PKI roots. Used by the
/// pool and by the connections that live outside it (migrations, LISTEN).
pub(crate) async fn establish_postgres(url: &str) -> diesel::ConnectionResult<AsyncPgConnection> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
    let (client, connection) = tokio_postgres::connect(url, connector)
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// Open one SQLite connection with the pragmas every connection needs: a busy timeout instead
/// of immediate `SQLITE_BUSY` (first, so that switching to WAL waits for another process's
/// lock too), WAL so readers never block the writer, and foreign keys (off by default in
/// SQLite) so deletes cascade.
async fn establish_sqlite(path: &str) -> diesel::ConnectionResult<SqliteConn> {
    let mut conn = SqliteConn::establish(path).await?;
    conn.batch_execute(
        "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )
    .await
    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

/// Create a missing SQLite database file, and its missing directories, readable by the owner
/// only (0600, directories 0700), before SQLite opens it: SQLite would create it with the
/// process's default mode (0644 under the usual umask), and it gives the `-wal` and `-shm`
/// files it creates beside the database the database file's mode. An existing file or
/// directory is left as it is. An empty file is a valid, empty SQLite database.
fn prepare_sqlite_file(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};

    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| DbError::Connect(format!("cannot create {}: {e}", parent.display())))?;
    }
    // `create_new` neither follows nor reuses an existing path, and the mode applies at
    // creation, so the file is never readable by others, even briefly.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(DbError::Connect(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

impl Db {
    /// Build a pool for the target. For SQLite a missing database file and directory are
    /// created, readable by the owner only.
    pub async fn connect(target: &DatabaseTarget, options: &PoolOptions) -> Result<Db, DbError> {
        let statements = Arc::new(AtomicU64::new(0));
        let pool = match target {
            DatabaseTarget::Postgres(url) => {
                let mut config = ManagerConfig::<AsyncPgConnection>::default();
                config.recycling_method = RecyclingMethod::Fast;
                let counter = statements.clone();
                config.custom_setup = Box::new(move |url: &str| -> BoxFuture<'_, _> {
                    let counter = counter.clone();
                    async move {
                        let mut conn = establish_postgres(url).await?;
                        conn.set_instrumentation(counting_instrumentation(counter, "postgresql"));
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager = AsyncDieselConnectionManager::new_with_config(url, config);
                DbPool::Postgres(
                    Pool::builder(manager)
                        .max_size(options.max_size)
                        .wait_timeout(Some(options.wait_timeout))
                        .runtime(deadpool::Runtime::Tokio1)
                        .build()
                        .map_err(|e| DbError::Connect(e.to_string()))?,
                )
            }
            DatabaseTarget::Sqlite(path) => {
                prepare_sqlite_file(path)?;
                let mut config = ManagerConfig::<SqliteConn>::default();
                config.recycling_method = RecyclingMethod::Fast;
                let counter = statements.clone();
                config.custom_setup = Box::new(move |path: &str| -> BoxFuture<'_, _> {
                    let counter = counter.clone();
                    async move {
                        let mut conn = establish_sqlite(path).await?;
                        conn.set_instrumentation(counting_instrumentation(counter, "sqlite"));
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager = AsyncDieselConnectionManager::new_with_config(
                    path.to_string_lossy().into_owned(),
                    config,
                );
                DbPool::Sqlite(
                    Pool::builder(manager)
                        .max_size(options.max_size)
                        .wait_timeout(Some(options.wait_timeout))
                        .runtime(deadpool::Runtime::Tokio1)
                        .build()
                        .map_err(|e| DbError::Connect(e.to_string()))?,
                )
            }
        };
        Ok(Db {
            pool,
            target: target.clone(),
            statements,
        })
    }

    /// Take a connection from the pool.
    pub async fn conn(&self) -> Result<DbConn, DbError> {
        match &self.pool {
            DbPool::Postgres(pool) => Ok(DbConn::Postgres(Box::new(
                pool.get().await.map_err(|e| DbError::Pool(e.to_string()))?,
            ))),
            DbPool::Sqlite(pool) => Ok(DbConn::Sqlite(
                pool.get().await.map_err(|e| DbError::Pool(e.to_string()))?,
            )),
        }
    }

    /// Whether the pool talks to PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, DbPool::Postgres(_))
    }

    /// The database this pool connects to.
    pub fn target(&self) -> &DatabaseTarget {
        &self.target
    }

    /// Statements run by every connection of this pool since it was built.
    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Run pending migrations. On PostgreSQL this holds an advisory lock for the duration so
    /// replicas starting together apply them once.
    pub async fn migrate(&self) -> Result<Vec<String>, DbError> {
        super::migrations::run(self).await
    }

    /// A cheap liveness query for `/readyz`.
    pub async fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        with_conn!(&mut conn, |c| c.batch_execute("SELECT 1").await)?;
        Ok(())
    }
}

impl DbConn {
    /// Begin a write transaction (see [`transaction!`]).
    pub async fn begin(&mut self) -> Result<(), DbError> {
        match self {
            DbConn::Postgres(c) => {
                let c: &mut AsyncPgConnection = c;
                diesel_async::AnsiTransactionManager::begin_transaction(c).await?;
            }
            DbConn::Sqlite(c) => {
                let c: &mut SqliteConn = c;
                c.spawn_blocking(|c| {
                    diesel::connection::AnsiTransactionManager::begin_transaction_sql(
                        c,
                        "BEGIN IMMEDIATE",
                    )
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Commit the transaction opened by [`DbConn::begin`].
    pub async fn commit(&mut self) -> Result<(), DbError> {
        match self {
            DbConn::Postgres(c) => {
                let c: &mut AsyncPgConnection = c;
                diesel_async::AnsiTransactionManager::commit_transaction(c).await?;
            }
            DbConn::Sqlite(c) => {
                let c: &mut SqliteConn = c;
                SyncTransactionManagerWrapper::<diesel::connection::AnsiTransactionManager>::commit_transaction(c)
                    .await?;
            }
        }
        Ok(())
    }

    /// Roll back the transaction opened by [`DbConn::begin`]. A failure here is logged, not
    /// returned: the caller is already returning the error that caused the rollback, and the
    /// pool discards a connection whose transaction is still open.
    pub async fn rollback(&mut self) {
        let outcome = match self {
            DbConn::Postgres(c) => {
                let c: &mut AsyncPgConnection = c;
                diesel_async::AnsiTransactionManager::rollback_transaction(c).await
            }
            DbConn::Sqlite(c) => {
                let c: &mut SqliteConn = c;
                SyncTransactionManagerWrapper::<diesel::connection::AnsiTransactionManager>::rollback_transaction(c)
                    .await
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, "rollback failed");
        }
    }

    /// Whether this connection is to PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, DbConn::Postgres(_))
    }
}

/// A connection outside the pool, owned by the migration harness while migrations run.
pub(super) enum MigrationConn {
    Postgres(Box<AsyncPgConnection>),
    Sqlite(SqliteConn),
}

/// Open a connection outside the pool for the migration harness.
pub(super) async fn establish_for_migrations(
    target: &DatabaseTarget,
) -> Result<MigrationConn, DbError> {
    match target {
        DatabaseTarget::Postgres(url) => Ok(MigrationConn::Postgres(Box::new(
            establish_postgres(url)
                .await
                .map_err(|e| DbError::Connect(e.to_string()))?,
        ))),
        DatabaseTarget::Sqlite(path) => Ok(MigrationConn::Sqlite(
            establish_sqlite(&path.to_string_lossy())
                .await
                .map_err(|e| DbError::Connect(e.to_string()))?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};

    use super::*;

    #[test]
    fn statements_are_summarized_by_kind_and_table_only() {
        let cases = [
            (
                r#"SELECT "mcp_servers"."id", "mcp_servers"."name" FROM "mcp_servers" WHERE ("mcp_servers"."id" = $1) -- binds: [secret-value]"#,
                ("SELECT", Some("mcp_servers")),
            ),
            (
                r#"INSERT INTO `audit_events` (`id`, `kind`) VALUES (?, ?) -- binds: ["x"]"#,
                ("INSERT", Some("audit_events")),
            ),
            (
                r#"UPDATE "oauth_grants" SET "tokens" = $1"#,
                ("UPDATE", Some("oauth_grants")),
            ),
            (r#"DELETE FROM "flows" WHERE 1"#, ("DELETE", Some("flows"))),
            ("BEGIN IMMEDIATE", ("BEGIN", None)),
            ("SELECT 1 -- binds: []", ("SELECT", None)),
            ("SELECT 'literal'", ("SELECT", None)),
            ("'quoted' nonsense", ("OTHER", None)),
            ("", ("OTHER", None)),
        ];
        for (sql, (operation, table)) in cases {
            let (got_operation, got_table) = summarize(sql);
            assert_eq!(
                (got_operation.as_str(), got_table),
                (operation, table),
                "{sql}"
            );
        }
    }

    #[test]
    fn the_sql_head_stops_at_its_limit() {
        let mut head = SqlHead::default();
        let long = "é".repeat(SQL_HEAD_BYTES);
        assert!(write!(head, "{long}").is_err());
        assert!(head.0.len() <= SQL_HEAD_BYTES);
    }

    /// The bundled SQLite is built as `.cargo/config.toml` asks: without a mutex per
    /// connection, without global memory statistics, with the planner stability guarantee.
    #[test]
    fn the_bundled_sqlite_is_built_with_the_repository_settings() {
        use diesel::{Connection as _, RunQueryDsl as _};

        #[derive(diesel::QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
        let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
            .load::<CompileOption>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|row| row.compile_options)
            .collect();
        for wanted in ["THREADSAFE=2", "DEFAULT_MEMSTATUS=0", "ENABLE_QPSG"] {
            assert!(options.iter().any(|o| o == wanted), "{wanted}: {options:?}");
        }
    }

    /// The permission bits, in octal.
    fn mode(path: &Path) -> String {
        let mode = std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        format!("{:o}", mode & 0o777)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_new_sqlite_database_and_its_directories_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("var/data");
        let path = data.join("switchboard.db");
        let db = Db::connect(
            &DatabaseTarget::Sqlite(path.clone()),
            &PoolOptions::default(),
        )
        .await
        .unwrap();
        db.migrate().await.unwrap();
        // Hold a connection so the write-ahead log and shared memory files stay.
        let _conn = db.conn().await.unwrap();

        assert_eq!(mode(&dir.path().join("var")), "700");
        assert_eq!(mode(&data), "700");
        for file in ["switchboard.db", "switchboard.db-wal", "switchboard.db-shm"] {
            assert_eq!(mode(&data.join(file)), "600", "{file}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_existing_sqlite_database_and_directory_keep_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("shared");
        std::fs::DirBuilder::new()
            .mode(0o750)
            .create(&data)
            .unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
        let path = data.join("switchboard.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

        let db = Db::connect(
            &DatabaseTarget::Sqlite(path.clone()),
            &PoolOptions::default(),
        )
        .await
        .unwrap();
        db.migrate().await.unwrap();
        assert_eq!(mode(&data), "750");
        assert_eq!(mode(&path), "640");
    }

    /// A SQLite database in a directory of its own, which lives as long as the guard.
    async fn scratch_sqlite(options: &PoolOptions) -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scratch.db");
        let db = Db::connect(&DatabaseTarget::Sqlite(path), options)
            .await
            .unwrap();
        (dir, db)
    }

    fn sqlite(conn: &mut DbConn) -> &mut SqliteConn {
        let DbConn::Sqlite(c) = conn else {
            panic!("a SQLite path opens a SQLite connection");
        };
        c
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reads_here_run_on_the_callers_thread_and_nothing_else_does() {
        let (_dir, db) = scratch_sqlite(&PoolOptions::default()).await;
        let mut conn = db.conn().await.unwrap();
        let c = sqlite(&mut conn);
        let caller = std::thread::current().id();
        let ran_on = |c: &mut SqliteConnection| {
            diesel::sql_query("SELECT 1").execute(c)?;
            Ok(std::thread::current().id())
        };
        use diesel::RunQueryDsl as _;
        assert_eq!(read_here(c, ran_on).await.unwrap(), caller);
        // The next piece of work, a write included, goes to a blocking thread again.
        assert_ne!(c.spawn_blocking(ran_on).await.unwrap(), caller);
        // A read that panics is an error of that read, and leaves the flag cleared.
        let panicked = read_here(c, |_| -> diesel::QueryResult<()> { panic!("in the read") });
        assert!(panicked.await.is_err());
        assert_ne!(c.spawn_blocking(ran_on).await.unwrap(), caller);
        assert!(!HERE.get());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_connection_given_back_with_its_statement_running_is_handed_out_whole() {
        use diesel::RunQueryDsl as _;
        let (_dir, db) = scratch_sqlite(&PoolOptions {
            max_size: 1,
            wait_timeout: Duration::from_secs(5),
        })
        .await;
        let mut conn = db.conn().await.unwrap();
        let (started, running) = std::sync::mpsc::channel();
        // The caller gives up on a statement that is still running (a dropped request).
        let abandoned = sqlite(&mut conn).spawn_blocking(move |c| {
            started.send(()).ok();
            std::thread::sleep(Duration::from_millis(300));
            diesel::sql_query("SELECT 1").execute(c)
        });
        tokio::task::spawn_blocking(move || running.recv())
            .await
            .unwrap()
            .unwrap();
        drop(abandoned);
        drop(conn);
        // The next caller gets a connection that works.
        let mut conn = db.conn().await.unwrap();
        let one = sqlite(&mut conn)
            .spawn_blocking(|c| diesel::sql_query("SELECT 1").execute(c))
            .await
            .unwrap();
        assert_eq!(one, 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_hot_reads_are_done_when_first_asked() {
        use crate::db::projection::{self, Column, Columns};
        use crate::db::servers::{self, CallReads};
        use futures_util::FutureExt as _;
        let (_dir, db) = scratch_sqlite(&PoolOptions::default()).await;
        db.migrate().await.unwrap();
        let mut conn = db.conn().await.unwrap();
        let (workspace, reader) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let mut columns = Columns::default();
        columns.add(Column::Name);
        columns.add(Column::GrantExpiresAt);
        // Work sent to a blocking thread is not done yet when the caller first polls for it.
        let page = projection::page(&mut conn, workspace, reader, columns, None, 100)
            .now_or_never()
            .expect("the page is read on the caller's thread");
        assert!(page.unwrap().is_empty());
        let call = servers::find_for_call(&mut conn, workspace, "echo", |_| CallReads {
            holder: None,
            grant: true,
        })
        .now_or_never()
        .expect("a tool call's reads are done on the caller's thread");
        assert!(call.unwrap().is_none());
    }
}
