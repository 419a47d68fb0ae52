//! A page of servers, rendered without a future per field.
//!
//! A page whose selection holds only plain fields that each show one column of a server, of
//! its shared grant or of the reader's own grant (a dashboard's, the console's) is read as
//! just those columns ([`projection`], `db::projection`) and rendered from them. Any other page
//! loads its rows, and is rendered as below. Fragments on an object's own type count as their
//! fields, in place, as client libraries write them.
//!
//! The executor resolves every field of every object through a future of its own, with a
//! context, a name lookup and a merge into the parent's map: for a dashboard's page of a
//! hundred servers, a thousand of them, most of which only copy a column. A page (its edges,
//! nodes and page info, each server and its shared grant, all loaded with the page) is instead
//! read in one pass over its selection set when every selected field only reads what is
//! already loaded; failing that, each server still is. Each value is
//! made as the executor makes a field's value of that type (`InputType::to_value`, which is what
//! scalars and enums resolve to). Anything else (a field that loads, takes arguments or carries
//! a directive, a fragment on another type or with a directive, an object selected twice under
//! one key) sends the whole object down the executor's own path, so what a query returns never
//! depends on which path ran; the `servers::a_page_reads_the_same_on_both_paths` and
//! `servers::every_column_of_a_page_reads_as_its_resolver` tests hold the paths side by side. No schema
//! extension sits on the field path (see `graphql::build_schema`), so none is skipped.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields, PageInfo};
use async_graphql::parser::types::{Field, FragmentDefinition, Selection, SelectionSet};
use async_graphql::resolver_utils::EnumType;
use async_graphql::{
    Context, ContextBase, ContextSelectionSet, InputType, Name, OutputType, Positioned,
    ServerError, ServerResult, Value, registry,
};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use indexmap::IndexMap;
use uuid::Uuid;

use super::server::{McpMyAuthorization, McpOauthGrant, McpServer};
use super::{
    McpAuthStatus, McpAuthType, McpConnectionStatus, McpCredentialMode, McpOauthRegistration,
    McpStatusReason, McpTransport,
};
use crate::app::AppHandle;
use crate::domain::oauth::scope_list;
use crate::domain::servers::{
    self, Cell, Column, Columns, CredentialMode, OauthView, PendingFlows, ProjectedPage,
    ProjectedRow, Projection,
};
use crate::graphql::json::{self, Prewritten};

/// A page of servers: the GraphQL type `McpServerConnection`, read in one pass (edges, nodes,
/// page info and the servers) where it can be.
pub enum ServerPage {
    /// The servers' rows and what they need besides, loaded.
    Loaded(Connection<String, ListedServer>),
    /// Only the columns the page's selection reads ([`projection`]), for a selection that
    /// holds only plain fields.
    Projected {
        /// The servers.
        page: ProjectedPage,
        /// Whether the page was asked for after a cursor.
        has_previous: bool,
        /// The selection it was read for ([`projection`]), which it is rendered in.
        shape: Box<Shape>,
    },
}

impl OutputType for ServerPage {
    fn type_name() -> Cow<'static, str> {
        <Connection<String, ListedServer> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut registry::Registry) -> String {
        <Connection<String, ListedServer> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match self {
            ServerPage::Loaded(page) => {
                let read = |name: &str, shape: &Shape| plain_page_field(page, name, shape);
                resolve_plainly(page, ctx, field, read).await
            }
            ServerPage::Projected {
                page,
                has_previous,
                shape,
            } => {
                let read = |name: &str, shape: &Shape| {
                    projected_page_field(page, *has_previous, name, shape)
                };
                let mismatch =
                    || ServerError::new("the page's selection does not match its read", None);
                if let Some(prewritten) = ctx.data_opt::<Arc<Prewritten>>() {
                    let mut out = Vec::with_capacity(PAGE_JSON_BYTES);
                    if write_projected_page(page, *has_previous, shape, &mut out).is_some() {
                        ctx.data_unchecked::<AppHandle>()
                            .metrics
                            .server_page_written();
                        return Ok(prewritten.keep(out));
                    }
                }
                read_plainly(shape, read).ok_or_else(mismatch)
            }
        }
    }
}

/// The value of a field of a page when it (and all it selects) only reads what is loaded.
fn plain_page_field(
    page: &Connection<String, ListedServer>,
    name: &str,
    shape: &Shape,
) -> Option<Value> {
    let rows = PageRows {
        rows: &page.edges,
        has_previous: page.has_previous_page,
        has_next: page.has_next_page,
        cursor: |edge: &ServerEdge| edge.cursor.encode_cursor(),
        plan: |_: &Shape| Some(()),
        node: |edge: &ServerEdge, shape: &Shape, _: &()| {
            read_plainly(shape, |name, nested| {
                plain_server_field(&edge.node.0, name, nested)
            })
        },
    };
    rows.field(name, shape)
}

/// The rows of a page, each with its cursor and its node read in one pass, and whether pages
/// come before and after it. A node's reading is planned once for each selection of nodes
/// (`plan`), then each row is read with that plan (`node`).
struct PageRows<'r, R, C, P, N> {
    rows: &'r [R],
    has_previous: bool,
    has_next: bool,
    cursor: C,
    plan: P,
    node: N,
}

impl<R, C, P, N, Plan> PageRows<'_, R, C, P, N>
where
    C: Fn(&R) -> String,
    P: Fn(&Shape) -> Option<Plan>,
    N: Fn(&R, &Shape, &Plan) -> Option<Value>,
{
    /// The value of the page's field `name`, or `None` when a node declines.
    fn field(&self, name: &str, shape: &Shape) -> Option<Value> {
        let cursor = |row: Option<&R>| row.map(&self.cursor);
        Some(match name {
            "__typename" => typename::<Connection<String, ListedServer>>(),
            "edges" => {
                // Each selection of the node (aliases may select it more than once), planned.
                let plans = shape
                    .fields
                    .iter()
                    .filter(|(name, _)| *name == "node")
                    .map(|(_, node)| Some((node, (self.plan)(node)?)))
                    .collect::<Option<Vec<_>>>()?;
                let plan_of = |node: &Shape| {
                    let planned = plans.iter().find(|(of, _)| std::ptr::eq(*of, node));
                    planned.map(|(_, plan)| plan)
                };
                Value::List(
                    self.rows
                        .iter()
                        .map(|row| {
                            read_plainly(shape, |name, nested| match name {
                                "__typename" => Some(typename::<ServerEdge>()),
                                "cursor" => Some(Value::String((self.cursor)(row))),
                                "node" => (self.node)(row, nested, plan_of(nested)?),
                                _ => None,
                            })
                        })
                        .collect::<Option<_>>()?,
                )
            }
            "nodes" => {
                let plan = (self.plan)(shape)?;
                Value::List(
                    self.rows
                        .iter()
                        .map(|row| (self.node)(row, shape, &plan))
                        .collect::<Option<_>>()?,
                )
            }
            "pageInfo" => read_plainly(shape, |name, _| {
                Some(match name {
                    "__typename" => typename::<PageInfo>(),
                    "hasPreviousPage" => self.has_previous.to_value(),
                    "hasNextPage" => self.has_next.to_value(),
                    "startCursor" => cursor(self.rows.first()).to_value(),
                    "endCursor" => cursor(self.rows.last()).to_value(),
                    _ => return None,
                })
            })?,
            _ => return None,
        })
    }
}

type ServerEdge = Edge<String, ListedServer, EmptyFields>;

/// A server of a page: the GraphQL type `McpServer`, read in one pass where it can be.
pub struct ListedServer(pub McpServer);

impl OutputType for ListedServer {
    fn type_name() -> Cow<'static, str> {
        <McpServer as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut registry::Registry) -> String {
        <McpServer as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let read = |name: &str, shape: &Shape| plain_server_field(&self.0, name, shape);
        resolve_plainly(&self.0, ctx, field, read).await
    }
}

/// The object `ctx` selects of `inner`, read in one pass with `read` ([`read_plainly`]), or
/// through `inner`'s own resolvers when that declines.
async fn resolve_plainly<T: OutputType>(
    inner: &T,
    ctx: &ContextSelectionSet<'_>,
    field: &Positioned<Field>,
    read: impl Fn(&str, &Shape) -> Option<Value>,
) -> ServerResult<Value> {
    let shape = shape_in(ctx, &ctx.item.node, &T::type_name());
    match shape.and_then(|shape| read_plainly(&shape, read)) {
        Some(value) => Ok(value),
        None => inner.resolve(ctx, field).await,
    }
}

/// What a selection set selects when it holds only plain fields, all the way down: no
/// argument or directive, fragments only on the object's own type (their fields taken in
/// place), and each response key once, but for a leaf field repeated as itself (`id` in a
/// fragment and beside it), which GraphQL merges into one. Worked out once for all the objects
/// of a page it is read on; it owns what it holds, so that a page read for it keeps it.
pub struct Shape {
    /// Each field's name, and the shape of what it selects in turn (empty for a leaf).
    fields: Vec<(Name, Shape)>,
    /// The object's response keys in order, each with a null value. Each object read starts
    /// from a copy, so no key is hashed or compared again.
    keys: IndexMap<Name, Value>,
    /// Each response key as JSON, with its colon: `"key":`.
    json_keys: Vec<Vec<u8>>,
}

/// Where a selection's named fragments and its fields' types are found.
#[derive(Clone, Copy)]
struct Env<'a, 'e> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// The named type of a field (its object type, its name), list and non-null removed.
    field_type: &'e dyn Fn(&str, &str) -> Option<&'a str>,
}

/// The shape of `selection_set`, selected on an object of type `type_name` in the request of
/// `ctx`.
fn shape_in<'a, T>(
    ctx: &ContextBase<'a, T>,
    selection_set: &'a SelectionSet,
    type_name: &str,
) -> Option<Shape> {
    let registry: &'a registry::Registry = &ctx.schema_env.registry;
    let field_type = |object: &str, field: &str| -> Option<&'a str> {
        let field = registry.types.get(object)?.field_by_name(field)?;
        Some(field.ty.trim_matches(|c| c == '[' || c == ']' || c == '!'))
    };
    let env = Env {
        fragments: &ctx.query_env.fragments,
        field_type: &field_type,
    };
    Shape::of(selection_set, env, type_name)
}

/// How deep fragments may nest in one another before a selection is left to the executor.
const FRAGMENT_DEPTH: usize = 8;

impl Shape {
    /// The shape of `selection_set` on an object of type `type_name`, or `None` when it (or
    /// anything below it) holds more than plain fields.
    fn of<'a>(selection_set: &'a SelectionSet, env: Env<'a, '_>, type_name: &str) -> Option<Self> {
        let count = selection_set.items.len();
        let mut shape = Shape {
            fields: Vec::with_capacity(count),
            keys: IndexMap::with_capacity(count),
            json_keys: Vec::with_capacity(count),
        };
        shape.add(selection_set, env, type_name, 0)?;
        Some(shape)
    }

    /// Add the fields of `selection_set` (on an object of type `type_name`, inside `depth`
    /// fragments).
    fn add<'a>(
        &mut self,
        selection_set: &'a SelectionSet,
        env: Env<'a, '_>,
        type_name: &str,
        depth: usize,
    ) -> Option<()> {
        for selection in &selection_set.items {
            let fragment = match &selection.node {
                Selection::Field(field) => {
                    self.add_field(&field.node, env, type_name)?;
                    continue;
                }
                Selection::InlineFragment(fragment) => {
                    let fragment = &fragment.node;
                    let on = fragment.type_condition.as_ref();
                    if !fragment.directives.is_empty()
                        || on.is_some_and(|on| on.node.on.node != type_name)
                    {
                        return None;
                    }
                    &fragment.selection_set.node
                }
                Selection::FragmentSpread(spread) => {
                    let spread = &spread.node;
                    let fragment = &env.fragments.get(&spread.fragment_name.node)?.node;
                    if !spread.directives.is_empty()
                        || !fragment.directives.is_empty()
                        || fragment.type_condition.node.on.node != type_name
                    {
                        return None;
                    }
                    &fragment.selection_set.node
                }
            };
            if depth >= FRAGMENT_DEPTH {
                return None;
            }
            self.add(fragment, env, type_name, depth + 1)?;
        }
        Some(())
    }

    fn add_field<'a>(&mut self, field: &'a Field, env: Env<'a, '_>, type_name: &str) -> Option<()> {
        if !field.arguments.is_empty() || !field.directives.is_empty() {
            return None;
        }
        let name = &field.name.node;
        let selection_set = &field.selection_set.node;
        let key = &field.response_key().node;
        if let Some(at) = self.keys.get_index_of(key) {
            // The same leaf again is the same field; anything else under a key already taken
            // would need merging.
            let (taken, nested) = &self.fields[at];
            let leaf = nested.fields.is_empty() && selection_set.items.is_empty();
            return (taken == name && leaf).then_some(());
        }
        let nested = if selection_set.items.is_empty() {
            Shape {
                fields: Vec::new(),
                keys: IndexMap::new(),
                json_keys: Vec::new(),
            }
        } else {
            Shape::of(
                selection_set,
                env,
                (env.field_type)(type_name, name.as_str())?,
            )?
        };
        let mut json_key = Vec::with_capacity(key.len() + 3);
        json::write_str(&mut json_key, key);
        json_key.push(b':');
        self.json_keys.push(json_key);
        self.keys.insert(key.clone(), Value::Null);
        self.fields.push((name.clone(), nested));
        Some(())
    }
}

/// An object's value read field by field with `read` (given a field's name and the shape of
/// what it selects), or `None` when `read` declines one of them.
fn read_plainly(shape: &Shape, read: impl Fn(&str, &Shape) -> Option<Value>) -> Option<Value> {
    read_planned(shape, &shape.fields, |(name, _), nested| read(name, nested))
}

/// An object's value read field by field, each with its entry of `plan` (one per field of
/// `shape`, in order) and the shape of what it selects, or `None` when `read` declines one of
/// them.
fn read_planned<F>(
    shape: &Shape,
    plan: &[F],
    read: impl Fn(&F, &Shape) -> Option<Value>,
) -> Option<Value> {
    // As the executor answers an object none of whose fields was selected.
    if shape.fields.is_empty() {
        return Some(Value::Null);
    }
    if plan.len() != shape.fields.len() {
        return None;
    }
    let mut object = shape.keys.clone();
    let fields = shape.fields.iter().zip(plan).zip(object.iter_mut());
    for (((_, nested), field), (_, value)) in fields {
        *value = read(field, nested)?;
    }
    Some(Value::Object(object))
}

fn typename<T: OutputType>() -> Value {
    Value::String(T::type_name().into_owned())
}

/// The value of a field of `server` that only reads what is loaded; `None` for the others.
/// Each arm gives what the field's resolver in `server.rs` returns.
fn plain_server_field(server: &McpServer, name: &str, shape: &Shape) -> Option<Value> {
    let row = &server.row;
    Some(match name {
        "__typename" => typename::<McpServer>(),
        "id" => Value::String(row.id.0.to_string()),
        "name" => row.name.to_value(),
        "description" => row.description.to_value(),
        "url" => row.url.to_value(),
        "transport" => McpTransport::from(row.transport).to_value(),
        "protocolVersion" => row.protocol_version.to_value(),
        "toolsFreshUntil" => row.tools_fresh_until.map(|at| at.0).to_value(),
        "enabled" => row.enabled.to_value(),
        "timeoutMs" => row.timeout_ms.to_value(),
        "retries" => row.retries.to_value(),
        "authType" => McpAuthType::from(row.auth_type).to_value(),
        "headerNames" => servers::header_names(row).to_value(),
        "oauthClientId" => row.oauth_client_id.to_value(),
        "oauthLenientPkce" => row.oauth_lenient_pkce.to_value(),
        "credentials" => McpCredentialMode::from(row.credential_mode).to_value(),
        "hasOauthClientSecret" => row.oauth_client_secret_sealed.is_some().to_value(),
        "hasOauthClientKey" => row.oauth_client_key_sealed.is_some().to_value(),
        "connectionStatus" => McpConnectionStatus::from(row.connection_status).to_value(),
        "authStatus" => McpAuthStatus::from(row.auth_status).to_value(),
        "statusReason" => row.status_reason.map(McpStatusReason::from).to_value(),
        "lastError" => row.last_error.to_value(),
        "lastConnectedAt" => row.last_connected_at.map(|at| at.0).to_value(),
        "toolCount" => row.tool_count.to_value(),
        "toolsRefreshedAt" => row.tools_refreshed_at.map(|at| at.0).to_value(),
        "createdAt" => row.created_at.0.to_value(),
        "updatedAt" => row.updated_at.0.to_value(),
        // The shared grant, when the page loaded the grants of all its servers.
        "oauth" => {
            let grants = server.related.as_ref()?.grants.as_ref()?;
            match grants.get(&row.id.0) {
                None => Value::Null,
                Some(view) => read_plainly(shape, |name, _| plain_grant_field(view, name))?,
            }
        }
        _ => return None,
    })
}

/// The value of a field of a shared grant that only reads what is loaded; `None` for the
/// others. Each arm gives what the field's resolver of `McpOauthGrant` returns.
fn plain_grant_field(view: &OauthView, name: &str) -> Option<Value> {
    let grant = view.grant.as_ref();
    Some(match name {
        "__typename" => typename::<McpOauthGrant>(),
        "issuer" => grant.and_then(|g| g.issuer.clone()).to_value(),
        "scopes" => scope_list(grant.and_then(|g| g.granted_scopes.as_deref())).to_value(),
        "expiresAt" => grant
            .and_then(|g| g.access_expires_at.map(|at| at.0))
            .to_value(),
        "lastRefreshedAt" => grant
            .and_then(|g| g.last_refreshed_at.map(|at| at.0))
            .to_value(),
        "registration" => grant
            .and_then(|g| g.registration_kind.map(McpOauthRegistration::from))
            .to_value(),
        "flowInProgress" => view.flow_in_progress.to_value(),
        _ => return None,
    })
}

/// The fields of a server a projected page reads, each from one column.
const SERVER_COLUMNS: &[(&str, Column)] = &[
    ("name", Column::Name),
    ("description", Column::Description),
    ("url", Column::Url),
    ("transport", Column::Transport),
    ("protocolVersion", Column::ProtocolVersion),
    ("toolsFreshUntil", Column::ToolsFreshUntil),
    ("enabled", Column::Enabled),
    ("timeoutMs", Column::TimeoutMs),
    ("retries", Column::Retries),
    ("authType", Column::AuthType),
    ("headerNames", Column::HeaderNames),
    ("oauthClientId", Column::OauthClientId),
    ("oauthLenientPkce", Column::OauthLenientPkce),
    ("credentials", Column::CredentialMode),
    ("hasOauthClientSecret", Column::HasOauthClientSecret),
    ("hasOauthClientKey", Column::HasOauthClientKey),
    ("connectionStatus", Column::ConnectionStatus),
    ("authStatus", Column::AuthStatus),
    ("statusReason", Column::StatusReason),
    ("lastError", Column::LastError),
    ("lastConnectedAt", Column::LastConnectedAt),
    ("toolCount", Column::ToolCount),
    ("toolsRefreshedAt", Column::ToolsRefreshedAt),
    ("createdAt", Column::CreatedAt),
    ("updatedAt", Column::UpdatedAt),
];

/// The fields of a shared grant a projected page reads, each from one column.
const GRANT_COLUMNS: &[(&str, Column)] = &[
    ("issuer", Column::GrantIssuer),
    ("scopes", Column::GrantScopes),
    ("expiresAt", Column::GrantExpiresAt),
    ("lastRefreshedAt", Column::GrantLastRefreshedAt),
    ("registration", Column::GrantRegistration),
];

/// The fields of the reader's own authorization a projected page reads, each from one column.
const OWN_GRANT_COLUMNS: &[(&str, Column)] = &[
    ("authorized", Column::MyAuthorized),
    ("expiresAt", Column::MyExpiresAt),
    ("scopes", Column::MyScopes),
    ("authorizedAt", Column::MyAuthorizedAt),
];

fn column_of(table: &[(&str, Column)], name: &str) -> Option<Column> {
    table
        .iter()
        .find(|(field, _)| *field == name)
        .map(|(_, column)| *column)
}

/// How a field of a projected server is read, worked out once for a selection of servers. The
/// same plan tells which columns a page reads ([`projection_of`]) and reads each row
/// ([`ServerField::read`]), so the two cannot disagree.
enum ServerField {
    Typename,
    Id,
    /// The names of its stored headers.
    HeaderNames,
    /// A column, as it is.
    Cell(Column),
    /// The shared grant, shown when there is one or a flow is pending.
    Oauth(Vec<GrantField>),
    /// The reader's own authorization, on a per-user server only.
    MyAuthorization(Vec<GrantField>),
}

/// How a field of a projected server's grant (the shared one, or the reader's own) is read.
enum GrantField {
    /// The grant type's name.
    Typename(Value),
    FlowInProgress,
    /// A column of space-separated scopes, as a list.
    Scopes(Column),
    /// A column, as it is.
    Cell(Column),
}

impl ServerField {
    /// The plan of each field of `shape` (a selection on a server), or `None` when one of
    /// them is not read from a column.
    fn plan(shape: &Shape) -> Option<Vec<ServerField>> {
        shape
            .fields
            .iter()
            .map(|(name, nested)| ServerField::of(name, nested))
            .collect()
    }

    fn of(name: &str, nested: &Shape) -> Option<Self> {
        Some(match name {
            "__typename" => ServerField::Typename,
            "id" => ServerField::Id,
            "headerNames" => ServerField::HeaderNames,
            "oauth" => ServerField::Oauth(GrantField::plan(
                nested,
                GRANT_COLUMNS,
                typename::<McpOauthGrant>,
            )?),
            "myAuthorization" => ServerField::MyAuthorization(GrantField::plan(
                nested,
                OWN_GRANT_COLUMNS,
                typename::<McpMyAuthorization>,
            )?),
            name => ServerField::Cell(column_of(SERVER_COLUMNS, name)?),
        })
    }

    /// Add what reading this field takes to `projection`.
    fn needs(&self, projection: &mut Projection) {
        let grant_columns = |fields: &[GrantField], projection: &mut Projection| {
            for field in fields {
                if let GrantField::Scopes(column) | GrantField::Cell(column) = field {
                    projection.columns.add(*column);
                }
            }
        };
        match self {
            ServerField::Typename | ServerField::Id => {}
            ServerField::HeaderNames => projection.columns.add(Column::HeaderNames),
            ServerField::Cell(column) => projection.columns.add(*column),
            ServerField::Oauth(fields) => {
                projection.columns.add(Column::HasGrant);
                let all = fields
                    .iter()
                    .any(|field| matches!(field, GrantField::FlowInProgress));
                projection.flows = match (all, projection.flows) {
                    (true, _) | (_, PendingFlows::All) => PendingFlows::All,
                    _ => PendingFlows::WithoutGrant,
                };
                grant_columns(fields, projection);
            }
            // Null but on a per-user server, which the credential mode tells.
            ServerField::MyAuthorization(fields) => {
                projection.columns.add(Column::CredentialMode);
                projection.own_flows |= fields
                    .iter()
                    .any(|field| matches!(field, GrantField::FlowInProgress));
                grant_columns(fields, projection);
            }
        }
    }

    /// The value of this field of `row`, selecting `shape`, as the field's resolver in
    /// `server.rs` returns it; `None` when a cell it needs was not read.
    fn read(&self, page: &ProjectedPage, row: &ProjectedRow, shape: &Shape) -> Option<Value> {
        let cell = |column: Column| page.cell(row, column);
        Some(match self {
            ServerField::Typename => typename::<McpServer>(),
            ServerField::Id => Value::String(id_string(row.id)),
            ServerField::HeaderNames => match cell(Column::HeaderNames)? {
                Cell::Text(stored) => servers::header_names_of(stored).to_value(),
                _ => return None,
            },
            ServerField::Cell(column) => cell_value(cell(*column)?),
            ServerField::Oauth(fields) => match page.oauth_view(row) {
                None => Value::Null,
                Some(pending) => {
                    read_planned(shape, fields, |field, _| field.read(page, row, pending))?
                }
            },
            ServerField::MyAuthorization(fields) => {
                if *cell(Column::CredentialMode)? != Cell::CredentialMode(CredentialMode::PerUser) {
                    Value::Null
                } else {
                    let pending = page.own_flow_pending(row);
                    read_planned(shape, fields, |field, _| field.read(page, row, pending))?
                }
            }
        })
    }
}

impl ServerField {
    /// The JSON of this field of `row`, selecting `shape`, as [`ServerField::read`] reads it.
    fn write(
        &self,
        out: &mut Vec<u8>,
        page: &ProjectedPage,
        row: &ProjectedRow,
        shape: &Shape,
    ) -> Option<()> {
        let cell = |column: Column| page.cell(row, column);
        match self {
            ServerField::Id => write_id(out, row.id),
            ServerField::Cell(column) => write_cell(out, cell(*column)?),
            ServerField::Oauth(fields) => match page.oauth_view(row) {
                None => write_value(out, &Value::Null),
                Some(pending) => write_object(out, shape, fields, |out, field, _| {
                    field.write(out, page, row, pending)
                }),
            },
            ServerField::MyAuthorization(fields) => {
                if *cell(Column::CredentialMode)? != Cell::CredentialMode(CredentialMode::PerUser) {
                    write_value(out, &Value::Null)
                } else {
                    let pending = page.own_flow_pending(row);
                    write_object(out, shape, fields, |out, field, _| {
                        field.write(out, page, row, pending)
                    })
                }
            }
            ServerField::Typename | ServerField::HeaderNames => {
                write_value(out, &self.read(page, row, shape)?)
            }
        }
    }
}

impl GrantField {
    /// The JSON of this field, as [`GrantField::read`] reads it.
    fn write(
        &self,
        out: &mut Vec<u8>,
        page: &ProjectedPage,
        row: &ProjectedRow,
        pending: bool,
    ) -> Option<()> {
        match self {
            GrantField::Cell(column) => write_cell(out, page.cell(row, *column)?),
            GrantField::Typename(_) | GrantField::FlowInProgress | GrantField::Scopes(_) => {
                write_value(out, &self.read(page, row, pending)?)
            }
        }
    }

    /// The plan of each field of `shape` (a selection on a grant whose `__typename` is
    /// `typename`, and whose column fields are `table`), or `None` when one of them is not
    /// read from a column.
    fn plan(
        shape: &Shape,
        table: &[(&str, Column)],
        typename: fn() -> Value,
    ) -> Option<Vec<GrantField>> {
        shape
            .fields
            .iter()
            .map(|(name, _)| {
                Some(match name.as_str() {
                    "__typename" => GrantField::Typename(typename()),
                    "flowInProgress" => GrantField::FlowInProgress,
                    "scopes" => GrantField::Scopes(column_of(table, "scopes")?),
                    name => GrantField::Cell(column_of(table, name)?),
                })
            })
            .collect()
    }

    /// The value of this field of `row`'s grant, whose flow is `pending` or not.
    fn read(&self, page: &ProjectedPage, row: &ProjectedRow, pending: bool) -> Option<Value> {
        Some(match self {
            GrantField::Typename(name) => name.clone(),
            GrantField::FlowInProgress => pending.to_value(),
            GrantField::Scopes(column) => {
                let scopes = match page.cell(row, *column)? {
                    Cell::Text(scopes) => Some(scopes.as_str()),
                    _ => None,
                };
                scope_list(scopes).to_value()
            }
            GrantField::Cell(column) => cell_value(page.cell(row, *column)?),
        })
    }
}

/// What a page must read for the selection of `ctx` (a field of a page of servers) when it
/// holds only plain fields that each read a column of a server, of its shared grant or of the
/// reader's own grant: those columns and which pending flows to learn of, with the selection's
/// shape, which the page is then rendered in ([`ServerPage::Projected`]). `None` for anything
/// else, which loads the page's rows.
pub fn projection(ctx: &Context<'_>) -> Option<(Projection, Box<Shape>)> {
    let shape = shape_in(
        ctx,
        &ctx.item.node.selection_set.node,
        &ServerPage::type_name(),
    )?;
    Some((projection_of(&shape)?, Box::new(shape)))
}

/// [`projection`] of a page's selection shape.
fn projection_of(shape: &Shape) -> Option<Projection> {
    let mut projection = Projection {
        columns: Columns::default(),
        flows: PendingFlows::None,
        own_flows: false,
    };
    let mut server = |shape: &Shape| -> Option<()> {
        for field in ServerField::plan(shape)? {
            field.needs(&mut projection);
        }
        Some(())
    };
    for (name, nested) in &shape.fields {
        match name.as_str() {
            "__typename" => {}
            "edges" => {
                for (name, nested) in &nested.fields {
                    match name.as_str() {
                        "__typename" | "cursor" => {}
                        "node" => server(nested)?,
                        _ => return None,
                    }
                }
            }
            "nodes" => server(nested)?,
            "pageInfo" => {
                let known = [
                    "__typename",
                    "hasPreviousPage",
                    "hasNextPage",
                    "startCursor",
                    "endCursor",
                ];
                if !nested
                    .fields
                    .iter()
                    .all(|(name, _)| known.contains(&name.as_str()))
                {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(projection)
}

/// The value of a field of a projected page.
fn projected_page_field(
    page: &ProjectedPage,
    has_previous: bool,
    name: &str,
    shape: &Shape,
) -> Option<Value> {
    let rows = PageRows {
        rows: &page.page.items,
        has_previous,
        has_next: page.page.has_next,
        cursor: |row: &ProjectedRow| id_string(row.id),
        plan: ServerField::plan,
        node: |row: &ProjectedRow, shape: &Shape, plan: &Vec<ServerField>| {
            read_planned(shape, plan, |field, nested| field.read(page, row, nested))
        },
    };
    rows.field(name, shape)
}

/// Bytes first set aside for a page's JSON, before its first row tells how much its rows take
/// ([`write_list`]).
const PAGE_JSON_BYTES: usize = 1024;

/// A projected page's JSON, written straight from its cells as [`projected_page_field`] reads
/// each field (and the executor then writes the values): the same keys in the same order, the
/// same values. `None` where that declines.
fn write_projected_page(
    page: &ProjectedPage,
    has_previous: bool,
    shape: &Shape,
    out: &mut Vec<u8>,
) -> Option<()> {
    let rows = &page.page.items;
    let write_node =
        |out: &mut Vec<u8>, row: &ProjectedRow, shape: &Shape, plan: &[ServerField]| {
            write_object(out, shape, plan, |out, field, nested| {
                field.write(out, page, row, nested)
            })
        };
    write_object(
        out,
        shape,
        &shape.fields,
        |out, (name, nested), _| match name.as_str() {
            "__typename" => write_value(out, &typename::<Connection<String, ListedServer>>()),
            "edges" => {
                let plans = nested
                    .fields
                    .iter()
                    .filter(|(name, _)| *name == "node")
                    .map(|(_, node)| Some((node, ServerField::plan(node)?)))
                    .collect::<Option<Vec<_>>>()?;
                let plan_of = |node: &Shape| {
                    let planned = plans.iter().find(|(of, _)| std::ptr::eq(*of, node));
                    planned.map(|(_, plan)| plan.as_slice())
                };
                write_list(out, rows, |out, row| {
                    write_object(
                        out,
                        nested,
                        &nested.fields,
                        |out, (name, node), _| match name.as_str() {
                            "__typename" => write_value(out, &typename::<ServerEdge>()),
                            "cursor" => write_id(out, row.id),
                            "node" => write_node(out, row, node, plan_of(node)?),
                            _ => None,
                        },
                    )
                })
            }
            "nodes" => {
                let plan = ServerField::plan(nested)?;
                write_list(out, rows, |out, row| write_node(out, row, nested, &plan))
            }
            "pageInfo" => write_object(out, nested, &nested.fields, |out, (name, _), _| {
                let cursor = |out: &mut Vec<u8>, row: Option<&ProjectedRow>| match row {
                    Some(row) => write_id(out, row.id),
                    None => write_value(out, &Value::Null),
                };
                match name.as_str() {
                    "__typename" => write_value(out, &typename::<PageInfo>()),
                    "hasPreviousPage" => write_value(out, &Value::Boolean(has_previous)),
                    "hasNextPage" => write_value(out, &Value::Boolean(page.page.has_next)),
                    "startCursor" => cursor(out, rows.first()),
                    "endCursor" => cursor(out, rows.last()),
                    _ => None,
                }
            }),
            _ => None,
        },
    )
}

/// An object's JSON, written field by field as [`read_planned`] reads it: `write` gets each
/// field's entry of `plan` and the shape of what it selects.
fn write_object<F>(
    out: &mut Vec<u8>,
    shape: &Shape,
    plan: &[F],
    write: impl Fn(&mut Vec<u8>, &F, &Shape) -> Option<()>,
) -> Option<()> {
    if shape.fields.is_empty() {
        return write_value(out, &Value::Null);
    }
    if plan.len() != shape.fields.len() {
        return None;
    }
    out.push(b'{');
    let fields = shape.fields.iter().zip(plan).zip(&shape.json_keys);
    for (index, (((_, nested), field), key)) in fields.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key);
        write(out, field, nested)?;
    }
    out.push(b'}');
    Some(())
}

/// A list's JSON, an item written by `write` for each of `items`.
///
/// Once the first item is written, room is made for the others, each taken to be a quarter
/// longer than it: a page's rows are written alike, so the buffer grows once, while little is
/// in it, rather than doubling (and copying what it holds) as it fills.
fn write_list<T>(
    out: &mut Vec<u8>,
    items: &[T],
    write: impl Fn(&mut Vec<u8>, &T) -> Option<()>,
) -> Option<()> {
    out.push(b'[');
    let start = out.len();
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write(out, item)?;
        if index == 0 {
            let first = out.len() - start;
            let each = first.saturating_add(first / 4).saturating_add(1);
            out.reserve(each.saturating_mul(items.len() - 1).saturating_add(1));
        }
    }
    out.push(b']');
    Some(())
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Option<()> {
    json::write_plain_value(out, value).ok()
}

/// A server's id as JSON, as its `id` field and its cursor show it.
fn write_id(out: &mut Vec<u8>, id: Uuid) -> Option<()> {
    let mut buffer = Uuid::encode_buffer();
    // Hexadecimal digits and hyphens: nothing to escape.
    write_quoted(out, id.hyphenated().encode_lower(&mut buffer));
    Some(())
}

/// An enum value's JSON, as [`enum_value`] makes its value.
fn write_enum<E: EnumType>(out: &mut Vec<u8>, value: E) -> Option<()> {
    // A GraphQL name is letters, digits and underscores: nothing to escape.
    write_quoted(out, enum_name(value)?);
    Some(())
}

/// `text`, which holds nothing JSON escapes, as a JSON string.
fn write_quoted(out: &mut Vec<u8>, text: &str) {
    debug_assert!(!text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// A cell's JSON, as [`cell_value`] makes its value.
fn write_cell(out: &mut Vec<u8>, cell: &Cell) -> Option<()> {
    match cell {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Text(text) => json::write_str(out, text),
        Cell::Int(n) => write_int(out, *n),
        Cell::Bool(true) => out.extend_from_slice(b"true"),
        Cell::Bool(false) => out.extend_from_slice(b"false"),
        Cell::Time(at) => return write_time(out, at),
        Cell::Transport(t) => return write_enum(out, McpTransport::from(*t)),
        Cell::AuthType(t) => return write_enum(out, McpAuthType::from(*t)),
        Cell::CredentialMode(m) => return write_enum(out, McpCredentialMode::from(*m)),
        Cell::ConnectionStatus(s) => return write_enum(out, McpConnectionStatus::from(*s)),
        Cell::AuthStatus(s) => return write_enum(out, McpAuthStatus::from(*s)),
        Cell::StatusReason(r) => return write_enum(out, McpStatusReason::from(*r)),
        Cell::Registration(k) => return write_enum(out, McpOauthRegistration::from(*k)),
    }
    Some(())
}

/// An integer's JSON, as `serde_json` writes it.
fn write_int(out: &mut Vec<u8>, n: i32) {
    if n < 0 {
        out.push(b'-');
    }
    let mut magnitude = n.unsigned_abs();
    // `u32::MAX` has ten digits.
    let mut digits = [b'0'; 10];
    let mut at = digits.len();
    while let Some(next) = at.checked_sub(1) {
        at = next;
        digits[at] = b'0' + u8::try_from(magnitude % 10).unwrap_or(0);
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A server's id as its `id` field and its cursor show it.
fn id_string(id: Uuid) -> String {
    let mut buffer = Uuid::encode_buffer();
    id.hyphenated().encode_lower(&mut buffer).to_owned()
}

/// A cell's value, as the executor makes a field's value of its type.
fn cell_value(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(text) => Value::String(text.clone()),
        Cell::Int(n) => n.to_value(),
        Cell::Bool(b) => b.to_value(),
        Cell::Time(at) => time_value(at),
        Cell::Transport(t) => enum_value(McpTransport::from(*t)),
        Cell::AuthType(t) => enum_value(McpAuthType::from(*t)),
        Cell::CredentialMode(m) => enum_value(McpCredentialMode::from(*m)),
        Cell::ConnectionStatus(s) => enum_value(McpConnectionStatus::from(*s)),
        Cell::AuthStatus(s) => enum_value(McpAuthStatus::from(*s)),
        Cell::StatusReason(r) => enum_value(McpStatusReason::from(*r)),
        Cell::Registration(k) => enum_value(McpOauthRegistration::from(*k)),
    }
}

/// A timestamp's value as the `DateTime` scalar makes it.
fn time_value(at: &DateTime<Utc>) -> Value {
    match time_text(at) {
        Some(text) => Value::String(text),
        None => at.to_value(),
    }
}

/// A timestamp's text as the `DateTime` scalar writes it (`to_rfc3339`: the fraction of a
/// second in 0, 3, 6 or 9 digits as it needs, the offset as `+00:00`), without the formatting
/// machinery; `None` for years beyond four digits and leap seconds, left to the scalar.
fn time_text(at: &DateTime<Utc>) -> Option<String> {
    let mut text = [0u8; TIME_BYTES];
    let length = time_digits(at, &mut text)?;
    let mut written = String::with_capacity(length + UTC.len());
    written.push_str(std::str::from_utf8(text.get(..length)?).ok()?);
    written.push_str(UTC);
    Some(written)
}

/// A timestamp's JSON, as [`time_text`] writes it: a string with nothing to escape.
fn write_time(out: &mut Vec<u8>, at: &DateTime<Utc>) -> Option<()> {
    let mut text = [0u8; TIME_BYTES];
    let Some(length) = time_digits(at, &mut text) else {
        return write_value(out, &at.to_value());
    };
    out.push(b'"');
    out.extend_from_slice(text.get(..length)?);
    out.extend_from_slice(UTC.as_bytes());
    out.push(b'"');
    Some(())
}

/// The offset every timestamp is written with.
const UTC: &str = "+00:00";
/// The longest timestamp before its offset: `9999-12-31T23:59:59.999999999`.
const TIME_BYTES: usize = 29;

/// The ASCII of [`time_text`] up to its offset, into `text`; its length, or `None` where the
/// scalar must write it.
fn time_digits(at: &DateTime<Utc>, text: &mut [u8; TIME_BYTES]) -> Option<usize> {
    let at = at.naive_utc();
    let (date, time) = (at.date(), at.time());
    let nanos = time.nanosecond();
    let year = u32::try_from(date.year())
        .ok()
        .filter(|year| *year <= 9999)?;
    if nanos >= 1_000_000_000 {
        return None;
    }
    let mut length = 0;
    let mut put = |n: u32, width: usize, after: u8| {
        let mut rest = n;
        for slot in text[length..length + width].iter_mut().rev() {
            *slot = b'0' + u8::try_from(rest % 10).unwrap_or(0);
            rest /= 10;
        }
        length += width;
        if after != 0 {
            text[length] = after;
            length += 1;
        }
    };
    put(year, 4, b'-');
    put(date.month(), 2, b'-');
    put(date.day(), 2, b'T');
    put(time.hour(), 2, b':');
    put(time.minute(), 2, b':');
    match nanos {
        0 => put(time.second(), 2, 0),
        _ if nanos.is_multiple_of(1_000_000) => {
            put(time.second(), 2, b'.');
            put(nanos / 1_000_000, 3, 0);
        }
        _ if nanos.is_multiple_of(1_000) => {
            put(time.second(), 2, b'.');
            put(nanos / 1_000, 6, 0);
        }
        _ => {
            put(time.second(), 2, b'.');
            put(nanos, 9, 0);
        }
    }
    Some(length)
}

/// An enum value's name, as `to_value` makes it.
fn enum_name<E: EnumType>(value: E) -> Option<&'static str> {
    let items = E::items();
    items
        .iter()
        .find(|item| item.value == value)
        .map(|item| item.name)
}

/// An enum's value as `to_value` makes it, but with its name shared rather than allocated again
/// for every row: each thread makes the names of an enum type once, on its first value.
fn enum_value<E: EnumType>(value: E) -> Value {
    thread_local! {
        /// Each enum type's names, in the order of its items, found by the items' address.
        static NAMES: RefCell<Vec<(usize, Vec<Name>)>> = const { RefCell::new(Vec::new()) };
    }
    let items = E::items();
    let Some(at) = items.iter().position(|item| item.value == value) else {
        return Value::Null;
    };
    let key = items.as_ptr() as usize;
    NAMES.with_borrow_mut(|types| {
        let names = match types.iter().position(|(of, _)| *of == key) {
            Some(known) => &types[known].1,
            None => {
                let names = items.iter().map(|item| Name::new(item.name)).collect();
                types.push((key, names));
                &types[types.len() - 1].1
            }
        };
        Value::Enum(names[at].clone())
    })
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use async_graphql::parser::types::{DocumentOperations, ExecutableDocument};

    use super::*;

    /// The selection set of `node` in `{ node { … } }`.
    fn node_selection(document: &ExecutableDocument) -> &SelectionSet {
        let DocumentOperations::Single(operation) = &document.operations else {
            panic!("one operation expected");
        };
        let Selection::Field(node) = &operation.node.selection_set.node.items[0].node else {
            panic!("a field expected");
        };
        &node.node.selection_set.node
    }

    /// Reads fields `a` and `b` as their names, and `inner` as an object of them.
    fn read(query: &str) -> Option<Value> {
        fn field(name: &str, shape: &Shape) -> Option<Value> {
            match name {
                "a" | "b" => Some(Value::from(name)),
                "inner" => read_plainly(shape, field),
                _ => None,
            }
        }
        let document = parse_query(query).ok()?;
        // `node` and `inner` are of type `T`; `a` and `b` are leaves.
        fn field_type<'a>(object: &str, field: &str) -> Option<&'a str> {
            (object == "T" && field == "inner").then_some("T")
        }
        let env = Env {
            fragments: &document.fragments,
            field_type: &field_type,
        };
        let shape = Shape::of(node_selection(&document), env, "T")?;
        read_plainly(&shape, field)
    }

    fn json(query: &str) -> Option<serde_json::Value> {
        read(query)?.into_json().ok()
    }

    #[test]
    fn timestamps_are_written_as_the_scalar_writes_them() {
        let mut seconds = -62_200_000_000_i64;
        let mut nanos = 0_u32;
        // A walk over some 4,000 years, with fractions of every length.
        while seconds < 260_000_000_000 {
            for fraction in [0, nanos, nanos / 1000 * 1000, nanos / 1_000_000 * 1_000_000] {
                let at = DateTime::from_timestamp(seconds, fraction).unwrap();
                assert_eq!(time_value(&at), at.to_value(), "{at:?}");
                let mut written = Vec::new();
                write_time(&mut written, &at).unwrap();
                let expected = serde_json::to_vec(&at.to_value()).unwrap();
                assert_eq!(written, expected, "{at:?}");
            }
            seconds += 7_777_777;
            nanos = (nanos + 123_456_789) % 1_000_000_000;
        }
        for (seconds, nanos) in [
            (1_483_228_799, 1_500_000_000),
            (253_402_300_800, 5),
            (-62_167_219_201, 0),
            (0, 1),
        ] {
            let at = DateTime::from_timestamp(seconds, nanos).unwrap();
            assert_eq!(time_value(&at), at.to_value(), "{at:?}");
            let mut written = Vec::new();
            write_time(&mut written, &at).unwrap();
            assert_eq!(
                written,
                serde_json::to_vec(&at.to_value()).unwrap(),
                "{at:?}"
            );
        }
    }

    #[test]
    fn plain_fields_are_read_in_one_pass_under_their_response_keys() {
        let value = read("{ node { a other: b inner { b } } }").map(|v| v.into_json().ok());
        assert_eq!(
            value,
            Some(Some(
                serde_json::json!({ "a": "a", "other": "b", "inner": { "b": "b" } })
            ))
        );
    }

    /// What a page whose selection is that of `node` in `query` reads as columns.
    fn page_projection(query: &str) -> Option<Projection> {
        fn field_type<'a>(object: &str, field: &str) -> Option<&'a str> {
            Some(match (object, field) {
                ("McpServerConnection", "edges") => "McpServerEdge",
                ("McpServerConnection", "nodes") | ("McpServerEdge", "node") => "McpServer",
                ("McpServerConnection", "pageInfo") => "PageInfo",
                ("McpServer", "oauth") => "McpOauthGrant",
                ("McpServer", "myAuthorization") => "McpMyAuthorization",
                ("McpServer", "createdBy") => "User",
                ("McpServer", "tools") => "McpToolConnection",
                ("McpToolConnection", "nodes") => "McpTool",
                _ => return None,
            })
        }
        let document = parse_query(query).ok()?;
        let env = Env {
            fragments: &document.fragments,
            field_type: &field_type,
        };
        let shape = Shape::of(node_selection(&document), env, "McpServerConnection")?;
        projection_of(&shape)
    }

    fn columns(list: &[Column]) -> Columns {
        let mut columns = Columns::default();
        for column in list {
            columns.add(*column);
        }
        columns
    }

    #[test]
    fn a_page_of_plain_fields_reads_just_their_columns() {
        let dashboard = page_projection(
            "{ node { edges { cursor node { id name url authType connectionStatus authStatus \
             toolCount oauth { expiresAt } } } pageInfo { hasNextPage endCursor } } }",
        );
        assert_eq!(
            dashboard,
            Some(Projection {
                columns: columns(&[
                    Column::Name,
                    Column::Url,
                    Column::AuthType,
                    Column::ConnectionStatus,
                    Column::AuthStatus,
                    Column::ToolCount,
                    Column::HasGrant,
                    Column::GrantExpiresAt,
                ]),
                flows: PendingFlows::WithoutGrant,
                own_flows: false,
            })
        );
        let flows = page_projection(
            "{ node { nodes { ...Card } } } fragment Card on McpServer { id \
             oauth { flowInProgress } myAuthorization { scopes flowInProgress } }",
        );
        assert_eq!(
            flows,
            Some(Projection {
                columns: columns(&[Column::HasGrant, Column::CredentialMode, Column::MyScopes]),
                flows: PendingFlows::All,
                own_flows: true,
            })
        );
        assert_eq!(
            page_projection("{ node { pageInfo { hasNextPage } } }"),
            Some(Projection {
                columns: Columns::default(),
                flows: PendingFlows::None,
                own_flows: false,
            })
        );
        // A field that is not one column loads the rows.
        for query in [
            "{ node { nodes { id createdBy { name } } } }",
            "{ node { nodes { id oauth { authorizedBy { name } } } } }",
            "{ node { nodes { id tools { nodes { name } } } } }",
            "{ node { totalCount } }",
        ] {
            assert_eq!(page_projection(query), None, "{query}");
        }
    }

    #[test]
    fn fragments_on_the_object_type_and_repeated_leaves_read_in_place() {
        let both = serde_json::json!({ "a": "a", "b": "b" });
        for query in [
            "{ node { a ...F } } fragment F on T { b }",
            "{ node { a ... on T { b } } }",
            "{ node { a ... { b } } }",
            "{ node { a ...F b } } fragment F on T { a }",
            "{ node { a a b } }",
            "{ node { ...F } } fragment F on T { ...G b } fragment G on T { a }",
        ] {
            assert_eq!(json(query), Some(both.clone()), "{query}");
        }
        assert_eq!(
            json("{ node { a inner { ...F } } } fragment F on T { b b }"),
            Some(serde_json::json!({ "a": "a", "inner": { "b": "b" } }))
        );
    }

    #[test]
    fn anything_but_plain_fields_goes_through_the_executor() {
        for query in [
            "{ node { a c } }",
            "{ node { a inner { c } } }",
            "{ node { a ... on U { b } } }",
            "{ node { a ...F } } fragment F on U { b }",
            "{ node { a ...F @include(if: true) } } fragment F on T { b }",
            "{ node { a ...F } } fragment F on T @custom { b }",
            "{ node { a ... @include(if: true) { b } } }",
            "{ node { a ...Missing } }",
            "{ node { a b(first: 1) } }",
            "{ node { a b @custom } }",
            "{ node { a: b a } }",
            // A repeated object would need its selections merged.
            "{ node { inner { a } inner { b } } }",
            // Below the first level too: the shape is worked out all the way down.
            "{ node { a inner { b: a b } } }",
            "{ node { a inner { b(first: 1) } } }",
            "{ node { a inner { ... on U { b } } } }",
            // Fragments nested deeper than a selection is worth.
            "{ node { ...F0 } } fragment F0 on T { ...F1 } fragment F1 on T { ...F2 } \
             fragment F2 on T { ...F3 } fragment F3 on T { ...F4 } fragment F4 on T { ...F5 } \
             fragment F5 on T { ...F6 } fragment F6 on T { ...F7 } fragment F7 on T { ...F8 } \
             fragment F8 on T { a }",
        ] {
            assert_eq!(read(query), None, "{query}");
        }
    }

    #[test]
    fn shared_enum_names_are_the_executors_values() {
        fn each<E: EnumType + InputType>() {
            for item in E::items() {
                // Made, then found again.
                for _ in 0..2 {
                    assert_eq!(
                        enum_value(item.value),
                        item.value.to_value(),
                        "{}",
                        item.name
                    );
                }
                // Written without escaping, as the executor's value is written.
                let mut written = Vec::new();
                write_enum(&mut written, item.value).unwrap();
                let expected = serde_json::to_vec(&item.value.to_value()).unwrap();
                assert_eq!(written, expected, "{}", item.name);
            }
        }
        each::<McpTransport>();
        each::<McpAuthType>();
        each::<McpCredentialMode>();
        each::<McpConnectionStatus>();
        each::<McpAuthStatus>();
        each::<McpStatusReason>();
        each::<McpOauthRegistration>();
    }

    #[test]
    fn a_list_of_rows_written_alike_grows_its_buffer_once() {
        let rows: Vec<String> = (0..100)
            .map(|n| format!("row {n:03} of the page"))
            .collect();
        let mut out = Vec::with_capacity(PAGE_JSON_BYTES);
        // The room there is when the second row is written, after the first made it.
        let written = std::cell::Cell::new(0);
        let room = std::cell::Cell::new(0);
        write_list(&mut out, &rows, |out, row| {
            if written.get() == 1 {
                room.set(out.capacity());
            }
            written.set(written.get() + 1);
            json::write_str(out, row);
            Some(())
        })
        .unwrap();
        assert!(out.len() > PAGE_JSON_BYTES);
        assert!(room.get() >= out.len(), "{} < {}", room.get(), out.len());
        assert_eq!(out, serde_json::to_vec(&rows).unwrap());
    }
}
