// Switchboard console: a status page for the MCP servers of a workspace.
//
// It uses only the public GraphQL API of the server that serves it: queries and mutations
// over HTTP (`POST /graphql`) and the `mcpServerStatus` subscription over WebSocket
// (`/graphql/ws`, graphql-transport-ws), both authenticated with the API token the person
// pasted, which is kept in sessionStorage for this tab only.
//
// Or, when the server names identity providers for the console (`/console/identity.json`),
// the person signs in with one: authorization code with PKCE (S256) as a public client, by a
// full-page redirect that comes back to this page. The verifier, `state` and `nonce` live in
// sessionStorage for that one round trip; the code is removed from the address bar at once and
// redeemed at the provider's token endpoint (the only other origin the page may reach). The
// access token (issued for Switchboard's audience) is then the bearer exactly like an API
// token, and is renewed with the refresh token, when one was issued, before it expires.
//
// Rules this file keeps:
// - Everything that comes from the API, from an MCP server or from a person is put on the
//   page with textContent or DOM methods, never parsed as HTML.
// - Secrets (the token, header values, client secrets) are never written into the page: the
//   API never returns them, and the inputs they were typed into are cleared after use.
// - An OAuth popup is only ever pointed at an http(s) URL, and the callback page's message is
//   only believed when it comes from the popup this page opened, from this server's origin.
// - On a per-user server the row shows the signed-in person's own connection (their
//   `myAuthorization`), never the server's shared status as if it were theirs; only admins ask
//   who else has connected.
// - What a server asks during a tool call (a form, a page to visit) is shown as text; a page
//   is never fetched or opened by the console itself, only in a new window, without opener or
//   referrer, when the person presses Open, and only if it is an http(s) URL.
// - A machine-client server (client credentials) gets its tokens by itself: nobody is ever
//   offered a popup for it, and its private key, like its secret, is only ever sent (when
//   someone typed one), never read back: the API says only whether one is stored.

const TOKEN_KEY = 'switchboard.console.token';
// { issuer, refreshToken, expiresAt, lifetime } of a sign-in with an identity provider.
const PROVIDER_SESSION_KEY = 'switchboard.console.provider-session';
// { issuer, state, nonce, verifier, redirectUri } of the round trip to a provider under way.
const PROVIDER_PENDING_KEY = 'switchboard.console.provider-pending';
const SESSION_EXPIRED = 'Your session expired — sign in again.';
const WORKSPACE_KEY = 'switchboard.console.workspace';

const SERVER_FIELDS = `id name description url transport protocolVersion enabled authType headerNames
  oauthClientId hasOauthClientSecret hasOauthClientKey credentials connectionStatus authStatus
  statusReason lastError lastConnectedAt toolCount toolsRefreshedAt
  oauth { expiresAt lastRefreshedAt flowInProgress scopes issuer }
  myAuthorization { authorized expiresAt scopes authorizedAt flowInProgress }`;
const TOOL_FIELDS = 'name title description inputSchema annotations';
// A tool call's outcome: the tool's answer, or what the server asks the user first.
const RESULT_FIELDS = `status content structuredContent isError
  inputRequests { key mode message requestedSchema url } continuation continuationExpiresAt
  unansweredInput { mode message url }`;

const QUERIES = {
  session: 'query { viewer { id name } workspaces { id name role } }',
  servers: `query($w: ID!, $after: String) { workspace(id: $w) { id role
    mcpServers(first: 50, after: $after) { pageInfo { hasNextPage endCursor } nodes { ${SERVER_FIELDS} } } } }`,
  server: `query($id: ID!) { mcpServer(id: $id) { ${SERVER_FIELDS} } }`,
  tools: `query($id: ID!, $after: String) { mcpServer(id: $id) { id
    tools(first: 100, after: $after) { pageInfo { hasNextPage endCursor } nodes { ${TOOL_FIELDS} } } } }`,
  create: `mutation($i: CreateMcpServerInput!) { createMcpServer(input: $i) { authType detection server { ${SERVER_FIELDS} } } }`,
  update: `mutation($id: ID!, $i: UpdateMcpServerInput!) { updateMcpServer(id: $id, input: $i) { ${SERVER_FIELDS} } }`,
  remove: 'mutation($id: ID!) { deleteMcpServer(id: $id) }',
  detect: `mutation($id: ID!) { detectMcpServerAuth(id: $id) { detection server { ${SERVER_FIELDS} } } }`,
  start: 'mutation($id: ID!) { startMcpOauth(serverId: $id) { status authorizationUrl expiresAt } }',
  disconnect: `mutation($id: ID!) { disconnectMcpOauth(serverId: $id) { ${SERVER_FIELDS} } }`,
  // Who has connected their own account to a per-user server (admins only).
  members: `query($id: ID!, $after: String) { mcpServer(id: $id) { id
    authorizations(first: 100, after: $after) { pageInfo { hasNextPage endCursor }
      nodes { authorized authorizedAt lastRefreshedAt expiresAt scopes user { id name } } } } }`,
  disconnectMember: `mutation($id: ID!, $user: ID!) { disconnectMcpOauth(serverId: $id, userId: $user) { ${SERVER_FIELDS} } }`,
  disconnectAll: `mutation($id: ID!) { disconnectMcpOauth(serverId: $id, all: true) { ${SERVER_FIELDS} } }`,
  refresh: `mutation($id: ID!) { refreshMcpServer(id: $id) { ${SERVER_FIELDS}
    tools(first: 100) { pageInfo { hasNextPage endCursor } nodes { ${TOOL_FIELDS} } } } }`,
  call: `mutation($id: ID!, $name: String!, $args: JSON) {
    callMcpTool(serverId: $id, name: $name, arguments: $args) { ${RESULT_FIELDS} } }`,
  // The same call again, with the user's answers to what the server asked.
  answer: `mutation($continuation: String!, $responses: [McpInputResponseInput!]!) {
    continueMcpToolCall(continuation: $continuation, responses: $responses) { ${RESULT_FIELDS} } }`,
  status: `subscription($w: ID!) { mcpServerStatus(workspaceId: $w) { serverId reason at personal
    current { connectionStatus authStatus reason } server { ${SERVER_FIELDS} } } }`,
  // The words for status reasons are the schema's descriptions.
  vocabulary: `query {
    statusReasons: __type(name: "McpStatusReason") { enumValues(includeDeprecated: true) { name description } } }`,
};

// The first MCP revision spoken without a session.
const STATELESS_SINCE = '2026-07-28';

const AUTH_TYPES = { NONE: 'None', HEADERS: 'Static headers', OAUTH: 'OAuth', UNDETECTED: 'Not detected' };

// Whose credentials reach a server, in the words of the add and edit forms.
const CREDENTIALS = {
  SHARED: 'One connection for the whole workspace: every member’s calls act as the account that authorized it.',
  PER_USER: 'Each member connects their own account, and their calls act as them. OAuth servers only.',
  CLIENT_CREDENTIALS: 'No one connects: the workspace’s machine client gets its own tokens with its client id and a secret or a private key.',
};

// The notes beside the client fields of the add form: a machine client needs its id, and a
// secret or a key.
const CLIENT_NOTES = {
  oauth: { '.client-id-note': '(optional, pre-registered)', '.client-secret-note': '(optional)' },
  machine: { '.client-id-note': '(required)', '.client-secret-note': '(or a private key below)' },
};

const CONNECTION = {
  CONNECTED: ['Connected', 'ok'],
  DISCONNECTED: ['Disconnected', 'idle'],
  ERROR: ['Error', 'bad'],
};

const AUTHORIZATION = {
  NOT_REQUIRED: ['Not required', 'idle'],
  AUTHORIZED: ['Authorized', 'ok'],
  AUTHORIZATION_REQUIRED: ['Needs authorization', 'warn'],
  AUTHORIZING: ['Authorizing', 'idle'],
  REFRESH_FAILED: ['Token refresh failed', 'warn'],
  INSUFFICIENT_SCOPE: ['Needs more permissions', 'warn'],
  HEADERS_REJECTED: ['Headers rejected', 'bad'],
};

// A machine client's authorization in words where they differ: nobody authorizes it, it
// either has a token or could not get one.
const MACHINE_AUTHORIZATION = {
  AUTHORIZATION_REQUIRED: ['No token', 'warn'],
  AUTHORIZING: ['Getting a token', 'idle'],
  REFRESH_FAILED: ['Token renewal failed', 'warn'],
};

// Status reasons (McpStatusReason) in words: the schema's descriptions, read once by
// introspection. Until they arrive, or when they cannot be read, a reason is shown as the API
// names it. (OAuth failures arrive in words from the callback page.)
const vocabulary = {
  statusReasons: new Map(),
  loading: null,
};

// ---------------------------------------------------------------------------------------
// Small DOM helpers. `el` only ever sets the attributes its callers name literally; strings
// among the children become text nodes.

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function button(label, onClick, attributes = {}) {
  const node = el('button', { type: 'button', ...attributes }, label);
  node.addEventListener('click', onClick);
  return node;
}

function badge(label, tone) {
  return el('span', { class: 'badge', 'data-tone': tone }, label);
}

// A status reason in words.
function words(reason) {
  if (!reason) return '';
  return vocabulary.statusReasons.get(reason) || reason;
}

// An OAuth failure as the callback page reports it: its own words (the descriptions of the
// schema's McpOauthFailureReason), else its code.
function flowWords(message) {
  if (typeof message.message === 'string' && message.message.trim()) return message.message.trim();
  return `Reason: ${message.reason}.`;
}

function pretty(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

function fromNow(iso) {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return '';
  const seconds = Math.round((at - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 60) return relative.format(seconds, 'second');
  if (abs < 3600) return relative.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), 'hour');
  return relative.format(Math.round(seconds / 86400), 'day');
}

function localTime(iso) {
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? '' : at.toLocaleString();
}

// ---------------------------------------------------------------------------------------
// State.

const state = {
  token: null,
  viewer: null,
  workspaces: [],
  workspaceId: null,
  role: null,
  // Server id → { server, row, detail, cells, toggle, nameNotes, tools, toolsLoaded, toolsKey,
  // actionsKey, accountPanel, accountKey, membersPanel, membersKey, members, machinePanel,
  // machineKey, personal }.
  entries: new Map(),
  // Server id → { popup, origin, name, personal } for OAuth popups this page opened.
  flows: new Map(),
};

const canEdit = () => state.role === 'EDITOR' || state.role === 'ADMIN';
const canDelete = () => state.role === 'ADMIN';
// Who has connected to a per-user server is for admins only (the API refuses others).
const canSeeMembers = () => state.role === 'ADMIN';

// ---------------------------------------------------------------------------------------
// The API over HTTP.

class ApiError extends Error {
  constructor(message, code, extensions = {}) {
    super(message);
    this.code = code;
    this.extensions = extensions;
  }
}

async function gql(query, variables = {}, token = state.token) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError('The Switchboard server could not be reached.', 'NETWORK');
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const first = body && Array.isArray(body.errors) ? body.errors[0] : null;
  if (first) {
    const extensions = first.extensions && typeof first.extensions === 'object' ? first.extensions : {};
    const code = typeof extensions.code === 'string' ? extensions.code : 'INTERNAL';
    throw new ApiError(String(first.message || 'The request failed.'), code, extensions);
  }
  if (!response.ok || !body || !body.data) {
    throw new ApiError(`The server answered HTTP ${response.status}.`, 'HTTP');
  }
  return body.data;
}

// Run an API call on behalf of the signed-in person: a rejected token signs them out.
async function api(query, variables) {
  try {
    return await gql(query, variables);
  } catch (error) {
    if (error.code === 'UNAUTHENTICATED') {
      signOut(providerSession() ? SESSION_EXPIRED : 'Your token is no longer accepted. Sign in again.');
    }
    throw error;
  }
}

function describeError(error) {
  if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
  if (error.code === 'REAUTH_REQUIRED') {
    const entry = state.entries.get(error.extensions.serverId);
    if (entry && perUser(entry.server)) {
      return 'Your account is not connected to this server, or its authorization ended: connect your account first. (REAUTH_REQUIRED)';
    }
    if (entry && machineClient(entry.server)) return `${machineRefusedText()} (REAUTH_REQUIRED)`;
  }
  if (error.code === 'SERVER_DISABLED') {
    const fix = canEdit() ? 'Enable it with Edit first.' : 'Ask an editor of this workspace to enable it.';
    return `The server is disabled. ${fix} (SERVER_DISABLED)`;
  }
  if (headersRejected(error)) {
    const fix = canEdit() ? 'Edit its headers' : 'Ask an editor of this workspace to correct them';
    return `The server rejected its static headers. ${fix}, then try again. (${error.code})`;
  }
  return `${error.code}: ${error.message}`;
}

function headersRejected(error) {
  return error instanceof ApiError && error.code === 'UPSTREAM_ERROR'
    && error.extensions.reason === 'headers_rejected';
}

// Read the words for reasons from the schema, once per page; a failure is tried again at the
// next sign-in, and reasons are shown as the API names them meanwhile.
function loadVocabulary() {
  if (vocabulary.loading) return vocabulary.loading;
  vocabulary.loading = gql(QUERIES.vocabulary)
    .then((data) => {
      for (const key of ['statusReasons']) {
        const type = data[key];
        if (!type || !Array.isArray(type.enumValues)) continue;
        for (const value of type.enumValues) {
          if (typeof value.name === 'string' && typeof value.description === 'string' && value.description.trim()) {
            vocabulary[key].set(value.name, value.description.trim());
          }
        }
      }
      for (const entry of state.entries.values()) renderRow(entry);
    })
    .catch(() => {
      vocabulary.loading = null;
    });
  return vocabulary.loading;
}

// ---------------------------------------------------------------------------------------
// Live status over WebSocket (graphql-transport-ws), reconnecting with backoff.

const live = {
  socket: null,
  acknowledged: false,
  attempt: 0,
  timer: null,
  ackTimer: null,
  subscriptionId: null,
  nextId: 0,
  wanted: false,
  // The bearer the open socket was initialised with.
  token: null,
};

function setLive(mode, text) {
  const node = $('#live');
  node.hidden = mode === 'hidden';
  node.dataset.state = mode;
  $('#live-text').textContent = text;
}

function liveStart() {
  live.wanted = true;
  if (live.socket && live.acknowledged) {
    subscribe();
  } else if (!live.socket) {
    clearTimeout(live.timer);
    connectSocket();
  }
}

function liveStop() {
  live.wanted = false;
  clearTimeout(live.timer);
  clearTimeout(live.ackTimer);
  const socket = live.socket;
  live.socket = null;
  live.acknowledged = false;
  live.subscriptionId = null;
  if (socket) socket.close(1000, 'signed out');
  setLive('hidden', 'Offline');
}

function connectSocket() {
  const url = new URL('/graphql/ws', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  setLive('connecting', 'Connecting…');
  let socket;
  try {
    socket = new WebSocket(url.href, 'graphql-transport-ws');
  } catch {
    scheduleReconnect();
    return;
  }
  live.socket = socket;
  live.acknowledged = false;
  live.subscriptionId = null;
  socket.addEventListener('open', () => {
    live.token = state.token;
    socket.send(JSON.stringify({
      type: 'connection_init',
      payload: { Authorization: `Bearer ${state.token}` },
    }));
    // A server that never acknowledges is as good as gone.
    live.ackTimer = setTimeout(() => socket.close(4408, 'no acknowledgement'), 10000);
  });
  socket.addEventListener('message', (event) => onSocketMessage(socket, event));
  socket.addEventListener('close', (event) => onSocketClose(socket, event));
}

function send(socket, message) {
  if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function subscribe() {
  const socket = live.socket;
  if (!socket || !live.acknowledged || !state.workspaceId) return;
  if (live.subscriptionId) send(socket, { id: live.subscriptionId, type: 'complete' });
  live.nextId += 1;
  live.subscriptionId = String(live.nextId);
  send(socket, {
    id: live.subscriptionId,
    type: 'subscribe',
    payload: { query: QUERIES.status, variables: { w: state.workspaceId } },
  });
}

function onSocketMessage(socket, event) {
  if (socket !== live.socket) return;
  let message;
  try {
    message = JSON.parse(event.data);
  } catch {
    return;
  }
  if (!message || typeof message !== 'object') return;
  switch (message.type) {
    case 'connection_ack':
      clearTimeout(live.ackTimer);
      live.acknowledged = true;
      live.attempt = 0;
      setLive('live', 'Live');
      subscribe();
      // Changes made while the socket was down were not delivered: read the current state.
      loadServers().catch((error) => notify(`Could not load the servers: ${describeError(error)}`, 'error'));
      break;
    case 'ping':
      send(socket, { type: 'pong' });
      break;
    case 'next':
      if (message.id === live.subscriptionId && message.payload) onStatusPayload(message.payload);
      break;
    case 'error':
      if (message.id === live.subscriptionId) {
        const first = Array.isArray(message.payload) ? message.payload[0] : null;
        notify(`Live updates failed: ${first && first.message ? first.message : 'unknown error'}`, 'error');
      }
      break;
    case 'complete':
      // The server ended the subscription: ask again in a moment (not at once, so a server
      // that keeps ending it is not hammered).
      if (message.id === live.subscriptionId) {
        live.subscriptionId = null;
        setTimeout(() => {
          if (live.socket === socket && !live.subscriptionId) subscribe();
        }, 2000);
      }
      break;
    default:
      break;
  }
}

function onSocketClose(socket, event) {
  if (socket !== live.socket) return;
  clearTimeout(live.ackTimer);
  const wasAcknowledged = live.acknowledged;
  live.socket = null;
  live.acknowledged = false;
  live.subscriptionId = null;
  if (!live.wanted) return;
  if (event.code === 4401 && providerSession()) {
    // The token the socket was opened with expired: open it again with the renewed one,
    // renewing first when that has not happened yet.
    const renewed = state.token !== live.token ? Promise.resolve(true) : renewProviderToken();
    renewed.then((ok) => {
      if (ok && live.wanted && !live.socket) connectSocket();
    });
    return;
  }
  if (event.code === 4401 || event.code === 4403) {
    // The server refuses this session (a revoked token, a lost membership): reconnecting
    // would be refused the same way.
    signOut('Your access has changed or your token was revoked. Sign in again.');
    return;
  }
  // 1001: the server is going away or the socket reached its lifetime; come back at once
  // (the jitter still spreads consoles out).
  if (event.code === 1001 && wasAcknowledged) live.attempt = 0;
  scheduleReconnect();
}

function scheduleReconnect() {
  if (!live.wanted) return;
  // 1 s, 2 s, 4 s … up to 30 s, with jitter so many consoles do not come back in step.
  const base = Math.min(30000, 1000 * 2 ** live.attempt);
  const delay = Math.round(base / 2 + Math.random() * (base / 2));
  live.attempt += 1;
  setLive('reconnecting', `Reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`);
  clearTimeout(live.timer);
  live.timer = setTimeout(() => {
    if (live.wanted && !live.socket) connectSocket();
  }, delay);
}

function onStatusPayload(payload) {
  if (Array.isArray(payload.errors) && payload.errors.length) {
    notify(`Live update failed: ${payload.errors[0].message}`, 'error');
    return;
  }
  const event = payload.data && payload.data.mcpServerStatus;
  if (!event) return;
  const reason = event.reason || (event.current && event.current.reason);
  if (event.personal) {
    // About the subscriber's own grant on a per-user server: `current` is their own view, and
    // the server's shared status did not change. Remember the view for their own state;
    // `server` is the row as stored, with their fresh `myAuthorization`.
    const entry = state.entries.get(event.serverId);
    if (entry && event.current) entry.personal = { authStatus: event.current.authStatus, reason };
    if (event.server) upsertServer(event.server);
    else reloadServer(event.serverId);
  } else if (event.server) {
    upsertServer(event.server);
  } else {
    removeServer(event.serverId);
  }
  const flow = state.flows.get(event.serverId);
  // A server keeps its grant (and its AUTHORIZED status) while a new flow runs: only the
  // authorization itself ends the flow. A flow for one's own account ends with a personal
  // event, a flow for the shared grant with the server's.
  if (flow && flow.personal === Boolean(event.personal) && event.current
    && event.current.authStatus === 'AUTHORIZED' && reason === 'AUTHORIZED') {
    finishFlow(event.serverId);
    notify(connectedText(flow), 'ok');
  }
}

// ---------------------------------------------------------------------------------------
// Notices.

let noticeTimer = null;

function notify(text, tone = 'info') {
  const node = $('#notice');
  node.textContent = text;
  node.dataset.tone = tone;
  node.hidden = false;
  clearTimeout(noticeTimer);
  if (tone !== 'error' && tone !== 'warn') noticeTimer = setTimeout(() => { node.hidden = true; }, 15000);
}

// ---------------------------------------------------------------------------------------
// Signing in and out.

function showSignIn(message = '') {
  $('#sign-in').hidden = false;
  $('#workbench').hidden = true;
  $('#session').hidden = true;
  $('#sign-in-error').textContent = message;
  $('#token').focus();
}

async function signIn(token) {
  const data = await gql(QUERIES.session, {}, token);
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  state.viewer = data.viewer;
  state.workspaces = data.workspaces;
  loadVocabulary();
  $('#viewer').textContent = `Signed in as ${data.viewer.name}`;
  $('#session').hidden = false;
  $('#sign-in').hidden = true;
  $('#workbench').hidden = false;
  renderWorkspaces();
  const remembered = sessionStorage.getItem(WORKSPACE_KEY);
  const pick = state.workspaces.find((w) => w.id === remembered) || state.workspaces[0];
  if (pick) {
    selectWorkspace(pick.id);
  } else {
    notify('This user belongs to no workspace.', 'error');
  }
}

function signOut(message = '') {
  liveStop();
  for (const id of [...state.flows.keys()]) finishFlow(id, true);
  clearTimeout(renewal.timer);
  renewal.timer = null;
  renewal.running = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(WORKSPACE_KEY);
  sessionStorage.removeItem(PROVIDER_SESSION_KEY);
  sessionStorage.removeItem(PROVIDER_PENDING_KEY);
  state.token = null;
  state.viewer = null;
  state.workspaces = [];
  state.workspaceId = null;
  state.role = null;
  clearServers();
  $('#viewer').textContent = '';
  $('#workspace').replaceChildren();
  $('#notice').hidden = true;
  showSignIn(message);
}


// ---------------------------------------------------------------------------------------
// Signing in with an identity provider (authorization code + PKCE, public client).

// The providers the server offers: { issuer, display_name, client_id, scopes,
// authorization_endpoint, token_endpoint, end_session_endpoint? }.
let identityProviders = [];
const renewal = { timer: null, running: null };

function base64url(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomText(size = 32) {
  const bytes = new Uint8Array(size);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

async function s256(text) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return base64url(new Uint8Array(digest));
}

// The claims of a JWT, unverified (the provider's TLS answer vouches for it here; Switchboard
// verifies the access token itself), or null.
function jwtClaims(token) {
  const part = typeof token === 'string' ? token.split('.')[1] : null;
  if (!part) return null;
  try {
    const padded = part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

function readStored(key) {
  try {
    const value = JSON.parse(sessionStorage.getItem(key) || 'null');
    return value && typeof value === 'object' ? value : null;
  } catch {
    return null;
  }
}

function providerSession() {
  return readStored(PROVIDER_SESSION_KEY);
}

function redirectUri() {
  return new URL('/', window.location.href).href;
}

async function loadIdentityProviders() {
  try {
    const response = await fetch('/console/identity.json', { credentials: 'omit', cache: 'no-store' });
    const body = response.ok ? await response.json() : null;
    identityProviders = body && Array.isArray(body.providers) ? body.providers : [];
  } catch {
    identityProviders = [];
  }
  const buttons = identityProviders.map((provider) => button(
    `Sign in with ${provider.display_name}`,
    (event) => busy(event.currentTarget, () => beginProviderSignIn(provider))
      .catch((error) => showSignIn(`Could not start signing in: ${error.message}`)),
    { class: 'primary' },
  ));
  $('#provider-buttons').replaceChildren(...buttons);
  $('#providers').hidden = buttons.length === 0;
}

async function beginProviderSignIn(provider) {
  const pending = {
    issuer: provider.issuer,
    state: randomText(),
    nonce: randomText(),
    verifier: randomText(48),
    redirectUri: redirectUri(),
  };
  sessionStorage.setItem(PROVIDER_PENDING_KEY, JSON.stringify(pending));
  const url = new URL(provider.authorization_endpoint);
  const params = {
    response_type: 'code',
    client_id: provider.client_id,
    redirect_uri: pending.redirectUri,
    scope: provider.scopes.join(' '),
    state: pending.state,
    code_challenge: await s256(pending.verifier),
    code_challenge_method: 'S256',
    nonce: pending.nonce,
  };
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  window.location.assign(url.href);
}

class ProviderError extends Error {}

// POST a form to the provider's token endpoint; the token response, or a ProviderError.
async function tokenRequest(provider, fields) {
  let response;
  try {
    response = await fetch(provider.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ProviderError(`${provider.display_name} could not be reached.`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok || !body || typeof body.access_token !== 'string' || !body.access_token) {
    const reason = body && typeof body.error === 'string' ? ` (${body.error.slice(0, 64)})` : '';
    throw new ProviderError(`${provider.display_name} did not issue a token${reason}.`);
  }
  return body;
}

// Keep what a token response brought, for this tab.
function keepProviderTokens(provider, tokens, previous = null) {
  const now = Date.now();
  const seconds = Number(tokens.expires_in);
  let expiresAt = null;
  if (Number.isFinite(seconds) && seconds > 0) {
    expiresAt = now + Math.min(seconds, 86400 * 365) * 1000;
  } else {
    const claims = jwtClaims(tokens.access_token);
    if (claims && Number.isFinite(claims.exp)) expiresAt = claims.exp * 1000;
  }
  const session = {
    issuer: provider.issuer,
    refreshToken: typeof tokens.refresh_token === 'string' ? tokens.refresh_token
      : (previous && previous.refreshToken) || null,
    expiresAt,
    lifetime: expiresAt ? Math.max(0, expiresAt - now) : null,
  };
  state.token = tokens.access_token;
  sessionStorage.setItem(TOKEN_KEY, tokens.access_token);
  sessionStorage.setItem(PROVIDER_SESSION_KEY, JSON.stringify(session));
  scheduleRenewal();
}

// Renew ahead of expiry: a quarter of the lifetime early, at most a minute.
function scheduleRenewal() {
  clearTimeout(renewal.timer);
  renewal.timer = null;
  const session = providerSession();
  if (!session || !session.expiresAt) return;
  const margin = Math.min(60000, (session.lifetime || 0) / 4);
  const delay = Math.max(0, session.expiresAt - margin - Date.now());
  renewal.timer = setTimeout(() => {
    renewProviderToken();
  }, Math.min(delay, 2 ** 31 - 1));
}

// Renew the token with the refresh token; true when it was renewed. Without a refresh token,
// or when renewal fails, the person is signed out with SESSION_EXPIRED.
function renewProviderToken() {
  if (renewal.running) return renewal.running;
  renewal.running = (async () => {
    const session = providerSession();
    const provider = session && identityProviders.find((p) => p.issuer === session.issuer);
    if (!session || !provider || !session.refreshToken) {
      if (session) signOut(SESSION_EXPIRED);
      return false;
    }
    try {
      const tokens = await tokenRequest(provider, {
        grant_type: 'refresh_token',
        refresh_token: session.refreshToken,
        client_id: provider.client_id,
      });
      if (!providerSession()) return false;
      keepProviderTokens(provider, tokens, session);
      return true;
    } catch {
      if (providerSession()) signOut(SESSION_EXPIRED);
      return false;
    }
  })().finally(() => {
    renewal.running = null;
  });
  return renewal.running;
}

// The page was opened by the provider's redirect back: check it, redeem the code, sign in.
async function finishProviderSignIn(params) {
  // The code leaves the address bar (and the history) before anything else happens.
  window.history.replaceState(null, '', window.location.pathname);
  const pending = readStored(PROVIDER_PENDING_KEY);
  sessionStorage.removeItem(PROVIDER_PENDING_KEY);
  if (!pending || params.get('state') !== pending.state) {
    showSignIn('This sign-in was not started in this tab, or it was already used. Sign in again.');
    return;
  }
  const provider = identityProviders.find((p) => p.issuer === pending.issuer);
  if (!provider) {
    showSignIn('This identity provider is not offered any more.');
    return;
  }
  if (params.has('iss') && params.get('iss') !== provider.issuer) {
    showSignIn(`The answer did not come from ${provider.display_name}. Sign in again.`);
    return;
  }
  if (params.has('error') || !params.get('code')) {
    const reason = (params.get('error') || 'no code').slice(0, 64);
    showSignIn(`${provider.display_name} did not sign you in (${reason}).`);
    return;
  }
  try {
    const tokens = await tokenRequest(provider, {
      grant_type: 'authorization_code',
      code: params.get('code'),
      code_verifier: pending.verifier,
      client_id: provider.client_id,
      redirect_uri: pending.redirectUri,
    });
    const identity = typeof tokens.id_token === 'string' ? jwtClaims(tokens.id_token) : null;
    if (typeof tokens.id_token === 'string' && (!identity || identity.nonce !== pending.nonce)) {
      throw new ProviderError(`The answer of ${provider.display_name} was not for this sign-in.`);
    }
    keepProviderTokens(provider, tokens);
    await signIn(tokens.access_token);
  } catch (error) {
    const text = error instanceof ApiError && error.code === 'UNAUTHENTICATED'
      ? `Switchboard did not accept the token of ${provider.display_name}.`
      : error instanceof ProviderError ? error.message : describeError(error);
    signOut(text);
  }
}

// ---------------------------------------------------------------------------------------
// Workspaces and the server table.

function renderWorkspaces() {
  const select = $('#workspace');
  select.replaceChildren(...state.workspaces.map((w) => el('option', { value: w.id }, w.name)));
}

function selectWorkspace(id) {
  const workspace = state.workspaces.find((w) => w.id === id);
  if (!workspace) return;
  state.workspaceId = id;
  state.role = workspace.role;
  sessionStorage.setItem(WORKSPACE_KEY, id);
  $('#workspace').value = id;
  $('#role').textContent = `Your role: ${workspace.role.toLowerCase()}`;
  $('#add').hidden = !canEdit();
  clearServers();
  loadServers().catch((error) => notify(`Could not load the servers: ${describeError(error)}`, 'error'));
  liveStart();
}

async function loadServers() {
  const workspaceId = state.workspaceId;
  const servers = [];
  let after = null;
  for (;;) {
    const data = await api(QUERIES.servers, { w: workspaceId, after });
    if (workspaceId !== state.workspaceId) return;
    if (!data.workspace) throw new ApiError('The workspace is gone or you are no longer a member.', 'NOT_FOUND');
    state.role = data.workspace.role;
    const page = data.workspace.mcpServers;
    servers.push(...page.nodes);
    if (!page.pageInfo.hasNextPage) break;
    after = page.pageInfo.endCursor;
  }
  const seen = new Set(servers.map((s) => s.id));
  for (const id of [...state.entries.keys()]) if (!seen.has(id)) removeServer(id);
  for (const server of servers) upsertServer(server);
  // Keep the API's order (oldest first).
  const body = $('#server-rows');
  for (const server of servers) {
    const entry = state.entries.get(server.id);
    body.append(entry.row, entry.detail);
  }
  $('#add').hidden = !canEdit();
  renderEmpty();
}

function clearServers() {
  state.entries.clear();
  $('#server-rows').replaceChildren();
  renderEmpty();
}

function renderEmpty() {
  $('#empty').hidden = state.entries.size > 0 || !state.workspaceId;
}

function upsertServer(server) {
  let entry = state.entries.get(server.id);
  if (!entry) {
    const detailId = `tools-${server.id}`;
    entry = {
      server,
      row: el('tr', { class: 'server', 'data-server-id': server.id }),
      detail: el('tr', { class: 'detail', id: detailId, hidden: true }),
      tools: [],
      toolsLoaded: false,
      toolsKey: null,
      actionsKey: null,
      cells: [],
      toggle: null,
      nameNotes: null,
      // The detail: the person's own account and who has connected (per-user servers), then
      // the tools.
      accountPanel: el('section', { class: 'account', hidden: true }),
      accountKey: null,
      membersPanel: el('section', { class: 'members', hidden: true }),
      membersKey: null,
      // The machine client of a client-credentials server: its token, never its key.
      machinePanel: el('section', { class: 'machine', hidden: true }),
      machineKey: null,
      // Who has connected (admins, per-user servers): null until read.
      members: null,
      membersError: null,
      membersRequest: 0,
      membersTimer: null,
      toolsPanel: el('div', { class: 'tools' }),
      // The last personal status event: the person's own view of a per-user server.
      personal: null,
    };
    entry.detail.append(el('td', { colspan: 8 },
      entry.accountPanel, entry.membersPanel, entry.machinePanel, entry.toolsPanel));
    buildRow(entry);
    state.entries.set(server.id, entry);
    $('#server-rows').append(entry.row, entry.detail);
  }
  const before = entry.server;
  entry.server = server;
  // A change of credential mode ends the grants the person's own view was about.
  if (perUser(before) !== perUser(server)) entry.personal = null;
  renderRow(entry);
  if (!usable(before) && usable(server)) {
    // Prompts to reconnect are answered now.
    let text = 'Reconnected. You can call the tool again.';
    if (perUser(server)) text = 'Your account is connected. You can call the tool again.';
    else if (machineClient(server)) text = 'The machine client has a token again. You can call the tool again.';
    for (const prompt of entry.detail.querySelectorAll('.reauth')) {
      prompt.replaceWith(el('p', { class: 'ok-text' }, text));
    }
  }
  // Who has connected may have changed with it; read it again when it is on show.
  if (!entry.detail.hidden) scheduleMembers(entry);
  // The catalogue changed (a refresh, a new authorization): reload it when it is on show.
  const toolsKey = `${server.toolCount}|${server.toolsRefreshedAt || ''}`;
  if (entry.toolsKey !== null && entry.toolsKey !== toolsKey && !entry.detail.hidden) {
    loadTools(entry).catch(() => {});
  }
  entry.toolsKey = toolsKey;
  renderEmpty();
}

function removeServer(id) {
  const entry = state.entries.get(id);
  if (!entry) return;
  clearTimeout(entry.membersTimer);
  entry.row.remove();
  entry.detail.remove();
  state.entries.delete(id);
  renderEmpty();
}

const COLUMNS = ['Name', 'URL', 'Auth', 'Connection', 'Authorization', 'Tools', 'Token expires', 'Actions'];

// The row's cells and its name button are made once and refilled on every change, so a
// live update never takes keyboard focus away from a control in the row.
function buildRow(entry) {
  entry.cells = COLUMNS.map((label) => el('td', { 'data-label': label }));
  entry.cells[7].className = 'actions';
  entry.toggle = button('', () => toggleTools(entry), {
    class: 'link expand',
    'aria-expanded': 'false',
    'aria-controls': entry.detail.id,
    title: 'Show tools',
  });
  // The arrow is decoration: kept out of the button's accessible name, which is the server's.
  entry.toggle.append(el('span', { class: 'chevron', 'aria-hidden': 'true' }), el('span', { class: 'name' }));
  entry.nameNotes = el('div', { class: 'muted small' });
  entry.cells[0].append(entry.toggle, entry.nameNotes);
  entry.row.append(...entry.cells);
}

function renderRow(entry) {
  const s = entry.server;
  const [, url, auth, connection, authorization, tools, expiry, actions] = entry.cells;
  entry.row.dataset.connection = s.connectionStatus;
  entry.row.dataset.auth = s.authStatus;

  entry.toggle.querySelector('.name').textContent = s.name;
  entry.nameNotes.replaceChildren(...[s.description, s.enabled ? null : 'Disabled']
    .filter(Boolean)
    .map((text) => el('div', {}, text)));

  url.replaceChildren(el('span', { class: 'url' }, s.url));
  const protocol = protocolText(s);
  if (protocol) url.append(el('div', { class: 'muted small protocol' }, protocol));

  auth.replaceChildren(AUTH_TYPES[s.authType] || s.authType);
  if (perUser(s)) auth.append(el('div', { class: 'muted small' }, 'Credentials: per user'));
  if (machineClient(s)) auth.append(el('div', { class: 'muted small' }, 'Credentials: machine client'));
  if (s.authType === 'UNDETECTED') {
    auth.append(el('div', { class: 'muted small' }, canEdit()
      ? 'Detect auth once it is reachable, or choose an auth type with Edit.'
      : 'It could not be asked how it authenticates.'));
  }
  if (s.headerNames.length) auth.append(el('div', { class: 'muted small' }, `Headers: ${s.headerNames.join(', ')}`));
  if (s.oauthClientId) auth.append(el('div', { class: 'muted small' }, `Client: ${s.oauthClientId}`));

  const [connectionText, connectionTone] = CONNECTION[s.connectionStatus] || [s.connectionStatus, 'idle'];
  connection.replaceChildren(badge(connectionText, connectionTone));
  if (s.lastError) connection.append(el('div', { class: 'small error-text' }, s.lastError));

  if (perUser(s)) {
    // The server's own authorization status is no one's in particular here: the cell shows
    // the person's own account, and the server's reason goes with its connection.
    const reason = words(s.statusReason);
    if (reason) connection.append(el('div', { class: 'muted small reason' }, reason));
    renderMyAuthorization(entry, authorization);
  } else if (machineClient(s)) {
    renderMachineAuthorization(s, authorization);
  } else {
    renderSharedAuthorization(s, authorization);
  }

  tools.textContent = String(s.toolCount);

  const expires = perUser(s) ? s.myAuthorization && s.myAuthorization.expiresAt : s.oauth && s.oauth.expiresAt;
  expiry.replaceChildren(expires ? moment(expires) : el('span', { class: 'muted' }, '—'));

  const own = myAuthorization(s);
  const actionsKey = JSON.stringify([s.authType, s.authStatus, hasGrant(s), state.role, s.name, s.credentials,
    own.authorized, Boolean(own.authorizedAt)]);
  if (entry.actionsKey !== actionsKey) {
    refill(actions, actionButtons(entry), entry.toggle);
    entry.actionsKey = actionsKey;
  }
  renderAccount(entry);
  renderMembers(entry);
  renderMachine(entry);
}

function renderSharedAuthorization(s, authorization) {
  const [authText, authTone] = AUTHORIZATION[s.authStatus] || [s.authStatus, 'idle'];
  authorization.replaceChildren(badge(authText, authTone));
  const reason = words(s.statusReason);
  if (reason && reason !== authText) authorization.append(el('div', { class: 'muted small reason' }, reason));
  if (s.authStatus === 'HEADERS_REJECTED') {
    authorization.append(el('div', { class: 'small hint-text' }, canEdit()
      ? 'Edit the headers to correct them.'
      : 'Ask an editor of this workspace to correct the headers.'));
  } else if (s.oauth && s.oauth.flowInProgress && s.authStatus !== 'AUTHORIZING') {
    authorization.append(el('div', { class: 'muted small' }, 'An authorization is in progress.'));
  }
}

// A machine client's token, in the row: nobody connects it, so the words are about the token.
function renderMachineAuthorization(s, authorization) {
  const [text, tone] = machineState(s);
  authorization.replaceChildren(el('div', { class: 'muted small' }, 'Machine client'), badge(text, tone));
  const reason = words(s.statusReason);
  if (reason && reason !== text) authorization.append(el('div', { class: 'muted small reason' }, reason));
  const fix = machineFix(s);
  if (fix) authorization.append(el('div', { class: 'small hint-text' }, fix));
}

// The person's own connection to a per-user server, in the row.
function renderMyAuthorization(entry, authorization) {
  const [text, tone, reason] = myState(entry);
  authorization.replaceChildren(el('div', { class: 'muted small' }, 'Your account'), badge(text, tone));
  if (reason && reason !== text) authorization.append(el('div', { class: 'muted small reason' }, reason));
}

// Put `children` in `container` in place of what it held. Keyboard focus inside it stays on
// the control of the same name when it survived, else goes to `fallback`, so a live update
// never takes focus away.
function refill(container, children, fallback) {
  const active = document.activeElement;
  const nameOf = (node) => node.getAttribute('aria-label') || node.textContent;
  const focused = active && active !== container && container.contains(active)
    ? [nameOf(active), active.textContent]
    : null;
  container.replaceChildren(...children);
  if (focused === null) return;
  const buttons = [...container.querySelectorAll('button')];
  const same = buttons.find((b) => nameOf(b) === focused[0]) || buttons.find((b) => b.textContent === focused[1]);
  const target = same || fallback;
  if (target && target.isConnected) target.focus();
}

// The MCP revision last negotiated with the server, in words ('' until it was first reached).
// Revisions from 2026-07-28 on are spoken statelessly, earlier ones through a session.
function protocolText(server) {
  const version = server.protocolVersion;
  if (typeof version !== 'string' || !version) return '';
  const stateless = /^\d{4}-\d{2}-\d{2}$/.test(version) && version >= STATELESS_SINCE;
  const transport = server.transport === 'SSE' ? ' over HTTP+SSE' : '';
  return `MCP ${version}${stateless ? ' (stateless)' : ''}${transport}`;
}

// Whether the server holds an OAuth grant: authorized, or tokens stored (a flow in progress
// never hides them).
function hasGrant(server) {
  return server.authStatus === 'AUTHORIZED' || Boolean(server.oauth && server.oauth.lastRefreshedAt);
}

// Whether each member connects their own account to the server.
function perUser(server) {
  return server.credentials === 'PER_USER';
}

// Whether the workspace's machine client gets the server's tokens by itself (client
// credentials): nobody connects it.
function machineClient(server) {
  return server.credentials === 'CLIENT_CREDENTIALS';
}

// A machine client's state: [words, tone].
function machineState(server) {
  return MACHINE_AUTHORIZATION[server.authStatus] || AUTHORIZATION[server.authStatus] || [server.authStatus, 'idle'];
}

// What to do about a machine client without a usable token, for the person's role ('' when
// it has one, or is disabled and asks for none).
function machineFix(server) {
  if (!server.enabled || server.authStatus === 'AUTHORIZED' || server.authStatus === 'NOT_REQUIRED') return '';
  if (server.authStatus === 'HEADERS_REJECTED') {
    return canEdit() ? 'Edit the headers to correct them.' : 'Ask an editor of this workspace to correct the headers.';
  }
  return canEdit()
    ? 'Check its client id, secret or private key with Edit; it asks for a token again when they change.'
    : 'Ask an editor of this workspace to check its machine client.';
}

// Why a call to a machine-client server was refused a token.
function machineRefusedText() {
  const fix = canEdit() ? 'Check its client id, secret or private key with Edit.' : 'Ask an editor of this workspace to check them.';
  return `The authorization server gave the machine client no token (its credentials may have been rejected). ${fix}`;
}

// The person's own authorization of a per-user server ({} elsewhere, or before it is known).
function myAuthorization(server) {
  return (perUser(server) && server.myAuthorization) || {};
}

// Whether the person's calls to the server carry working OAuth credentials: their own on a
// per-user server, the workspace's otherwise.
function usable(server) {
  return perUser(server) ? Boolean(myAuthorization(server).authorized) : server.authStatus === 'AUTHORIZED';
}

// The person's own state on a per-user server: [words, tone, reason]. The last personal event
// adds what the stored grant cannot say (more scopes needed, a failed refresh, why it changed)
// while it agrees with it.
function myState(entry) {
  const own = myAuthorization(entry.server);
  const personal = entry.personal;
  const withTokens = ['AUTHORIZED', 'INSUFFICIENT_SCOPE', 'REFRESH_FAILED'];
  const agrees = personal && withTokens.includes(personal.authStatus) === Boolean(own.authorized);
  const reason = agrees ? words(personal.reason) : '';
  if (own.authorized) {
    if (agrees && personal.authStatus !== 'AUTHORIZED') {
      return [...(AUTHORIZATION[personal.authStatus] || [personal.authStatus, 'warn']), reason];
    }
    return ['Connected', 'ok', reason];
  }
  if (own.flowInProgress) return ['Connecting', 'idle', reason];
  return ['Not connected', 'warn', reason];
}

function actionButtons(entry) {
  const s = entry.server;
  const buttons = [];
  const name = s.name;
  if (perUser(s)) {
    // Every member connects their own account, viewers included.
    if (s.authType === 'OAUTH') buttons.push(...myAccountButtons(entry));
  } else if (machineClient(s)) {
    // Nobody authorizes a machine client: it gets its tokens by itself.
  } else if (canEdit() && s.authType === 'OAUTH') {
    // Rejected headers are fixed by editing them, never by OAuth.
    if (s.authStatus !== 'AUTHORIZED' && s.authStatus !== 'HEADERS_REJECTED') {
      buttons.push(button('Connect', () => connect(entry.server.id), { class: 'primary', 'aria-label': `Connect ${name}` }));
    }
    if (hasGrant(s)) {
      buttons.push(button('Disconnect', (e) => disconnect(entry, e.currentTarget), { 'aria-label': `Disconnect ${name}` }));
    }
  }
  if (canEdit()) {
    const undetected = s.authType === 'UNDETECTED';
    buttons.push(button('Detect auth', (e) => detect(entry, e.currentTarget), {
      class: undetected ? 'primary' : null,
      'aria-label': `Detect auth of ${name}`,
      title: 'Ask the server again how it authenticates',
    }));
    buttons.push(button('Refresh tools', (e) => refresh(entry, e.currentTarget), { 'aria-label': `Refresh tools of ${name}` }));
    buttons.push(button('Edit', (e) => openEdit(entry, e.currentTarget), { 'aria-label': `Edit ${name}` }));
  }
  if (canDelete()) {
    buttons.push(button('Delete', (e) => openDelete(entry, e.currentTarget), { class: 'danger', 'aria-label': `Delete ${name}` }));
  }
  return buttons;
}

// Connect my account / Disconnect my account, for a per-user OAuth server.
function myAccountButtons(entry) {
  const own = myAuthorization(entry.server);
  const name = entry.server.name;
  const buttons = [];
  if (!own.authorized) {
    buttons.push(button('Connect my account', () => connect(entry.server.id), {
      class: 'primary',
      'aria-label': `Connect my account to ${name}`,
    }));
  }
  // A grant whose tokens were refused is still withdrawn with it.
  if (own.authorized || own.authorizedAt) {
    buttons.push(button('Disconnect my account', (e) => disconnect(entry, e.currentTarget), {
      'aria-label': `Disconnect my account from ${name}`,
    }));
  }
  return buttons;
}

async function busy(control, work) {
  if (control) control.disabled = true;
  try {
    return await work();
  } finally {
    if (control && control.isConnected) control.disabled = false;
  }
}

async function refresh(entry, control) {
  const id = entry.server.id;
  try {
    const data = await busy(control, () => api(QUERIES.refresh, { id }));
    const server = data.refreshMcpServer;
    const current = state.entries.get(id);
    if (current) {
      // The catalogue's first page arrived with the answer; fetch the rest, if any.
      current.toolsKey = null;
      upsertServer(server);
      if (server.tools.pageInfo.hasNextPage) {
        loadTools(current).catch((error) =>
          notify(`Could not load the tools: ${describeError(error)}`, 'error'));
      } else {
        setTools(current, server.tools.nodes);
      }
    }
    notify(`“${server.name}” refreshed: ${server.toolCount} tool${server.toolCount === 1 ? '' : 's'}.`, 'ok');
  } catch (error) {
    notify(`Refreshing “${entry.server.name}” failed: ${describeError(error)}`, 'error');
    reloadServer(id);
  }
}

async function detect(entry, control) {
  const id = entry.server.id;
  const name = entry.server.name;
  const before = entry.server.authType;
  try {
    const data = await busy(control, () => api(QUERIES.detect, { id }));
    const { server, detection } = data.detectMcpServerAuth;
    upsertServer(server);
    const type = AUTH_TYPES[server.authType] || server.authType;
    if (server.authType === 'UNDETECTED') {
      notify(`The auth type of “${server.name}” could not be detected: detection could not reach it (${detection}).`, 'warn');
    } else if (server.authType === before) {
      notify(`Detection for “${server.name}” found ${detection}; its auth type stays ${type}.`);
    } else {
      notify(`Detected the auth type of “${server.name}”: ${type} (${detection}).`, 'ok');
    }
  } catch (error) {
    notify(`Detecting the auth type of “${name}” failed: ${describeError(error)}`, 'error');
    reloadServer(id);
  }
}

async function reloadServer(id) {
  try {
    const data = await api(QUERIES.server, { id });
    if (data.mcpServer) upsertServer(data.mcpServer);
    else removeServer(id);
  } catch {
    // The live subscription or the next reload brings the state.
  }
}

// Withdraw the shared grant, or on a per-user server the person's own.
async function disconnect(entry, control) {
  const name = entry.server.name;
  const personal = perUser(entry.server);
  try {
    const data = await busy(control, () => api(QUERIES.disconnect, { id: entry.server.id }));
    upsertServer(data.disconnectMcpOauth);
    notify(personal
      ? `Your account is disconnected from “${name}”; your tokens were revoked.`
      : `“${name}” is disconnected; its tokens were revoked.`, 'ok');
  } catch (error) {
    const what = personal ? `Disconnecting your account from “${name}”` : `Disconnecting “${name}”`;
    notify(`${what} failed: ${describeError(error)}`, 'error');
  }
}

// ---------------------------------------------------------------------------------------
// OAuth: Switchboard's own begin link in a popup; Switchboard's own callback page completes
// the flow and reports back with postMessage, and the status subscription reports the new
// status. (`completeMcpOauth` is for apps that host their own callback page; this console
// does not.) On a per-user server the flow connects the person's own account, and its status
// arrives in personal events.

function connect(id) {
  const entry = state.entries.get(id);
  // A machine client is never authorized in a browser (the API refuses it as well).
  if (!entry || machineClient(entry.server)) return;
  const name = entry.server.name;
  const personal = perUser(entry.server);
  // Open the window now, while the click still counts as a user gesture, so popup blockers let
  // it through; it is pointed at the authorization link once the API has answered.
  const popup = window.open('', `switchboard-oauth-${id}`, 'popup,width=560,height=720');
  if (!popup) {
    notify('The browser blocked the authorization window. Allow pop-ups for this page and try again.', 'error');
    return;
  }
  startFlow(id, name, personal, popup);
}

// The notice that a flow connected its server.
function connectedText(flow) {
  return flow.personal ? `Your account is connected to “${flow.name}”.` : `“${flow.name}” is connected.`;
}

async function startFlow(id, name, personal, popup) {
  let start;
  try {
    start = (await api(QUERIES.start, { id })).startMcpOauth;
  } catch (error) {
    popup.close();
    const what = personal ? `Connecting your account to “${name}”` : `Connecting “${name}”`;
    notify(`${what} failed: ${describeError(error)}`, 'error');
    return;
  }
  if (start.status === 'ALREADY_AUTHORIZED') {
    popup.close();
    notify(personal ? `Your account is already connected to “${name}”.` : `“${name}” is already authorized.`, 'ok');
    reloadServer(id);
    return;
  }
  let target = null;
  try {
    target = new URL(start.authorizationUrl);
  } catch {
    target = null;
  }
  if (!target || (target.protocol !== 'https:' && target.protocol !== 'http:')) {
    popup.close();
    notify(`Refused to open the authorization link of “${name}”: it is not an http(s) URL.`, 'error');
    return;
  }
  const previous = state.flows.get(id);
  if (previous) clearInterval(previous.watch);
  const flow = { popup, origin: target.origin, name, personal, watch: null };
  state.flows.set(id, flow);
  // The callback page may close the window without a message reaching this page (another
  // origin, a closed opener link): then the server's state is read once the window is gone.
  flow.watch = setInterval(() => {
    if (!popup.closed) return;
    if (state.flows.get(id) === flow) {
      finishFlow(id);
      reloadServer(id).then(() => {
        const entry = state.entries.get(id);
        const grant = entry && (personal ? myAuthorization(entry.server) : entry.server.oauth);
        const pending = grant && grant.flowInProgress;
        if (entry && (pending || !usable(entry.server))) {
          notify(`The authorization window of “${name}” was closed before it finished.`, 'error');
        }
      });
    }
  }, 500);
  popup.location.href = target.href;
  notify(`Authorize “${name}” in the window that opened.`);
}

function finishFlow(id, close = false) {
  const flow = state.flows.get(id);
  if (!flow) return;
  clearInterval(flow.watch);
  state.flows.delete(id);
  if (close && !flow.popup.closed) flow.popup.close();
}

window.addEventListener('message', (event) => {
  const message = event.data;
  if (!message || typeof message !== 'object' || message.type !== 'mcp-oauth') return;
  if (typeof message.ok !== 'boolean' || typeof message.reason !== 'string') return;
  if (message.serverId !== null && typeof message.serverId !== 'string') return;
  let id = null;
  for (const [serverId, flow] of state.flows) {
    if (flow.popup === event.source) id = serverId;
  }
  if (id === null) return;
  const flow = state.flows.get(id);
  // Only this server's own pages may report: the callback page is served from the origin
  // of the begin link, which is this console's origin unless the public URL says otherwise.
  if (event.origin !== window.location.origin && event.origin !== flow.origin) return;
  if (message.serverId !== null && message.serverId !== id) return;
  finishFlow(id);
  if (message.ok) {
    notify(connectedText(flow), 'ok');
  } else {
    const why = flowWords(message);
    notify(`Authorizing “${flow.name}” failed. ${why}`, 'error');
  }
  reloadServer(id);
});

// ---------------------------------------------------------------------------------------
// Tools: the catalogue, and calling a tool with JSON arguments.

async function toggleTools(entry) {
  const show = entry.detail.hidden;
  entry.detail.hidden = !show;
  entry.toggle.setAttribute('aria-expanded', show ? 'true' : 'false');
  entry.toggle.title = show ? 'Hide tools' : 'Show tools';
  if (!show) return;
  renderTools(entry);
  if (perUser(entry.server) && canSeeMembers()) loadMembers(entry);
  // The catalogue may have changed while it was hidden.
  try {
    await loadTools(entry);
  } catch (error) {
    entry.toolsPanel.replaceChildren(
      el('p', { class: 'error', role: 'alert' }, `Could not load the tools: ${describeError(error)}`));
  }
}

// The whole catalogue, page by page (a server's catalogue is capped by the tools quota).
async function loadTools(entry) {
  const tools = [];
  let after = null;
  for (;;) {
    const data = await api(QUERIES.tools, { id: entry.server.id, after });
    if (!data.mcpServer) return;
    const page = data.mcpServer.tools;
    tools.push(...page.nodes);
    if (!page.pageInfo.hasNextPage) break;
    after = page.pageInfo.endCursor;
  }
  setTools(entry, tools);
}

// Redraw the catalogue only when it changed, so a live update does not wipe the arguments
// and results on show.
function setTools(entry, tools) {
  const changed = !entry.toolsLoaded || JSON.stringify(tools) !== JSON.stringify(entry.tools);
  entry.tools = tools;
  entry.toolsLoaded = true;
  if (changed && !entry.detail.hidden) renderTools(entry);
}

function renderTools(entry) {
  const panel = entry.toolsPanel;
  const s = entry.server;
  const children = [el('h3', {}, `Tools of ${s.name}`)];
  if (!entry.toolsLoaded) {
    children.push(el('p', { class: 'muted' }, 'Loading tools…'));
  } else if (!entry.tools.length) {
    let hint = 'No tools stored. Refresh tools to list them.';
    if (s.authStatus === 'HEADERS_REJECTED') hint = 'No tools yet: the server rejected its headers; correct them first.';
    else if (s.authType === 'UNDETECTED') hint = 'No tools yet: its auth type could not be detected.';
    else if (perUser(s) && !usable(s)) hint = 'No tools yet: connect your account first.';
    else if (machineClient(s) && !usable(s)) hint = 'No tools yet: the machine client has no token.';
    else if (s.authType === 'OAUTH' && !perUser(s) && !hasGrant(s)) hint = 'No tools yet: connect the server first.';
    children.push(el('p', { class: 'muted' }, hint));
  }
  for (const tool of entry.tools) children.push(toolCard(entry, tool));
  panel.replaceChildren(...children);
}

// ---------------------------------------------------------------------------------------
// Per-user servers in the detail: the person's own account, and (admins) who has connected.

function renderAccount(entry) {
  const s = entry.server;
  const panel = entry.accountPanel;
  if (!perUser(s)) {
    panel.hidden = true;
    panel.replaceChildren();
    entry.accountKey = null;
    return;
  }
  const own = myAuthorization(s);
  const [text, tone, reason] = myState(entry);
  // Redrawn only when something on show changed (relative times age), so focus stays put.
  const key = JSON.stringify([text, tone, reason, own, s.name, s.authType,
    own.authorizedAt && fromNow(own.authorizedAt), own.expiresAt && fromNow(own.expiresAt)]);
  if (entry.accountKey === key) return;
  entry.accountKey = key;
  const facts = el('p', { class: 'facts' }, badge(text, tone));
  if (own.authorizedAt) facts.append(el('span', {}, '· first connected ', moment(own.authorizedAt)));
  if (own.authorized && own.expiresAt) facts.append(el('span', {}, '· token expires ', moment(own.expiresAt)));
  const children = [
    el('h3', {}, 'Your account'),
    facts,
    el('p', { class: 'muted small' },
      'This server has per-user credentials: each member connects their own account, and their calls act as them.'),
  ];
  if (reason && reason !== text) children.push(el('p', { class: 'muted small' }, reason));
  if (own.authorized && own.scopes && own.scopes.length) {
    children.push(el('p', { class: 'small' }, `Scopes: ${own.scopes.join(' ')}`));
  }
  if (s.authType === 'OAUTH') children.push(el('div', { class: 'buttons' }, ...myAccountButtons(entry)));
  panel.setAttribute('aria-label', `Your account on ${s.name}`);
  refill(panel, children, entry.toggle);
  panel.hidden = false;
}

// A machine-client server in the detail: its token, how its client authenticates (never the
// secret or key itself) and what to do when it has no token.
function renderMachine(entry) {
  const s = entry.server;
  const panel = entry.machinePanel;
  if (!machineClient(s)) {
    panel.hidden = true;
    panel.replaceChildren();
    entry.machineKey = null;
    return;
  }
  const grant = s.oauth || {};
  const [text, tone] = machineState(s);
  const reason = words(s.statusReason);
  const fix = machineFix(s);
  // Redrawn only when something on show changed (relative times age).
  const key = JSON.stringify([text, tone, reason, fix, grant, s.name, s.oauthClientId, s.hasOauthClientSecret,
    s.hasOauthClientKey, grant.expiresAt && fromNow(grant.expiresAt),
    grant.lastRefreshedAt && fromNow(grant.lastRefreshedAt)]);
  if (entry.machineKey === key) return;
  entry.machineKey = key;
  const facts = el('p', { class: 'facts' }, badge(text, tone));
  if (s.authStatus === 'AUTHORIZED' && grant.expiresAt) facts.append(el('span', {}, '· token expires ', moment(grant.expiresAt)));
  if (grant.lastRefreshedAt) facts.append(el('span', {}, '· token obtained ', moment(grant.lastRefreshedAt)));
  const proofs = [s.hasOauthClientKey ? 'a private key' : null, s.hasOauthClientSecret ? 'a client secret' : null]
    .filter(Boolean);
  const client = s.oauthClientId ? `Client id: ${s.oauthClientId}. ` : '';
  const stored = proofs.length
    ? `It proves who it is with ${proofs.join(' or ')}, stored encrypted and never shown.`
    : 'No secret or private key is stored.';
  const children = [
    el('h3', {}, 'Machine client'),
    facts,
    el('p', { class: 'muted small' },
      'This server is reached with the workspace’s machine client: it gets its own tokens (client credentials), and no one connects an account.'),
    el('p', { class: 'small' }, `${client}${stored}`),
  ];
  if (grant.issuer) children.push(el('p', { class: 'small' }, `Authorization server: ${grant.issuer}`));
  if (s.authStatus === 'AUTHORIZED' && grant.scopes && grant.scopes.length) {
    children.push(el('p', { class: 'small' }, `Scopes: ${grant.scopes.join(' ')}`));
  }
  if (reason && reason !== text) children.push(el('p', { class: 'muted small reason' }, reason));
  if (fix) children.push(el('p', { class: 'small hint-text' }, fix));
  panel.setAttribute('aria-label', `Machine client of ${s.name}`);
  refill(panel, children, entry.toggle);
  panel.hidden = false;
}

// A time, relative, with the local time as its title.
function moment(iso) {
  return el('time', { datetime: iso, title: localTime(iso) }, fromNow(iso));
}

function renderMembers(entry) {
  const s = entry.server;
  const panel = entry.membersPanel;
  if (!perUser(s) || !canSeeMembers() || (entry.members === null && entry.membersError === null)) {
    panel.hidden = true;
    panel.replaceChildren();
    entry.membersKey = null;
    return;
  }
  const key = JSON.stringify([s.name, entry.membersError,
    (entry.members || []).map((m) => [m, fromNow(m.authorizedAt), m.expiresAt && fromNow(m.expiresAt)])]);
  if (entry.membersKey === key) return;
  entry.membersKey = key;
  const children = [el('h3', {}, 'Connected members')];
  if (entry.membersError !== null) {
    children.push(el('p', { class: 'error-text small' }, `Could not read who has connected: ${entry.membersError}`));
  } else if (!entry.members.length) {
    children.push(el('p', { class: 'muted' }, 'No member has connected an account yet.'));
  } else {
    children.push(el('ul', { class: 'member-list' }, ...entry.members.map((member) => memberItem(entry, member))));
    children.push(el('div', { class: 'buttons' }, button('Disconnect everyone',
      (e) => confirmDisconnectAll(entry, e.currentTarget),
      { class: 'danger', 'aria-label': `Disconnect every member from ${s.name}` })));
  }
  panel.setAttribute('aria-label', `Members connected to ${s.name}`);
  refill(panel, children, entry.toggle);
  panel.hidden = false;
}

function memberItem(entry, member) {
  const name = member.user ? member.user.name : 'A former member';
  const item = el('li', { class: 'member' },
    el('strong', { class: 'member-name' }, name),
    member.authorized ? badge('Authorized', 'ok') : badge('Must connect again', 'warn'),
    el('span', { class: 'muted small' }, 'first connected ', moment(member.authorizedAt)));
  if (member.authorized && member.expiresAt) {
    item.append(el('span', { class: 'muted small' }, 'token expires ', moment(member.expiresAt)));
  }
  if (member.user) {
    item.append(button('Disconnect', (e) => confirmDisconnectMember(entry, member.user, e.currentTarget), {
      'aria-label': `Disconnect ${name} from ${entry.server.name}`,
    }));
  }
  return item;
}

// Read who has connected to a per-user server (admins only), page by page. A refusal (the role
// changed meanwhile) hides the list without a word: it is not an error of the person's doing.
async function loadMembers(entry) {
  clearTimeout(entry.membersTimer);
  const id = entry.server.id;
  if (state.entries.get(id) !== entry) return;
  if (!perUser(entry.server) || !canSeeMembers()) {
    entry.members = null;
    entry.membersError = null;
    renderMembers(entry);
    return;
  }
  entry.membersRequest += 1;
  const request = entry.membersRequest;
  const members = [];
  let after = null;
  let failure = null;
  try {
    for (;;) {
      const data = await api(QUERIES.members, { id, after });
      if (!data.mcpServer) return;
      const page = data.mcpServer.authorizations;
      members.push(...page.nodes);
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
  } catch (error) {
    failure = error;
  }
  // Only the newest answer counts.
  if (request !== entry.membersRequest || state.entries.get(id) !== entry) return;
  if (failure && failure instanceof ApiError && failure.code === 'FORBIDDEN') {
    entry.members = null;
    entry.membersError = null;
  } else if (failure) {
    entry.members = null;
    entry.membersError = describeError(failure);
  } else {
    entry.members = members;
    entry.membersError = null;
  }
  renderMembers(entry);
}

// Read who has connected again shortly, once for a burst of changes.
function scheduleMembers(entry) {
  if (!perUser(entry.server) || !canSeeMembers()) return;
  clearTimeout(entry.membersTimer);
  entry.membersTimer = setTimeout(() => loadMembers(entry), 300);
}

function confirmDisconnectMember(entry, user, trigger) {
  const server = entry.server.name;
  openConfirm({
    title: `Disconnect ${user.name}`,
    text: `Disconnect ${user.name}’s account from “${server}”? Their tokens are revoked, and they must connect their account again to call its tools.`,
    action: 'Disconnect',
    trigger,
    run: async () => {
      const data = await api(QUERIES.disconnectMember, { id: entry.server.id, user: user.id });
      upsertServer(data.disconnectMcpOauth);
      loadMembers(entry);
      notify(`${user.name} is disconnected from “${server}”; their tokens were revoked.`, 'ok');
    },
  });
}

function confirmDisconnectAll(entry, trigger) {
  const server = entry.server.name;
  openConfirm({
    title: 'Disconnect everyone',
    text: `Disconnect every member’s account from “${server}”? All their tokens are revoked, and each must connect their account again to call its tools.`,
    action: 'Disconnect everyone',
    trigger,
    run: async () => {
      const data = await api(QUERIES.disconnectAll, { id: entry.server.id });
      upsertServer(data.disconnectMcpOauth);
      loadMembers(entry);
      notify(`Every member is disconnected from “${server}”; their tokens were revoked.`, 'ok');
    },
  });
}

function toolCard(entry, tool) {
  const id = `${entry.server.id}-${tool.name}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const card = el('article', { class: 'tool', 'data-tool': tool.name });
  const heading = el('h4', {}, el('code', {}, tool.name));
  if (tool.title && tool.title !== tool.name) heading.append(' ', el('span', { class: 'muted' }, tool.title));
  card.append(heading);
  if (tool.description) card.append(el('p', { class: 'description' }, tool.description));
  card.append(el('details', {}, el('summary', {}, 'Input schema'), el('pre', { class: 'schema' }, pretty(tool.inputSchema))));

  const form = el('form', { class: 'call', novalidate: true });
  const argumentsId = `args-${id}`;
  const area = el('textarea', { id: argumentsId, rows: 3, spellcheck: 'false', class: 'arguments' });
  area.value = '{}';
  // The outcome sits after the form, not in it: what a server asks is answered with forms of
  // its own.
  const result = el('div', { class: 'result', 'aria-live': 'polite' });
  form.append(
    el('label', { for: argumentsId }, `Arguments for ${tool.name} (JSON object)`),
    area,
    el('div', { class: 'buttons' }, el('button', { type: 'submit' }, 'Call')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    callTool(entry.server.id, tool.name, area, result, form.querySelector('button[type=submit]'));
  });
  card.append(form, result);
  return card;
}

async function callTool(serverId, name, area, result, control) {
  let args;
  try {
    args = area.value.trim() === '' ? {} : JSON.parse(area.value);
  } catch (error) {
    showCallProblem(result, `The arguments are not valid JSON: ${error.message}`);
    area.focus();
    return;
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    showCallProblem(result, 'The arguments must be a JSON object, for example {"message": "hello"}.');
    area.focus();
    return;
  }
  const call = { serverId, tool: name, result, exchange: beginExchange(result) };
  result.replaceChildren(el('p', { class: 'muted' }, `Calling ${name}…`));
  try {
    const data = await busy(control, () => api(QUERIES.call, { id: serverId, name, args }));
    if (!isCurrent(call)) return;
    renderOutcome(call, data.callMcpTool);
  } catch (error) {
    if (!isCurrent(call)) return;
    renderCallError(serverId, result, error);
  }
}

// A call to a per-user server without the person's own working grant: anyone connects their
// own account, whatever their role.
function connectMyAccountPrompt(id, error) {
  const moreScopes = error.extensions.reason === 'insufficient_scope';
  const text = moreScopes
    ? 'The server needs more permissions than your account granted. Connect your account again to consent to them.'
    : 'This server acts as each member’s own account, and yours is not connected, or its authorization expired or was revoked. Connect your account to call its tools.';
  return el('div', { class: 'reauth', role: 'alert' },
    el('p', {}, el('strong', {}, 'Connect your account. '), text),
    el('p', { class: 'muted small' }, `Error code: ${error.code}`),
    button('Connect my account', () => connect(id), { class: 'primary' }));
}

function showCallProblem(result, text) {
  result.replaceChildren(el('p', { class: 'error', role: 'alert' }, text));
}

function renderResult(result, outcome) {
  const head = el('p', { class: 'result-head' },
    outcome.isError ? badge('The tool reported an error', 'bad') : badge('OK', 'ok'));
  const blocks = outcome.content.map(contentBlock);
  result.replaceChildren(head, ...blocks);
  const unanswered = Array.isArray(outcome.unansweredInput) ? outcome.unansweredInput : [];
  if (unanswered.length > 0) {
    // The server asked mid-call, where nobody can answer: it was told "cancel".
    head.after(el('div', { class: 'notice', 'data-tone': 'warn', role: 'status' },
      el('p', {}, el('strong', {}, 'The server asked for input it could not get. '),
        'Servers of its protocol revision ask in the middle of a call, where Switchboard cannot ask you, so each request was cancelled and the result is what the tool did without it.'),
      el('ul', {}, ...unanswered.map((asked) => el('li', {}, asked.message || '(no message)',
        asked.url ? el('span', { class: 'muted small' }, ` (${asked.url})`) : '')))));
  }
  if (outcome.structuredContent !== null && outcome.structuredContent !== undefined) {
    result.append(el('details', {}, el('summary', {}, 'Structured content'),
      el('pre', {}, pretty(outcome.structuredContent))));
  }
}

function contentBlock(block) {
  if (block && block.type === 'text' && typeof block.text === 'string') {
    return el('pre', { class: 'content text' }, block.text);
  }
  if (block && (block.type === 'image' || block.type === 'audio')) {
    const size = typeof block.data === 'string' ? ` (${Math.round(block.data.length * 0.75)} bytes)` : '';
    return el('p', { class: 'content muted' }, `${block.type}: ${block.mimeType || 'unknown type'}${size}`);
  }
  if (block && block.type === 'resource' && block.resource) {
    const text = typeof block.resource.text === 'string' ? block.resource.text : pretty(block.resource);
    return el('div', { class: 'content' }, el('div', { class: 'muted small' }, String(block.resource.uri || 'resource')), el('pre', {}, text));
  }
  return el('pre', { class: 'content' }, pretty(block));
}

function renderCallError(serverId, result, error) {
  const code = error instanceof ApiError ? error.code : 'ERROR';
  if (code === 'REAUTH_REQUIRED') {
    // The error names the server to connect.
    const named = typeof error.extensions.serverId === 'string' && state.entries.get(error.extensions.serverId);
    const id = named ? error.extensions.serverId : serverId;
    const entry = state.entries.get(id);
    if (entry && perUser(entry.server)) {
      result.replaceChildren(connectMyAccountPrompt(id, error));
      reloadServer(id);
      return;
    }
    if (entry && machineClient(entry.server)) {
      // Nobody can authorize a machine client: its credentials are what needs fixing.
      result.replaceChildren(el('div', { class: 'reauth', role: 'alert' },
        el('p', {}, el('strong', {}, 'No token. '), machineRefusedText()),
        el('p', { class: 'muted small' }, `Error code: ${code}`)));
      reloadServer(id);
      return;
    }
    const moreScopes = error.extensions && error.extensions.reason === 'insufficient_scope';
    const text = moreScopes
      ? 'The server needs more permissions than it was granted. Reconnect it to consent to them.'
      : 'The server’s authorization has expired or was revoked. Reconnect it to go on.';
    const prompt = el('div', { class: 'reauth', role: 'alert' },
      el('p', {}, el('strong', {}, 'Reconnect required. '), text),
      el('p', { class: 'muted small' }, `Error code: ${code}`));
    if (canEdit()) {
      prompt.append(button('Reconnect', () => connect(serverId), { class: 'primary' }));
    } else {
      prompt.append(el('p', { class: 'small' }, 'Ask an editor of this workspace to reconnect it.'));
    }
    result.replaceChildren(prompt);
    reloadServer(serverId);
    return;
  }
  if (code === 'SERVER_DISABLED' || headersRejected(error)) {
    result.replaceChildren(el('div', { class: 'call-error', role: 'alert' }, el('p', {}, describeError(error))));
    reloadServer(serverId);
    return;
  }
  result.replaceChildren(el('div', { class: 'call-error', role: 'alert' },
    el('p', {}, el('strong', {}, `${code}: `), error.message)));
}

// ---------------------------------------------------------------------------------------
// Input a server asks for in the middle of a tool call: forms and web pages to visit. Every
// request gets an answer block; the answers go back together with the call's continuation,
// and the server answers with the tool's result or asks again. Its words, its field names and
// its URLs are shown as text; a URL is only ever opened when the person asks, in a new window
// that cannot reach back to this page.

// The call on show in each result area: an answer that arrives after another call started
// there is dropped.
const exchanges = new WeakMap();
let roundsDrawn = 0;

// Within this long of its expiry a continuation's deadline is shown.
const EXPIRY_WARNING_MS = 2 * 60 * 1000;

const ANSWER_WORDS = { ACCEPT: 'accepted', DECLINE: 'declined', CANCEL: 'cancelled' };

function beginExchange(result) {
  const exchange = {};
  exchanges.set(result, exchange);
  return exchange;
}

function isCurrent(call) {
  return exchanges.get(call.result) === call.exchange && call.result.isConnected;
}

function renderOutcome(call, outcome) {
  if (outcome.status === 'INPUT_REQUIRED') {
    renderInputRequired(call, outcome);
  } else {
    renderResult(call.result, outcome);
  }
}

function renderInputRequired(call, outcome) {
  const requests = Array.isArray(outcome.inputRequests) ? outcome.inputRequests : [];
  if (!requests.length || typeof outcome.continuation !== 'string' || !outcome.continuation) {
    showCallProblem(call.result, `${call.tool} asked for input but sent nothing that can be answered.`);
    return;
  }
  roundsDrawn += 1;
  const round = {
    call,
    id: `ask-${roundsDrawn}`,
    continuation: outcome.continuation,
    expiresAt: outcome.continuationExpiresAt,
    requests,
    answers: new Map(),
    blocks: [],
    sending: el('p', { class: 'muted', hidden: true }, 'Sending your answers…'),
    problem: el('p', { class: 'error', role: 'alert' }),
    expiry: el('p', { class: 'small expiry', hidden: true }),
  };
  const asks = requests.length === 1
    ? `${call.tool} needs your input.`
    : `${call.tool} needs your input: answer each of its ${requests.length} requests; the answers are sent together.`;
  const head = el('p', { class: 'result-head' }, badge('Input required', 'warn'), ' ', asks);
  round.blocks = requests.map((request, index) => inputBlock(round, request, index));
  call.result.replaceChildren(head, round.expiry, ...round.blocks.map((block) => block.form),
    round.sending, round.problem);
  watchExpiry(round);
  round.blocks[0].focus();
}

// Say when the continuation expires once it is close, and that it has once it has.
function watchExpiry(round) {
  const at = Date.parse(round.expiresAt);
  if (Number.isNaN(at)) return;
  const node = round.expiry;
  let timer = null;
  const update = () => {
    if (!node.isConnected) {
      clearInterval(timer);
      return;
    }
    const left = at - Date.now();
    if (left <= 0) {
      clearInterval(timer);
      node.className = 'small error-text expiry';
      node.replaceChildren('This request has expired: call the tool again to start over.');
      node.hidden = false;
    } else if (left <= EXPIRY_WARNING_MS) {
      node.className = 'small hint-text expiry';
      node.replaceChildren('Answer soon: this request expires ', moment(round.expiresAt), '.');
      node.hidden = false;
    }
  };
  timer = setInterval(update, 5000);
  update();
}

// One request's answer block: its own form, so Enter in a field submits it.
function inputBlock(round, request, index) {
  const id = `${round.id}-${index}`;
  const form = el('form', {
    class: 'ask',
    novalidate: true,
    'data-key': request.key,
    'data-mode': request.mode,
    'aria-labelledby': `${id}-message`,
  });
  const body = el('fieldset', { class: 'ask-body' });
  const status = el('p', { class: 'answer-status small' });
  const error = el('p', { class: 'error', role: 'alert' });
  const block = { request, index, form, body, status, error, fields: [], first: null };
  if (round.requests.length > 1) {
    body.append(el('p', { class: 'muted small ask-count' }, `Request ${index + 1} of ${round.requests.length}`));
  }
  body.append(el('p', { class: 'ask-message', id: `${id}-message` }, request.message || ''));
  const decline = button('Decline', () => settle(round, block, { key: request.key, action: 'DECLINE' }));
  const cancel = button('Cancel', () => settle(round, block, { key: request.key, action: 'CANCEL' }));
  if (request.mode === 'URL') {
    const done = urlRequest(block, id);
    body.append(error, el('div', { class: 'buttons' }, done, decline, cancel));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (!done.disabled) settle(round, block, { key: request.key, action: 'ACCEPT' });
    });
  } else {
    formRequest(block, id);
    body.append(error, el('div', { class: 'buttons' },
      el('button', { type: 'submit', class: 'primary' }, 'Submit'), decline, cancel));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      acceptForm(round, block);
    });
  }
  form.append(body, status);
  block.focus = () => {
    const target = block.first || body.querySelector('button:not(:disabled)');
    if (target) target.focus();
  };
  return block;
}

// A web page the server sends the person to: the full address as text, opened only on request.
function urlRequest(block, id) {
  const { request, body } = block;
  let target = null;
  try {
    target = new URL(request.url);
  } catch {
    target = null;
  }
  const safe = Boolean(target) && (target.protocol === 'https:' || target.protocol === 'http:');
  const address = el('code', { class: 'url', id: `${id}-url` }, String(request.url || ''));
  body.append(el('p', { class: 'ask-url' }, el('span', { class: 'muted small' }, 'Address'), address));
  const done = el('button', { type: 'submit', class: 'primary' }, 'Done');
  if (safe) {
    const open = button('Open', () => {
      window.open(target.href, '_blank', 'noopener,noreferrer');
    }, { 'aria-describedby': `${id}-url` });
    body.append(el('p', { class: 'hint' }, open, ' ',
      'Opens it in a new window. Press Done once you have finished there, or Decline.'));
    block.first = open;
  } else {
    done.disabled = true;
    body.append(el('p', { class: 'error-text small' }, 'This address is not an http(s) URL, so it is not offered. Decline or cancel.'));
  }
  return done;
}

// A form: one field per property of the requested schema.
function formRequest(block, id) {
  const schema = isObject(block.request.requestedSchema) ? block.request.requestedSchema : {};
  const properties = isObject(schema.properties) ? schema.properties : {};
  const required = new Set(Array.isArray(schema.required) ? schema.required.filter((n) => typeof n === 'string') : []);
  const fields = el('div', { class: 'fields' });
  block.fields = Object.entries(properties).map(([name, property], index) =>
    formField(`${id}-f${index}`, name, isObject(property) ? property : {}, required.has(name)));
  for (const field of block.fields) fields.append(field.node);
  if (!block.fields.length) fields.append(el('p', { class: 'muted small' }, 'The form has no fields.'));
  block.body.append(fields);
  block.first = block.fields.length ? block.fields[0].control : null;
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// The choices of a single or multiple choice: `enum` (with the older `enumNames` as titles),
// or `oneOf`/`anyOf` of `{const, title}`. Null when it is no choice.
function choicesOf(schema) {
  if (!isObject(schema)) return null;
  const plain = (value) => ['string', 'number', 'boolean'].includes(typeof value);
  if (Array.isArray(schema.enum)) {
    const names = Array.isArray(schema.enumNames) ? schema.enumNames : [];
    return schema.enum
      .map((value, i) => ({ value, label: typeof names[i] === 'string' && names[i] ? names[i] : String(value) }))
      .filter((choice) => plain(choice.value));
  }
  for (const keyword of ['oneOf', 'anyOf']) {
    if (!Array.isArray(schema[keyword])) continue;
    return schema[keyword]
      .filter((option) => isObject(option) && plain(option.const))
      .map((option) => ({
        value: option.const,
        label: typeof option.title === 'string' && option.title ? option.title : String(option.const),
      }));
  }
  return null;
}

const INPUT_TYPES = { email: 'email', uri: 'url', date: 'date', 'date-time': 'datetime-local' };

// One field: { node, control (to focus), name, read() → { value } | { omit } | { error } }.
function formField(id, name, property, required) {
  const title = typeof property.title === 'string' && property.title.trim() ? property.title : name;
  const hintId = `${id}-hint`;
  const hint = typeof property.description === 'string' && property.description.trim()
    ? el('p', { class: 'hint', id: hintId }, property.description)
    : null;
  const described = hint ? hintId : null;
  const mark = required ? el('span', { class: 'muted required' }, ' (required)') : null;
  const missing = () => (required ? { error: `${title} is required.` } : { omit: true });
  const invalid = (control) => ({ error: `${title}: ${control.validationMessage}` });
  const field = { name, control: null, node: null, read: null };
  const choices = choicesOf(property);

  if (property.type === 'array') {
    const options = choicesOf(property.items) || [];
    const boxes = options.map((option, i) => {
      const box = el('input', { type: 'checkbox', id: `${id}-c${i}` });
      box.checked = Array.isArray(property.default) && property.default.includes(option.value);
      return box;
    });
    field.node = el('fieldset', { class: 'field choices', 'aria-describedby': described },
      el('legend', {}, title, mark),
      ...options.map((option, i) => el('label', { class: 'inline', for: boxes[i].id }, boxes[i], el('span', {}, option.label))),
      hint);
    field.control = boxes[0] || null;
    field.read = () => {
      const chosen = options.filter((_, i) => boxes[i].checked).map((option) => option.value);
      const count = (key) => (Number.isInteger(property[key]) ? property[key] : null);
      if (count('minItems') !== null && chosen.length < count('minItems')) {
        return { error: `${title}: choose at least ${count('minItems')}.` };
      }
      if (count('maxItems') !== null && chosen.length > count('maxItems')) {
        return { error: `${title}: choose at most ${count('maxItems')}.` };
      }
      if (!chosen.length && !required) return { omit: true };
      return { value: chosen };
    };
    return field;
  }

  let control;
  if (choices && property.type !== 'boolean') {
    control = el('select', { id, 'aria-describedby': described, required });
    control.append(el('option', { value: '' }, required ? 'Choose…' : 'No choice'));
    choices.forEach((choice, i) => control.append(el('option', { value: String(i) }, choice.label)));
    const preset = choices.findIndex((choice) => choice.value === property.default);
    if (preset >= 0) control.value = String(preset);
    field.read = () => (control.value === '' ? missing() : { value: choices[Number(control.value)].value });
  } else if (property.type === 'boolean') {
    control = el('input', { id, type: 'checkbox', 'aria-describedby': described });
    control.checked = property.default === true;
    field.read = () => ({ value: control.checked });
  } else if (property.type === 'number' || property.type === 'integer') {
    const integer = property.type === 'integer';
    control = el('input', {
      id,
      type: 'number',
      inputmode: integer ? 'numeric' : 'decimal',
      step: integer ? '1' : 'any',
      min: typeof property.minimum === 'number' ? property.minimum : null,
      max: typeof property.maximum === 'number' ? property.maximum : null,
      'aria-describedby': described,
      required,
    });
    if (typeof property.default === 'number') control.value = String(property.default);
    field.read = () => {
      if (control.value === '') return control.validity.badInput ? invalid(control) : missing();
      if (!control.checkValidity()) return invalid(control);
      const number = Number(control.value);
      if (!Number.isFinite(number)) return { error: `${title} must be a number.` };
      if (integer && !Number.isInteger(number)) return { error: `${title} must be a whole number.` };
      return { value: number };
    };
  } else if (property.type === 'string') {
    const format = typeof property.format === 'string' ? property.format : '';
    const length = (key) => (Number.isInteger(property[key]) && property[key] >= 0 ? property[key] : null);
    control = el('input', {
      id,
      type: INPUT_TYPES[format] || 'text',
      minlength: length('minLength'),
      maxlength: length('maxLength'),
      autocomplete: 'off',
      'aria-describedby': described,
      required,
    });
    if (typeof property.default === 'string') {
      control.value = format === 'date-time' ? localDateTime(property.default) : property.default;
    }
    field.read = () => {
      const text = control.value;
      if (text === '') return missing();
      if (!control.checkValidity()) return invalid(control);
      const characters = [...text].length;
      if (length('minLength') !== null && characters < length('minLength')) {
        return { error: `${title} must be at least ${length('minLength')} characters long.` };
      }
      if (length('maxLength') !== null && characters > length('maxLength')) {
        return { error: `${title} must be at most ${length('maxLength')} characters long.` };
      }
      if (format === 'date-time') {
        // The picker gives a local time without an offset; the server wants RFC 3339.
        const at = new Date(text);
        return Number.isNaN(at.getTime()) ? { error: `${title} is not a valid date and time.` } : { value: at.toISOString() };
      }
      return { value: text };
    };
  } else {
    const kind = typeof property.type === 'string' ? property.type : 'unknown';
    field.node = el('div', { class: 'field' },
      el('span', { class: 'field-label' }, title, mark),
      el('p', { class: 'hint' }, `This asks for a kind of value the console cannot fill in (${kind}).`),
      hint);
    field.read = () => (required ? { error: `${title} cannot be filled in here: decline or cancel instead.` } : { omit: true });
    return field;
  }
  field.control = control;
  if (property.type === 'boolean') {
    // The box first, its words beside it (the label's flex gap spaces them).
    field.node = el('div', { class: 'field' }, el('label', { class: 'inline', for: id }, control, el('span', {}, title, mark)), hint);
  } else {
    field.node = el('div', { class: 'field' }, el('label', { for: id }, title, mark), control, hint);
  }
  return field;
}

// An ISO time as the value of a datetime-local input, in local time ('' if it is none).
function localDateTime(iso) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

// Submit: the form's content, checked here first as a convenience (the server checks it too).
function acceptForm(round, block) {
  block.error.textContent = '';
  const pairs = [];
  for (const field of block.fields) {
    const read = field.read();
    if (read.error) {
      block.error.textContent = read.error;
      if (field.control) field.control.focus();
      return;
    }
    if (!read.omit) pairs.push([field.name, read.value]);
  }
  // fromEntries, so a field named like an Object property is still just a field.
  settle(round, block, { key: block.request.key, action: 'ACCEPT', content: Object.fromEntries(pairs) });
}

// Record one request's answer; once every request has one, send them all.
function settle(round, block, response) {
  block.error.textContent = '';
  round.answers.set(block.request.key, response);
  block.body.disabled = true;
  const pending = round.blocks.filter((other) => !round.answers.has(other.request.key));
  if (!pending.length) {
    sendAnswers(round);
    return;
  }
  showAnswered(round, block);
  pending[0].focus();
}

// Beside an answered request, while others wait for theirs: the answer, and a way to change it.
function showAnswered(round, block) {
  const response = round.answers.get(block.request.key);
  if (!response) return;
  const words = block.request.mode === 'URL' && response.action === 'ACCEPT' ? 'done' : ANSWER_WORDS[response.action];
  block.status.replaceChildren(`Your answer: ${words}. It is sent once every request is answered. `,
    button('Change', () => reopen(round, block), { 'aria-label': `Change your answer to request ${block.index + 1}` }));
}

// Let a request be answered again.
function reopen(round, block, message = '') {
  round.answers.delete(block.request.key);
  block.body.disabled = false;
  block.status.replaceChildren();
  block.error.textContent = message;
  block.focus();
}

async function sendAnswers(round) {
  const { call } = round;
  const responses = round.requests.map((request) => round.answers.get(request.key));
  for (const block of round.blocks) {
    block.body.disabled = true;
    block.status.replaceChildren();
  }
  round.problem.textContent = '';
  round.sending.hidden = false;
  let data;
  try {
    data = await api(QUERIES.answer, { continuation: round.continuation, responses });
  } catch (error) {
    if (!isCurrent(call)) return;
    round.sending.hidden = true;
    answerRefused(round, error);
    return;
  }
  if (!isCurrent(call)) return;
  renderOutcome(call, data.continueMcpToolCall);
  // Focus was on a control that is gone: the outcome takes it (a new round focused its own).
  const head = call.result.querySelector('.result-head');
  if (head && data.continueMcpToolCall.status !== 'INPUT_REQUIRED') {
    head.tabIndex = -1;
    head.focus();
  }
}

// The server refused the answers: a form's content goes back to its block, with the server's
// words; a continuation that expired (or is not this person's) ends the exchange.
function answerRefused(round, error) {
  const field = error instanceof ApiError && error.code === 'BAD_USER_INPUT' ? error.extensions.field : null;
  if (typeof field === 'string' && field.startsWith('responses.') && field.endsWith('.content')) {
    const key = field.slice('responses.'.length, -'.content'.length);
    const block = round.blocks.find((b) => b.request.key === key)
      || round.blocks.find((b) => b.request.key.slice(0, key.length) === key);
    if (block) {
      for (const other of round.blocks) if (other !== block) showAnswered(round, other);
      reopen(round, block, `The server refused this answer: ${error.message}`);
      const named = refusedField(block, error.message.slice(field.length + 2));
      if (named && named.control) named.control.focus();
      return;
    }
  }
  if (field === 'continuation') {
    round.call.result.replaceChildren(el('div', { class: 'call-error', role: 'alert' },
      el('p', {}, el('strong', {}, `${error.code}: `), error.message),
      el('p', {}, 'This request can no longer be answered. Call the tool again to start over.')));
    return;
  }
  if (error instanceof ApiError && error.code === 'BAD_USER_INPUT') {
    // Something about the set of answers: let each be given again.
    for (const block of round.blocks) reopen(round, block);
    round.problem.textContent = `The server refused the answers: ${error.message}`;
    round.blocks[0].focus();
    return;
  }
  renderCallError(round.call.serverId, round.call.result, error);
}

// The field a server's message about a form's content names first, if any.
function refusedField(block, message) {
  return block.fields.find((field) => message.startsWith(`${field.name}:`) || message.startsWith(`${field.name} is `)
    || message.startsWith(`"${field.name}"`));
}

// ---------------------------------------------------------------------------------------
// Header rows in the add and edit forms. Values are password fields and are cleared after use.

function addHeaderRow(container) {
  const index = container.children.length + 1;
  const stamp = `${container.closest('form').id}-h${Date.now()}-${index}`;
  const name = el('input', { id: `${stamp}-name`, class: 'header-name', autocomplete: 'off', spellcheck: 'false' });
  const value = el('input', { id: `${stamp}-value`, class: 'header-value', type: 'password', autocomplete: 'new-password' });
  const row = el('div', { class: 'header-row' },
    el('label', { for: name.id }, `Header ${index} name`), name,
    el('label', { for: value.id }, `Header ${index} value`), value);
  row.append(button('Remove', () => row.remove(), { 'aria-label': `Remove header ${index}` }));
  container.append(row);
  name.focus();
}

function readHeaders(form) {
  const headers = [];
  for (const row of form.querySelectorAll('.header-row')) {
    const name = row.querySelector('.header-name').value.trim();
    const value = row.querySelector('.header-value').value;
    if (!name && !value) continue;
    if (!name) throw new Error('Every header needs a name.');
    headers.push({ name, value });
  }
  return headers;
}

function clearHeaderRows(form) {
  const rows = form.querySelector('.header-rows');
  if (rows) rows.replaceChildren();
}

// The credential mode chosen in the add or edit form: its one-line explanation, the notes
// beside the client fields, and the private key field, on show for a machine client (and in
// the edit form whenever a key is stored, so it can be removed).
function showCredentials(form) {
  const mode = form.elements.credentials.value;
  const machine = mode === 'CLIENT_CREDENTIALS';
  form.querySelector('.credentials-hint').textContent = CREDENTIALS[mode] || '';
  for (const [selector, text] of Object.entries(CLIENT_NOTES[machine ? 'machine' : 'oauth'])) {
    const note = form.querySelector(selector);
    if (note) note.textContent = text;
  }
  const keyStored = form.id === 'edit-form' && editing !== null && editing.original.hasOauthClientKey;
  for (const node of form.querySelectorAll('.machine-only')) node.hidden = !(machine || keyStored);
}

// The private key typed into a form, if its field is on show and holds more than blanks.
function typedKey(form) {
  const field = form.elements.oauthClientKey;
  return !field.hidden && field.value.trim() ? field.value : null;
}

// A machine client that got no token after a change, in words ('' when it has one).
function machineTrouble(server) {
  if (!machineClient(server) || usable(server)) return '';
  const why = words(server.statusReason) || server.lastError || machineState(server)[0];
  return `its machine client got no token: ${why}`;
}

function formError(form, text) {
  const node = form.querySelector('.error');
  node.textContent = text;
}

// ---------------------------------------------------------------------------------------
// Adding, editing and deleting servers.

async function onAdd(event) {
  event.preventDefault();
  const form = event.currentTarget;
  formError(form, '');
  const name = form.elements.name.value.trim();
  const url = form.elements.url.value.trim();
  if (!name || !url) {
    formError(form, 'A name and a URL are required.');
    (name ? form.elements.url : form.elements.name).focus();
    return;
  }
  let headers;
  try {
    headers = readHeaders(form);
  } catch (error) {
    formError(form, error.message);
    return;
  }
  const input = { workspaceId: state.workspaceId, name, url, credentials: form.elements.credentials.value };
  if (form.elements.authType.value) input.authType = form.elements.authType.value;
  if (headers.length) input.headers = headers;
  const clientId = form.elements.oauthClientId.value.trim();
  if (clientId) input.oauthClientId = clientId;
  const secret = form.elements.oauthClientSecret.value;
  if (secret) input.oauthClientSecret = secret;
  const key = typedKey(form);
  if (key !== null) input.oauthClientKey = key;
  const submit = form.querySelector('button[type=submit]');
  try {
    const data = await busy(submit, () => api(QUERIES.create, { i: input }));
    const created = data.createMcpServer;
    // Secrets leave the page with the request: clear every input that held one.
    form.reset();
    clearHeaderRows(form);
    upsertServer(created.server);
    const trouble = machineTrouble(created.server);
    if (trouble) {
      notify(`Added “${created.server.name}”, but ${trouble}`, 'warn');
    } else if (machineClient(created.server)) {
      const count = created.server.toolCount;
      notify(`Added “${created.server.name}”. Its machine client got a token; ${count} tool${count === 1 ? '' : 's'} listed.`, 'ok');
    } else if (created.authType === 'UNDETECTED') {
      notify(`Added “${created.server.name}”, but its auth type was not detected: detection could not reach it (${created.detection || 'no answer'}). Detect auth once it is reachable, or choose an auth type with Edit.`, 'warn');
    } else {
      const how = input.authType ? 'as chosen' : 'detected';
      const mode = perUser(created.server) ? ' Each member connects their own account.' : '';
      notify(`Added “${created.server.name}”. Auth type: ${AUTH_TYPES[created.authType] || created.authType} (${how}).${mode}`, 'ok');
    }
  } catch (error) {
    formError(form, fieldMessage(error));
    focusField(form, error);
  }
}

function fieldMessage(error) {
  if (error instanceof ApiError && error.code === 'CONFLICT') {
    return `${error.message} (CONFLICT: this URL is already registered in the workspace)`;
  }
  return describeError(error);
}

function focusField(form, error) {
  const field = error instanceof ApiError ? error.extensions.field : null;
  const target = typeof field === 'string' && form.elements[field];
  if (target && typeof target.focus === 'function') target.focus();
}

let editing = null;

function openEdit(entry, trigger) {
  const dialog = $('#edit-dialog');
  const form = $('#edit-form');
  const s = entry.server;
  editing = { id: s.id, original: s, trigger };
  form.reset();
  clearHeaderRows(form);
  formError(form, '');
  form.elements.name.value = s.name;
  form.elements.url.value = s.url;
  form.elements.description.value = s.description || '';
  form.elements.enabled.checked = s.enabled;
  form.elements.oauthClientId.value = s.oauthClientId || '';
  form.elements.authType.value = '';
  form.elements.credentials.value = s.credentials;
  showCredentials(form);
  $('#edit-auth-current').textContent = `Leave unchanged (${AUTH_TYPES[s.authType] || s.authType})`;
  $('#edit-secret-hint').textContent = s.hasOauthClientSecret
    ? 'A secret is stored. Leave this empty to keep it.'
    : 'No secret is stored.';
  form.elements.clearSecret.disabled = !s.hasOauthClientSecret;
  $('#edit-key-hint').textContent = s.hasOauthClientKey
    ? 'A private key is stored (it is never shown). Leave this empty to keep it, or paste a new one to replace it.'
    : 'No private key is stored. Paste one (PEM: PKCS#8, PKCS#1 or SEC1) for private_key_jwt.';
  form.elements.clearKey.disabled = !s.hasOauthClientKey;
  form.querySelector('.edit-header-names').textContent = s.headerNames.length
    ? `Stored headers: ${s.headerNames.join(', ')} (values are never shown).`
    : 'No headers are stored.';
  $('#edit-title').textContent = `Edit ${s.name}`;
  dialog.showModal();
  form.elements.name.focus();
}

async function onEdit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  if (!editing) return;
  formError(form, '');
  const before = editing.original;
  const input = {};
  const name = form.elements.name.value.trim();
  const url = form.elements.url.value.trim();
  const description = form.elements.description.value.trim();
  const clientId = form.elements.oauthClientId.value.trim();
  if (name !== before.name) input.name = name;
  if (url !== before.url) input.url = url;
  if (description !== (before.description || '')) input.description = description;
  if (form.elements.enabled.checked !== before.enabled) input.enabled = form.elements.enabled.checked;
  if (clientId !== (before.oauthClientId || '')) input.oauthClientId = clientId;
  const authType = form.elements.authType.value;
  if (authType && authType !== before.authType) input.authType = authType;
  const credentials = form.elements.credentials.value;
  if (credentials !== before.credentials) input.credentials = credentials;
  const secret = form.elements.oauthClientSecret.value;
  if (secret) input.oauthClientSecret = secret;
  else if (form.elements.clearSecret.checked) input.oauthClientSecret = '';
  const key = typedKey(form);
  if (key !== null) input.oauthClientKey = key;
  else if (!form.elements.clearKey.hidden && form.elements.clearKey.checked) input.oauthClientKey = '';
  if (form.elements.replaceHeaders.checked) {
    try {
      input.headers = readHeaders(form);
    } catch (error) {
      formError(form, error.message);
      return;
    }
  }
  const { id, trigger } = editing;
  if (!Object.keys(input).length) {
    closeDialog($('#edit-dialog'), trigger);
    return;
  }
  const submit = form.querySelector('button[type=submit]');
  try {
    const data = await busy(submit, () => api(QUERIES.update, { id, i: input }));
    form.reset();
    clearHeaderRows(form);
    closeDialog($('#edit-dialog'), trigger);
    const saved = data.updateMcpServer;
    upsertServer(saved);
    // A change of how it is reached asked for a token at once: say when none came.
    const reached = ['url', 'authType', 'enabled', 'credentials', 'oauthClientId', 'oauthClientSecret', 'oauthClientKey']
      .some((field) => field in input);
    const trouble = reached && saved.enabled ? machineTrouble(saved) : '';
    if (trouble) notify(`Saved “${saved.name}”, but ${trouble}`, 'warn');
    else notify(`Saved “${saved.name}”.`, 'ok');
  } catch (error) {
    formError(form, fieldMessage(error));
    focusField(form, error);
  }
}

function closeDialog(dialog, trigger) {
  const form = dialog.querySelector('form');
  form.reset();
  clearHeaderRows(form);
  if (dialog.open) dialog.close();
  editing = null;
  deleting = null;
  confirming = null;
  if (trigger && trigger.isConnected) trigger.focus();
}

let deleting = null;

function openDelete(entry, trigger) {
  const dialog = $('#delete-dialog');
  deleting = { id: entry.server.id, name: entry.server.name, trigger };
  formError(dialog.querySelector('form'), '');
  const grants = perUser(entry.server) ? 'Every member’s own OAuth grant is revoked' : 'Its OAuth grant is revoked';
  $('#delete-text').textContent = `Delete “${entry.server.name}”? ${grants} and its tools are forgotten. This cannot be undone.`;
  dialog.showModal();
  dialog.querySelector('button.cancel').focus();
}

async function onDelete(event) {
  event.preventDefault();
  const form = event.currentTarget;
  if (!deleting) return;
  const { id, name } = deleting;
  const submit = form.querySelector('button[type=submit]');
  try {
    await busy(submit, () => api(QUERIES.remove, { id }));
    closeDialog($('#delete-dialog'), null);
    removeServer(id);
    notify(`Deleted “${name}”.`, 'ok');
    $('#workspace').focus();
  } catch (error) {
    formError(form, describeError(error));
  }
}

// A question asked before an action that cannot be undone (disconnecting members): `run`
// does it, and a failure is shown in the dialog, which stays open.
let confirming = null;

function openConfirm({ title, text, action, trigger, run }) {
  const dialog = $('#confirm-dialog');
  const form = dialog.querySelector('form');
  confirming = { run, trigger };
  formError(form, '');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  form.querySelector('button[type=submit]').textContent = action;
  dialog.showModal();
  dialog.querySelector('button.cancel').focus();
}

async function onConfirm(event) {
  event.preventDefault();
  const form = event.currentTarget;
  if (!confirming) return;
  const { run, trigger } = confirming;
  const submit = form.querySelector('button[type=submit]');
  try {
    await busy(submit, run);
    closeDialog($('#confirm-dialog'), trigger);
  } catch (error) {
    formError(form, describeError(error));
  }
}

// ---------------------------------------------------------------------------------------
// Start-up.

function wire() {
  $('#sign-in-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('#token');
    const token = input.value.trim();
    input.value = '';
    if (!token) {
      showSignIn('Paste an API token.');
      return;
    }
    const submit = event.currentTarget.querySelector('button[type=submit]');
    try {
      await busy(submit, () => signIn(token));
    } catch (error) {
      const text = error instanceof ApiError && error.code === 'UNAUTHENTICATED'
        ? 'This token was not accepted. Check that it was pasted whole and has not been revoked.'
        : describeError(error);
      showSignIn(text);
    }
  });
  $('#sign-out').addEventListener('click', () => signOut());
  $('#workspace').addEventListener('change', (event) => selectWorkspace(event.currentTarget.value));
  $('#reload').addEventListener('click', (event) => {
    busy(event.currentTarget, loadServers)
      .then(() => notify('Reloaded.', 'ok'))
      .catch((error) => notify(`Could not load the servers: ${describeError(error)}`, 'error'));
  });
  $('#add-form').addEventListener('submit', onAdd);
  $('#edit-form').addEventListener('submit', onEdit);
  $('#delete-dialog form').addEventListener('submit', onDelete);
  $('#confirm-dialog form').addEventListener('submit', onConfirm);
  for (const form of [$('#add-form'), $('#edit-form')]) {
    form.querySelector('.add-header').addEventListener('click', () => addHeaderRow(form.querySelector('.header-rows')));
    const credentials = form.elements.credentials;
    credentials.addEventListener('change', () => showCredentials(form));
    // A reset puts the default mode back after its event: show that one.
    form.addEventListener('reset', () => queueMicrotask(() => showCredentials(form)));
    showCredentials(form);
  }
  for (const dialog of [$('#edit-dialog'), $('#delete-dialog'), $('#confirm-dialog')]) {
    dialog.querySelector('button.cancel').addEventListener('click', () => {
      const trigger = (editing && editing.trigger) || (deleting && deleting.trigger)
        || (confirming && confirming.trigger);
      closeDialog(dialog, trigger);
    });
    // Escape closes a modal dialog natively; clear what it held all the same.
    dialog.addEventListener('close', () => {
      const form = dialog.querySelector('form');
      form.reset();
      clearHeaderRows(form);
    });
  }
  // Relative times age; refresh them now and then.
  setInterval(() => {
    for (const entry of state.entries.values()) renderRow(entry);
  }, 30000);
}

async function main() {
  wire();
  await loadIdentityProviders();
  const params = new URLSearchParams(window.location.search);
  if (params.has('state') && (params.has('code') || params.has('error'))) {
    await finishProviderSignIn(params);
    return;
  }
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    showSignIn();
    return;
  }
  // A provider's token that expired while the page was closed is renewed first.
  const session = providerSession();
  if (session && session.expiresAt && session.expiresAt <= Date.now() && !(await renewProviderToken())) return;
  const token = sessionStorage.getItem(TOKEN_KEY);
  try {
    await signIn(token);
    scheduleRenewal();
  } catch (error) {
    if (error instanceof ApiError && error.code === 'UNAUTHENTICATED') {
      signOut(providerSession() ? SESSION_EXPIRED : 'Your token is no longer accepted. Sign in again.');
    } else {
      // Keep the token: the server may just be restarting.
      showSignIn(`Could not reach the server: ${describeError(error)}`);
    }
  }
}

main();
