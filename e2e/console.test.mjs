// The Switchboard console in a real Chromium, driven with playwright-core.
//
// tests/console.rs starts Switchboard, a fake OAuth authorization server and fake MCP servers
// on 127.0.0.1, then runs this script with their URLs in the environment. The script walks
// through the console as a person would: sign in, add servers, connect one through the OAuth
// popup, call its tools, watch statuses change live, lose and regain the live connection, get
// asked to reconnect once the grant is revoked, detect the auth type of a server that could not
// be asked, correct rejected headers, and check that hostile names and descriptions stay text.
// A per-user server is added with the form: the admin and a second member (in a tab of their
// own) each connect their own account and are told apart upstream, the admin sees and
// disconnects who has connected, and a call without one's own grant asks to connect it.
// A machine-client server (client credentials) is added with its private key: it gets its own
// token with nobody connecting it, its key is never shown again, a key the authorization
// server does not know leaves it rejected, and the right one recovers it.
// A server of revision 2026-07-28 shows its protocol revision, and its tools ask for input
// mid-call: forms built from the requested schema are filled in over two rounds, a page to visit
// is shown in full and opened only on request, and a form is declined.
// Reasons are shown in the schema's words, read once by introspection. It asks the Rust test to
// act on the world mid-way through CONTROL_URL.
//
// Every step prints "ok - <step>"; the first failure prints the step and the reason, saves
// console-failure.png in E2E_OUTPUT and exits 1 (see kit.mjs). No address outside 127.0.0.1 is
// ever contacted.

import path from 'node:path';
import {
  check, control as controlAt, eventually, expectText, openBrowser, openPage, refuseNonLoopback, required,
  run, sleep, step, textOf, TIMEOUT,
} from './kit.mjs';

const BASE = required('SWITCHBOARD_URL');
const TOKEN = required('SWITCHBOARD_TOKEN');
const CONTROL = required('CONTROL_URL');
const DOCS_URL = required('DOCS_MCP_URL');
const CALENDAR_URL = required('CALENDAR_MCP_URL');
const SEARCH_URL = required('SEARCH_MCP_URL');
const HOSTILE_URL = required('HOSTILE_MCP_URL');
const UNREACHABLE_URL = required('UNREACHABLE_MCP_URL');
const KEYED_URL = required('KEYED_MCP_URL');
const KEYED_VALUE = required('KEYED_HEADER_VALUE');
// A per-user OAuth server whose `whoami` tool names the caller's upstream account.
const TEAM_URL = required('TEAM_MCP_URL');
// A viewer of the same workspace, signed in in a second tab.
const MEMBER_TOKEN = required('MEMBER_TOKEN');
const MEMBER_NAME = required('MEMBER_NAME');
// A server reached with the workspace's machine client (client credentials); its `whoami`
// names the client. The client's private key (PEM), and one its authorization server does not
// know.
const MACHINE_URL = required('MACHINE_MCP_URL');
const MACHINE_CLIENT_ID = required('MACHINE_CLIENT_ID');
const MACHINE_KEY = required('MACHINE_KEY');
const UNKNOWN_MACHINE_KEY = required('UNKNOWN_MACHINE_KEY');
// Well-formed PEM armour around bytes that are no key; its body must never be echoed.
const BAD_KEY_BODY = 'bm90IGEga2V5IGF0IGFsbA==';
const BAD_KEY = `-----BEGIN PRIVATE KEY-----\n${BAD_KEY_BODY}\n-----END PRIVATE KEY-----\n`;
// Nothing listens there either; a path of its own, so it is not the same URL as Legacy's.
const OFFLINE_URL = new URL('/offline', UNREACHABLE_URL).href;
// Speaks MCP 2026-07-28 only; its survey, confirm and open_url tools ask for input mid-call.
const FORMS_URL = required('FORMS_MCP_URL');
const HOSTILE_TEXT = required('HOSTILE_TEXT');
const CHROMIUM = required('CHROMIUM_PATH');
const OUTPUT = required('E2E_OUTPUT');

// A line of a PEM key's body: the key, however it is cut.
const keyLine = (pem) => pem.split('\n')[1];
const SECRETS = ['calendar-secret-value', 'legacy-secret-value', 'keyed-wrong-value', KEYED_VALUE, TOKEN, MEMBER_TOKEN,
  MACHINE_KEY, keyLine(MACHINE_KEY), UNKNOWN_MACHINE_KEY, keyLine(UNKNOWN_MACHINE_KEY)];

refuseNonLoopback([BASE, CONTROL, DOCS_URL, CALENDAR_URL, SEARCH_URL, HOSTILE_URL, UNREACHABLE_URL, KEYED_URL, TEAM_URL,
  MACHINE_URL, FORMS_URL]);

const control = (action) => controlAt(CONTROL, action);

// The schema's descriptions of status reasons, asked here directly: the console must show
// these words.
async function schemaWords() {
  const response = await fetch(`${BASE}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ query: `{
      status: __type(name: "McpStatusReason") { enumValues { name description } } }` }),
  });
  const body = await response.json();
  check(body.data && body.data.status, `introspection answered ${JSON.stringify(body)}`);
  const words = (type) => Object.fromEntries((type ? type.enumValues : [])
    .map((v) => [v.name, (v.description || '').trim()]));
  return { status: words(body.data.status) };
}

let WORDS = null;

// ---------------------------------------------------------------------------------------
// The browser.

const browser = await openBrowser(CHROMIUM, OUTPUT);
const { page, problems } = browser;

// What a tab asks the API over HTTP: `sink` gets each GraphQL request body.
function watchApi(on, sink) {
  on.on('request', (request) => {
    if (!request.url().endsWith('/graphql') || request.method() !== 'POST') return;
    let body = null;
    try {
      body = JSON.parse(request.postData() || 'null');
    } catch {
      return;
    }
    if (body && typeof body.query === 'string') sink(body);
  });
}

// What the console asks the API, to count its introspection queries and read its inputs.
const vocabularyRequests = [];
const updateInputs = [];
const createInputs = [];
// The answers sent with continueMcpToolCall, in order.
const answersSent = [];
watchApi(page, (body) => {
  if (body.query.includes('__type(name: "McpStatusReason")')) vocabularyRequests.push(body.query);
  if (body.query.includes('continueMcpToolCall')) answersSent.push(body.variables.responses);
  if (body.query.includes('updateMcpServer')) updateInputs.push(body.variables.i);
  if (body.query.includes('createMcpServer')) createInputs.push(body.variables.i);
});

// The second member's tab, opened mid-way, and what it asks the API.
let memberPage = null;
const memberQueries = [];

// The live socket goes through Playwright, so the test can cut it like a network would.
let socketToPage = null;
await page.routeWebSocket(/\/graphql\/ws$/, (socket) => {
  socketToPage = socket;
  socket.connectToServer();
});

const rowOf = (name, on = page) => on.locator('tr.server').filter({
  has: on.getByRole('button', { name, exact: true }),
});
const cellOf = (row, label) => row.locator(`td[data-label="${label}"]`);
// The detail row under a server's row: its own account, who has connected, its tools.
async function detailOf(row, on = page) {
  return on.locator(`tr.detail[id="tools-${await row.getAttribute('data-server-id')}"]`);
}
const notice = page.locator('#notice');
const live = page.locator('#live');

async function addServer({
  name, url, authType = '', credentials = 'SHARED', clientId = '', clientSecret = '', headers = [],
}) {
  const form = page.locator('#add-form');
  await form.getByLabel('Name', { exact: true }).fill(name);
  await form.getByLabel('URL', { exact: true }).fill(url);
  await form.getByLabel('Auth type').selectOption(authType);
  await form.getByLabel('Credentials').selectOption(credentials);
  await form.getByLabel(/OAuth client id/).fill(clientId);
  await form.getByLabel(/OAuth client secret/).fill(clientSecret);
  for (const [index, [headerName, value]] of headers.entries()) {
    await form.getByRole('button', { name: 'Add a header' }).click();
    await form.getByLabel(`Header ${index + 1} name`).fill(headerName);
    await form.getByLabel(`Header ${index + 1} value`).fill(value);
  }
  await form.getByRole('button', { name: 'Add server' }).click();
  await expectText(notice, `Added “${name}”`, `the console confirms ${name}`);
  await rowOf(name).waitFor();
}

// Click Connect (or Reconnect) and let the popup run: begin link, authorization server (which
// approves at once), Switchboard's callback page, which reports back and closes itself.
async function authorizeInPopup(clickConnect, what, on = page) {
  const opened = on.waitForEvent('popup');
  await clickConnect();
  const popup = await opened;
  const closed = popup.waitForEvent('close', { timeout: TIMEOUT });
  await popup.waitForURL(/\/oauth\/callback\?/, { timeout: TIMEOUT });
  await expectText(popup.locator('h1'), 'Connected', `the callback page of ${what}`);
  await closed;
}

async function assertNoSecretsOnPage() {
  const html = await page.content();
  const values = await page.evaluate(() => [...document.querySelectorAll('input, textarea')].map((i) => i.value));
  for (const secret of SECRETS) {
    check(!html.includes(secret), `a secret is in the page's markup: ${secret.slice(0, 6)}…`);
    check(!values.includes(secret), `a secret is still in an input: ${secret.slice(0, 6)}…`);
  }
}

// No private key anywhere in the page: not in its markup (text and attributes), not in the
// value of any field.
async function assertNoKeyOnPage() {
  const found = await page.evaluate(() => ({
    markup: document.documentElement.outerHTML.includes('PRIVATE KEY'),
    fields: [...document.querySelectorAll('input, textarea')].some((field) => field.value.includes('PRIVATE KEY')),
  }));
  check(!found.markup, 'a private key is in the page\'s markup');
  check(!found.fields, 'a private key is still in a field');
  await assertNoSecretsOnPage();
}

// Fill the add form for a machine client, and submit it.
async function addMachine({ name, clientId, key }) {
  const form = page.locator('#add-form');
  await form.getByLabel('Name', { exact: true }).fill(name);
  await form.getByLabel('URL', { exact: true }).fill(MACHINE_URL);
  await form.getByLabel('Auth type').selectOption('');
  await form.getByLabel('Credentials').selectOption('CLIENT_CREDENTIALS');
  await form.getByLabel(/OAuth client id/).fill(clientId);
  await form.getByLabel(/OAuth client secret/).fill('');
  await form.getByLabel(/^Private key/).fill(key);
  await form.getByRole('button', { name: 'Add server' }).click();
}

// Open the edit dialog of `name`, paste `key` as its private key, and save.
async function replaceKey(name, key) {
  const dialog = page.locator('#edit-dialog');
  await rowOf(name).getByRole('button', { name: `Edit ${name}` }).click();
  await dialog.getByLabel(/^Private key/).fill(key);
  await dialog.getByRole('button', { name: 'Save' }).click();
  await eventually(async () => check(!(await dialog.evaluate((d) => d.open)), 'still open'), 'the dialog closes');
}

const isFocused = (locator) => locator.evaluate((node) => node === document.activeElement);

async function callTool(card, args) {
  await card.locator('textarea').fill(args);
  await card.getByRole('button', { name: 'Call', exact: true }).click();
}

// Open the confirmation `open` shows and check its question; cancel it and check with
// `unchanged` that nothing happened; then open it again and confirm with `action`.
async function confirmTwice(open, question, unchanged, action) {
  const dialog = page.locator('#confirm-dialog');
  await open();
  await expectText(dialog, question, 'the question');
  await dialog.getByRole('button', { name: 'Cancel', exact: true }).click();
  await eventually(async () => check(!(await dialog.evaluate((d) => d.open)), 'still open'), 'Cancel closes it');
  await unchanged();
  await open();
  await dialog.getByRole('button', { name: action, exact: true }).click();
  await eventually(async () => check(!(await dialog.evaluate((d) => d.open)), 'still open'), 'the dialog closes');
}

async function overflowAt(width) {
  await page.setViewportSize({ width, height: 900 });
  try {
    return await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  } finally {
    await page.setViewportSize({ width: 1360, height: 900 });
  }
}

// ---------------------------------------------------------------------------------------
// The scenario.

async function scenario() {
  await step('the schema describes the reasons the console shows', async () => {
    WORDS = await schemaWords();
    for (const [kind, name] of [['status', 'CREATED'], ['status', 'UNREACHABLE'], ['status', 'DETECTION_FAILED'],
      ['status', 'HEADERS_REJECTED'], ['status', 'CONNECTED'], ['status', 'CLIENT_REJECTED']]) {
      check(WORDS[kind][name], `the schema has no description for ${name}`);
    }
  });

  await step('the console loads and asks for a token', async () => {
    const response = await page.goto(`${BASE}/`);
    check(response && response.status() === 200, `GET / answered ${response && response.status()}`);
    await page.getByLabel('API token').waitFor();
    check(await page.locator('#workbench').isHidden(), 'the workbench shows before sign-in');
  });

  await step('a wrong token is refused with a clear message', async () => {
    await page.getByLabel('API token').fill('sbt_not_a_real_token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectText(page.locator('#sign-in-error'), 'This token was not accepted', 'the sign-in error');
    check(await page.evaluate(() => sessionStorage.length) === 0, 'a refused token was stored');
  });

  await step('signing in shows the workspace and goes live', async () => {
    await page.getByLabel('API token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'MCP servers' }).waitFor();
    await expectText(page.locator('#viewer'), 'Signed in as admin', 'the signed-in user');
    const workspace = await page.locator('#workspace option:checked').innerText();
    check(workspace === 'Default', `workspace is ${workspace}`);
    await expectText(live, 'Live', 'the live indicator');
    check(await page.getByLabel('API token').inputValue() === '', 'the token stays in the input');
    const stored = await page.evaluate(() => Object.values({ ...sessionStorage }));
    check(stored.includes(TOKEN), 'the token is kept in sessionStorage');
    await assertNoSecretsOnPage();
    // Survives only as long as the document: a reload would wipe it.
    await page.evaluate(() => { window.__sameDocument = true; });
  });

  await step('an OAuth server is added and detected as OAuth', async () => {
    await addServer({ name: 'Docs', url: DOCS_URL });
    await expectText(notice, 'Auth type: OAuth (detected)', 'the detected auth type');
    const row = rowOf('Docs');
    await expectText(cellOf(row, 'Auth'), 'OAuth', 'the auth type of Docs');
    await expectText(cellOf(row, 'Authorization'), 'Needs authorization', 'Docs before the flow');
    await expectText(cellOf(row, 'Authorization'), WORDS.status.CREATED, 'the reason in the schema\'s words');
    await expectText(cellOf(row, 'Connection'), 'Disconnected', 'Docs before the flow');
    await row.getByRole('button', { name: 'Detect auth of Docs' }).waitFor();
    check(vocabularyRequests.length === 1, `${vocabularyRequests.length} introspection queries for the reasons`);
  });

  await step('Connect runs the popup flow and the row turns connected live', async () => {
    const row = rowOf('Docs');
    await authorizeInPopup(() => row.getByRole('button', { name: 'Connect Docs' }).click(), 'Docs');
    await expectText(cellOf(row, 'Connection'), 'Connected', 'Docs after the flow');
    await expectText(cellOf(row, 'Authorization'), 'Authorized', 'Docs after the flow');
    await expectText(cellOf(row, 'Tools'), '2', 'the tool count of Docs');
    await expectText(cellOf(row, 'Token expires'), /^in \d+ (minutes|hour)/, 'the token expiry of Docs');
    await expectText(notice, '“Docs” is connected.', 'the connected notice');
    await row.getByRole('button', { name: 'Disconnect Docs' }).waitFor();
    check(await row.getByRole('button', { name: 'Connect Docs', exact: true }).count() === 0, 'Connect is offered to an authorized server');
    check(await page.evaluate(() => window.__sameDocument === true), 'the page was reloaded');
  });

  await step('the tools open from the keyboard with descriptions and schemas', async () => {
    const toggle = page.getByRole('button', { name: 'Docs', exact: true });
    await toggle.focus();
    await page.keyboard.press('Enter');
    check(await toggle.getAttribute('aria-expanded') === 'true', 'Enter did not expand the row');
    const echo = page.locator('article[data-tool="echo"]');
    await expectText(echo.locator('.description'), 'Returns its arguments.', 'the echo description');
    await echo.getByText('Input schema').click();
    await expectText(echo.locator('pre.schema'), '"message"', 'the echo input schema');
    await page.locator('article[data-tool="fail"]').waitFor();
  });

  await step('arguments are checked as JSON before any call', async () => {
    const echo = page.locator('article[data-tool="echo"]');
    await callTool(echo, '{"message": ');
    await expectText(echo.locator('.result'), 'The arguments are not valid JSON', 'the JSON syntax error');
    await callTool(echo, '[1, 2]');
    await expectText(echo.locator('.result'), 'The arguments must be a JSON object', 'the non-object error');
  });

  await step('a tool call shows its content blocks and isError', async () => {
    const echo = page.locator('article[data-tool="echo"]');
    await callTool(echo, '{"message": "hello from the console"}');
    await expectText(echo.locator('.result'), 'hello from the console', 'the echo result');
    await expectText(echo.locator('.result .result-head'), 'OK', 'the echo outcome');
    const fail = page.locator('article[data-tool="fail"]');
    await callTool(fail, '{}');
    await expectText(fail.locator('.result'), 'The tool failed on purpose.', 'the failing tool result');
    await expectText(fail.locator('.result .result-head'), 'The tool reported an error', 'the isError flag');
  });

  await step('a pre-registered client is shown by id; its secret never is', async () => {
    await addServer({
      name: 'Calendar',
      url: CALENDAR_URL,
      clientId: 'calendar-console',
      clientSecret: 'calendar-secret-value',
    });
    const row = rowOf('Calendar');
    await expectText(cellOf(row, 'Auth'), 'Client: calendar-console', 'the client id of Calendar');
    await expectText(cellOf(row, 'Authorization'), 'Needs authorization', 'Calendar');
    await assertNoSecretsOnPage();
  });

  await step('only http(s) authorization links are opened', async () => {
    const row = rowOf('Calendar');
    await page.route('**/graphql', async (route) => {
      if (!(route.request().postData() || '').includes('startMcpOauth')) return route.fallback();
      await route.fulfill({
        contentType: 'application/json',
        body: JSON.stringify({ data: { startMcpOauth: {
          status: 'REDIRECT', authorizationUrl: 'javascript:window.__injected=3', expiresAt: null,
        } } }),
      });
    });
    const opened = page.waitForEvent('popup');
    await row.getByRole('button', { name: 'Connect Calendar' }).click();
    const popup = await opened;
    await expectText(notice, 'Refused to open the authorization link of “Calendar”', 'the refusal');
    await eventually(async () => check(popup.isClosed(), 'the popup is still open'), 'the popup closes');
    check(await page.evaluate(() => window.__injected) === undefined, 'the javascript: URL ran');
    await page.unroute('**/graphql');
  });

  await step('only the popup\'s own, well-formed message is believed', async () => {
    const row = rowOf('Calendar');
    const id = await row.getAttribute('data-server-id');
    // The begin link is replaced by a harmless page of this server, so the popup stays open
    // and nothing upstream changes.
    await page.route('**/graphql', async (route) => {
      if (!(route.request().postData() || '').includes('startMcpOauth')) return route.fallback();
      await route.fulfill({
        contentType: 'application/json',
        body: JSON.stringify({ data: { startMcpOauth: {
          status: 'REDIRECT', authorizationUrl: `${BASE}/healthz`, expiresAt: null,
        } } }),
      });
    });
    const opened = page.waitForEvent('popup');
    await row.getByRole('button', { name: 'Connect Calendar' }).click();
    const popup = await opened;
    await popup.waitForURL(/\/healthz$/);
    await page.unroute('**/graphql');
    await expectText(notice, 'Authorize “Calendar” in the window that opened.', 'the waiting notice');
    // From the console's own window, not the popup: ignored.
    await page.evaluate((serverId) => window.postMessage(
      { type: 'mcp-oauth', ok: true, serverId, reason: 'authorized' }, '*'), id);
    // From the popup but malformed: ignored.
    await popup.evaluate((serverId) => window.opener.postMessage(
      { type: 'mcp-oauth', ok: 'yes', serverId, reason: 'authorized' }, '*'), id);
    await sleep(300);
    await expectText(notice, 'Authorize “Calendar” in the window that opened.', 'the notice after ignored messages');
    // From the popup and well-formed: the failure is shown in the page's own words.
    const providerError = 'The authorization server did not grant access.';
    await popup.evaluate(([serverId, message]) => window.opener.postMessage(
      { type: 'mcp-oauth', ok: false, serverId, reason: 'provider_error', message }, '*'), [id, providerError]);
    await expectText(notice, `Authorizing “Calendar” failed. ${providerError}`, 'the failure notice');
    await popup.close();
    await expectText(cellOf(row, 'Authorization'), 'Needs authorization', 'Calendar is unchanged');
  });

  await step('an unreachable server reports errors and turns ERROR after three failures', async () => {
    await addServer({
      name: 'Legacy',
      url: UNREACHABLE_URL,
      authType: 'HEADERS',
      headers: [['X-Api-Key', 'legacy-secret-value']],
    });
    const row = rowOf('Legacy');
    await expectText(cellOf(row, 'Auth'), 'Headers: X-Api-Key', 'the header names of Legacy');
    await assertNoSecretsOnPage();
    const refresh = row.getByRole('button', { name: 'Refresh tools of Legacy' });
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      await refresh.click();
      await expectText(notice, 'Refreshing “Legacy” failed: UPSTREAM_ERROR', `failure ${attempt}`);
      await eventually(async () => check(await refresh.isEnabled(), 'still busy'), 'the refresh button');
    }
    await expectText(cellOf(row, 'Connection'), 'Error', 'Legacy after three failures');
    await expectText(cellOf(row, 'Authorization'), WORDS.status.UNREACHABLE, 'the reason');
  });

  await step('a server that cannot be asked is added as not detected, and Detect auth says so', async () => {
    const form = page.locator('#add-form');
    await form.getByLabel('Name', { exact: true }).fill('Offline');
    await form.getByLabel('URL', { exact: true }).fill(OFFLINE_URL);
    await form.getByLabel('Auth type').selectOption('');
    await form.getByRole('button', { name: 'Add server' }).click();
    await expectText(notice, 'Added “Offline”, but its auth type was not detected: detection could not reach it (unreachable)', 'the undetected notice');
    const row = rowOf('Offline');
    await expectText(cellOf(row, 'Auth'), 'Not detected', 'the auth type of Offline');
    await expectText(cellOf(row, 'Authorization'), WORDS.status.DETECTION_FAILED, 'the reason of Offline');
    check(await row.getByRole('button', { name: 'Connect Offline', exact: true }).count() === 0, 'Connect is offered to an undetected server');
    await row.getByRole('button', { name: 'Detect auth of Offline' }).click();
    await expectText(notice, 'The auth type of “Offline” could not be detected: detection could not reach it (unreachable).', 'the detection result');
  });

  await step('the edit dialog sets the auth type; a disabled server is refused plainly', async () => {
    const row = rowOf('Offline');
    await row.getByRole('button', { name: 'Edit Offline' }).click();
    const dialog = page.locator('#edit-dialog');
    const authType = dialog.getByLabel('Auth type');
    check(await authType.inputValue() === '', 'the auth type is not left unchanged by default');
    await expectText(authType.locator('option:checked'), 'Leave unchanged (Not detected)', 'the unchanged option');
    await authType.selectOption('NONE');
    await dialog.getByLabel('Enabled').uncheck();
    await dialog.getByRole('button', { name: 'Save' }).click();
    await expectText(notice, 'Saved “Offline”.', 'the saved notice');
    const sent = updateInputs.at(-1);
    check(sent && sent.authType === 'NONE' && sent.enabled === false, `the update sent ${JSON.stringify(sent)}`);
    await expectText(cellOf(row, 'Auth'), 'None', 'the auth type of Offline after the edit');
    await expectText(cellOf(row, 'Name'), 'Disabled', 'the disabled note');
    await row.getByRole('button', { name: 'Detect auth of Offline' }).click();
    await expectText(notice, 'Detecting the auth type of “Offline” failed: The server is disabled. Enable it with Edit first. (SERVER_DISABLED)', 'the disabled server');
  });

  await step('rejected headers are shown as such, with no OAuth, and editing them recovers', async () => {
    await addServer({
      name: 'Keyed',
      url: KEYED_URL,
      authType: 'HEADERS',
      headers: [['X-Api-Key', 'keyed-wrong-value']],
    });
    const row = rowOf('Keyed');
    await row.getByRole('button', { name: 'Refresh tools of Keyed' }).click();
    await expectText(notice, 'Refreshing “Keyed” failed: The server rejected its static headers. Edit its headers, then try again. (UPSTREAM_ERROR)', 'the rejected headers');
    await expectText(cellOf(row, 'Authorization'), 'Headers rejected', 'the auth status of Keyed');
    await expectText(cellOf(row, 'Authorization'), 'Edit the headers to correct them.', 'the hint');
    await expectText(cellOf(row, 'Authorization'), WORDS.status.HEADERS_REJECTED, 'the reason of Keyed');
    check(await row.getByRole('button', { name: 'Connect Keyed', exact: true }).count() === 0, 'OAuth is offered for rejected headers');
    await assertNoSecretsOnPage();

    await row.getByRole('button', { name: 'Edit Keyed' }).click();
    const dialog = page.locator('#edit-dialog');
    await dialog.getByLabel(/Replace the headers/).check();
    await dialog.getByRole('button', { name: 'Add a header' }).click();
    await dialog.getByLabel('Header 1 name').fill('X-Api-Key');
    await dialog.getByLabel('Header 1 value').fill(KEYED_VALUE);
    await dialog.getByRole('button', { name: 'Save' }).click();
    await expectText(notice, 'Saved “Keyed”.', 'the saved headers');
    const sent = updateInputs.at(-1);
    check(sent && !('authType' in sent), `an unchanged auth type was sent: ${JSON.stringify(sent)}`);
    await assertNoSecretsOnPage();
    await row.getByRole('button', { name: 'Refresh tools of Keyed' }).click();
    await expectText(notice, '“Keyed” refreshed: 1 tool.', 'the refresh with the right key');
    await expectText(cellOf(row, 'Connection'), 'Connected', 'Keyed after the edit');
    await expectText(cellOf(row, 'Authorization'), 'Not required', 'Keyed after the edit');
  });

  await step('each server shows the MCP revision it speaks, once it was reached', async () => {
    await addServer({ name: 'Forms', url: FORMS_URL });
    const row = rowOf('Forms');
    await row.getByRole('button', { name: 'Refresh tools of Forms' }).click();
    await expectText(notice, '“Forms” refreshed: 4 tools.', 'the refresh of Forms');
    await expectText(cellOf(row, 'URL'), 'MCP 2026-07-28 (stateless)', 'the revision of Forms');
    const docs = await textOf(cellOf(rowOf('Docs'), 'URL'));
    check(docs.endsWith('MCP 2025-11-25'), `the revision of Docs: ${docs}`);
    const legacy = await textOf(cellOf(rowOf('Legacy'), 'URL'));
    check(!legacy.includes('MCP 20'), `a server never reached shows a revision: ${legacy}`);
  });

  await step('a form request is answered, refused by the server once, and asks again', async () => {
    const row = rowOf('Forms');
    await row.getByRole('button', { name: 'Forms', exact: true }).click();
    // A tool that asks nothing answers at once, as on any server.
    const echo = (await detailOf(row)).locator('article[data-tool="echo"]');
    await callTool(echo, '{"message": "stateless hello"}');
    await expectText(echo.locator('.result .result-head'), 'OK', 'the echo outcome');
    await expectText(echo.locator('.result'), 'stateless hello', 'the echo result');
    const card = (await detailOf(row)).locator('article[data-tool="survey"]');
    await callTool(card, '{}');
    const result = card.locator('.result');
    await expectText(result.locator('.result-head'), 'Input required', 'the outcome of the first round');
    const ask = result.locator('form.ask');
    await expectText(ask, 'What is your name?', 'the server\'s question');
    const name = ask.getByLabel(/^Name/);
    await expectText(ask.locator('label'), 'Name (required)', 'the field, marked required');
    await eventually(async () => check(await isFocused(name), 'not focused'), 'the first field takes focus');

    // Checked here first: nothing is sent without a name.
    await ask.getByRole('button', { name: 'Submit' }).click();
    await expectText(ask.locator('.error'), 'Name is required.', 'the missing name');
    check(answersSent.length === 0, 'an incomplete form was sent');

    // The server's own check has the last word, shown next to the form.
    await page.route('**/graphql', async (route) => {
      const sent = route.request().postData() || '';
      if (!sent.includes('continueMcpToolCall')) return route.fallback();
      const body = JSON.parse(sent);
      body.variables.responses[0].content = { name: 42 };
      return route.fallback({ postData: JSON.stringify(body) });
    });
    await name.fill('Ada Lovelace');
    await ask.getByRole('button', { name: 'Submit' }).click();
    await expectText(ask.locator('.error'), 'The server refused this answer: responses.name.content: name: must be a string',
      'the server\'s refusal');
    await page.unroute('**/graphql');
    await eventually(async () => check(await isFocused(name), 'not focused'), 'the refused field takes focus');
    check(await name.inputValue() === 'Ada Lovelace', 'the refused form lost what was typed');

    // Enter submits the form; the server asks its second question.
    await name.press('Enter');
    await expectText(ask, 'Which colour do you like best?', 'the second question');
    const colour = ask.getByLabel(/^Colour/);
    await eventually(async () => check(await isFocused(colour), 'not focused'), 'the choice takes focus');
    const choices = await colour.locator('option').allInnerTexts();
    check(JSON.stringify(choices) === '["Choose…","red","green","blue"]', `the choices: ${JSON.stringify(choices)}`);
    await colour.selectOption({ label: 'green' });
    await ask.getByRole('button', { name: 'Submit' }).click();
    await expectText(result.locator('.result-head'), 'OK', 'the final outcome');
    await expectText(result, '"name":"Ada Lovelace"', 'the name in the result');
    await expectText(result, '"color":"green"', 'the colour in the result');
    await expectText(result, '"rounds":3', 'three rounds');
    check(await ask.count() === 0, 'the form stays after the call completed');
    check(JSON.stringify(answersSent.slice(-2)) === JSON.stringify([
      [{ key: 'name', action: 'ACCEPT', content: { name: 'Ada Lovelace' } }],
      [{ key: 'color', action: 'ACCEPT', content: { color: 'green' } }],
    ]), `the answers sent: ${JSON.stringify(answersSent)}`);
  });

  await step('a page to visit is shown in full and opened only on request, without an opener', async () => {
    const card = (await detailOf(rowOf('Forms'))).locator('article[data-tool="open_url"]');
    const pagesBefore = browser.context.pages().length;
    await callTool(card, '{}');
    const ask = card.locator('form.ask');
    await expectText(ask, 'Sign in to continue', 'the server\'s message');
    const shown = await textOf(ask.locator('code.url'));
    const target = new URL(shown);
    check(target.origin === new URL(FORMS_URL).origin && target.pathname === '/consent' && target.searchParams.get('id'),
      `the address shown: ${shown}`);
    const open = ask.getByRole('button', { name: 'Open', exact: true });
    await eventually(async () => check(await isFocused(open), 'not focused'), 'Open takes focus');
    await sleep(300);
    check(browser.context.pages().length === pagesBefore, 'a window opened by itself');

    // The fake server has no such page: the request goes to it as the browser sent it, and the
    // window gets a page of the test's own instead of Chromium's error page.
    const consentRequests = [];
    await browser.context.route(shown, async (route) => {
      consentRequests.push(route.request().headers());
      await route.fetch();
      await route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>Consent</title><p>Consent page</p>' });
    });
    const opened = browser.context.waitForEvent('page');
    await open.click();
    const visit = await opened;
    await visit.waitForLoadState('domcontentloaded');
    check(visit.url() === shown, `the window opened ${visit.url()}`);
    const seen = await visit.evaluate(() => ({ opener: window.opener === null, referrer: document.referrer }));
    check(seen.opener, 'the page can reach the console through window.opener');
    check(seen.referrer === '', `the page was told where it came from: ${seen.referrer}`);
    check(consentRequests.length === 1 && !('referer' in consentRequests[0]),
      `the page was asked for with ${JSON.stringify(consentRequests)}`);
    await visit.close();
    await browser.context.unroute(shown);

    await ask.getByRole('button', { name: 'Done' }).click();
    await expectText(card.locator('.result .result-head'), 'OK', 'the outcome');
    await expectText(card.locator('.result'), 'consented', 'the server heard the consent');
    check(JSON.stringify(answersSent.at(-1)) === '[{"key":"consent","action":"ACCEPT"}]',
      `the answer sent: ${JSON.stringify(answersSent.at(-1))}`);
  });

  await step('a form can be declined, and its deadline is shown once it is close', async () => {
    const card = (await detailOf(rowOf('Forms'))).locator('article[data-tool="confirm"]');
    // The continuation is said to expire in 90 seconds, so the console warns about it.
    await page.route('**/graphql', async (route) => {
      if (!(route.request().postData() || '').includes('callMcpTool')) return route.fallback();
      const response = await route.fetch();
      const body = await response.json();
      body.data.callMcpTool.continuationExpiresAt = new Date(Date.now() + 90_000).toISOString();
      return route.fulfill({ response, json: body });
    });
    await callTool(card, '{}');
    const ask = card.locator('form.ask');
    await expectText(ask, 'Confirm the action', 'the server\'s question');
    await page.unroute('**/graphql');
    await expectText(card.locator('.result .expiry'), /^Answer soon: this request expires in \d+ (minutes?|seconds?)\.$/,
      'the deadline');
    const confirmed = ask.getByLabel(/^Confirmed/);
    check(await confirmed.getAttribute('type') === 'checkbox', 'a boolean is not a checkbox');
    check(await ask.getByLabel('note').getAttribute('maxlength') === '100', 'the note has no maximum length');
    await ask.getByRole('button', { name: 'Decline' }).click();
    await expectText(card.locator('.result .result-head'), 'OK', 'the outcome');
    await expectText(card.locator('.result'), '"action":"decline"', 'the server heard the refusal');
    check(JSON.stringify(answersSent.at(-1)) === '[{"key":"confirm","action":"DECLINE"}]',
      `the answer sent: ${JSON.stringify(answersSent.at(-1))}`);
  });

  await step('several requests at once get one block each and are sent together', async () => {
    const card = (await detailOf(rowOf('Forms'))).locator('article[data-tool="confirm"]');
    // The server asks one thing; a second request, to visit a page that is no http(s) URL, is
    // added to its answer, and taken out of the answers again on their way to the server.
    await page.route('**/graphql', async (route) => {
      const sent = route.request().postData() || '';
      if (sent.includes('callMcpTool')) {
        const response = await route.fetch();
        const body = await response.json();
        body.data.callMcpTool.inputRequests.push({
          key: 'visit', mode: 'URL', message: 'Also visit this page', requestedSchema: null,
          url: 'javascript:window.__injected=4',
        });
        return route.fulfill({ response, json: body });
      }
      if (sent.includes('continueMcpToolCall')) {
        const body = JSON.parse(sent);
        body.variables.responses = body.variables.responses.filter((response) => response.key !== 'visit');
        return route.fallback({ postData: JSON.stringify(body) });
      }
      return route.fallback();
    });
    const before = answersSent.length;
    await callTool(card, '{}');
    const asks = card.locator('form.ask');
    await eventually(async () => check(await asks.count() === 2, `${await asks.count()} blocks`), 'one block per request');
    const [first, second] = [asks.nth(0), asks.nth(1)];
    await expectText(first, 'Request 1 of 2', 'the first block');
    await expectText(second, 'Request 2 of 2 Also visit this page', 'the second block');
    await expectText(second.locator('code.url'), 'javascript:window.__injected=4', 'the address, shown as text');
    await expectText(second, 'This address is not an http(s) URL, so it is not offered.', 'the refusal to offer it');
    check(await second.getByRole('button', { name: 'Open', exact: true }).count() === 0, 'a javascript: URL is offered');
    check(await second.getByRole('button', { name: 'Done' }).isDisabled(), 'Done is offered for a javascript: URL');

    await first.getByLabel(/^Confirmed/).check();
    await first.getByLabel('note').fill('ok');
    await first.getByRole('button', { name: 'Submit' }).click();
    await expectText(first, 'Your answer: accepted. It is sent once every request is answered.', 'the first answer held');
    check(await first.getByLabel('note').isDisabled(), 'an answered block can still be edited');
    const decline = second.getByRole('button', { name: 'Decline' });
    await eventually(async () => check(await isFocused(decline), 'not focused'), 'the next request takes focus');
    check(answersSent.length === before, 'an answer was sent before every request had one');

    await first.getByRole('button', { name: 'Change your answer to request 1' }).click();
    check(await first.getByLabel('note').isEnabled(), 'Change does not reopen the block');
    await first.getByLabel('note').fill('all good');
    await first.getByLabel('note').press('Enter');
    await decline.click();
    await expectText(card.locator('.result .result-head'), 'OK', 'the outcome');
    await expectText(card.locator('.result'), '"confirmed":true', 'the server heard the confirmation');
    await page.unroute('**/graphql');
    check(answersSent.length === before + 1, `${answersSent.length - before} continuations sent`);
    check(JSON.stringify(answersSent.at(-1)) === JSON.stringify([
      { key: 'confirm', action: 'ACCEPT', content: { confirmed: true, note: 'all good' } },
      { key: 'visit', action: 'DECLINE' },
    ]), `the answers sent: ${JSON.stringify(answersSent.at(-1))}`);
    check(await page.evaluate(() => window.__injected) === undefined, 'the javascript: URL ran');
  });

  await step('a continuation the server no longer accepts says so', async () => {
    const card = (await detailOf(rowOf('Forms'))).locator('article[data-tool="confirm"]');
    await callTool(card, '{}');
    const ask = card.locator('form.ask');
    await expectText(ask, 'Confirm the action', 'the server\'s question');
    await page.route('**/graphql', async (route) => {
      const sent = route.request().postData() || '';
      if (!sent.includes('continueMcpToolCall')) return route.fallback();
      const body = JSON.parse(sent);
      body.variables.continuation = `${body.variables.continuation.slice(0, -4)}AAAA`;
      return route.fallback({ postData: JSON.stringify(body) });
    });
    await ask.getByRole('button', { name: 'Cancel' }).click();
    await expectText(card.locator('.result .call-error'),
      'BAD_USER_INPUT: continuation: is not a continuation of yours, or has expired', 'the refusal');
    await expectText(card.locator('.result'), 'Call the tool again to start over.', 'what to do');
    await page.unroute('**/graphql');
    await assertNoSecretsOnPage();
  });

  await step('the live connection drops, shows it, and comes back by itself', async () => {
    check(socketToPage !== null, 'the console opened no WebSocket');
    const dropped = socketToPage;
    await dropped.close({ code: 4000, reason: 'dropped by the test' });
    await expectText(live, 'Reconnecting', 'the live indicator after the drop', 5000);
    check(await live.getAttribute('data-state') === 'reconnecting', 'state is not reconnecting');
    await eventually(async () => {
      check(socketToPage !== dropped, 'no new socket yet');
      check(await live.getAttribute('data-state') === 'live', 'not live yet');
    }, 'the console reconnects', 20_000);
  });

  await step('a change made elsewhere arrives through the subscription', async () => {
    await addServer({ name: 'Search', url: SEARCH_URL });
    await expectText(notice, 'Auth type: None (detected)', 'the detected auth type of Search');
    const row = rowOf('Search');
    await expectText(cellOf(row, 'Connection'), 'Disconnected', 'Search before the refresh');
    const id = await row.getAttribute('data-server-id');
    await control(`/refresh/${id}`);
    await expectText(cellOf(row, 'Connection'), 'Connected', 'Search after a refresh made elsewhere');
    await expectText(cellOf(row, 'Tools'), '3', 'the tool count of Search');
    check(await page.evaluate(() => window.__sameDocument === true), 'the page was reloaded');
  });

  await step('the add form offers the credential modes, each explained', async () => {
    const form = page.locator('#add-form');
    const mode = form.getByLabel('Credentials');
    const hint = form.locator('.credentials-hint');
    check(await mode.inputValue() === 'SHARED', 'the default credential mode is not shared');
    await expectText(hint, 'One connection for the whole workspace', 'the shared mode explained');
    await mode.selectOption('PER_USER');
    await expectText(hint, 'Each member connects their own account', 'the per-user mode explained');
    await mode.selectOption('SHARED');
    await expectText(hint, 'One connection for the whole workspace', 'the shared mode explained again');
  });

  await step('a per-user server is added with the form and asks me to connect my own account', async () => {
    await addServer({ name: 'Team', url: TEAM_URL, credentials: 'PER_USER' });
    await expectText(notice, 'Auth type: OAuth (detected). Each member connects their own account.', 'the added notice');
    const sent = createInputs.at(-1);
    check(sent && sent.credentials === 'PER_USER', `the creation sent ${JSON.stringify(sent)}`);
    const form = page.locator('#add-form');
    check(await form.getByLabel('Credentials').inputValue() === 'SHARED', 'the form kept the per-user mode');
    await expectText(form.locator('.credentials-hint'), 'One connection for the whole workspace', 'the hint after the reset');

    const row = rowOf('Team');
    await expectText(cellOf(row, 'Auth'), 'Credentials: per user', 'the credential mode in the row');
    await expectText(cellOf(row, 'Authorization'), 'Your account Not connected', 'my own state in the row');
    await expectText(cellOf(row, 'Token expires'), '—', 'no expiry without a grant');
    await row.getByRole('button', { name: 'Connect my account to Team' }).waitFor();
    check(await row.getByRole('button', { name: 'Connect Team', exact: true }).count() === 0, 'the shared Connect is offered');

    await row.getByRole('button', { name: 'Team', exact: true }).click();
    const detail = await detailOf(row);
    await expectText(detail.locator('section.account'), 'Your account Not connected', 'my own state in the detail');
    await expectText(detail.locator('section.members'), 'No member has connected an account yet.', 'who has connected');
    await expectText(detail.locator('.tools'), 'No tools yet: connect your account first.', 'the empty catalogue');
  });

  await step('Connect my account runs the popup and shows my own connection', async () => {
    await control('/subject/admin-upstream');
    const row = rowOf('Team');
    await authorizeInPopup(() => row.getByRole('button', { name: 'Connect my account to Team' }).click(), 'my account on Team');
    await expectText(notice, 'Your account is connected to “Team”.', 'the connected notice');
    await expectText(cellOf(row, 'Authorization'), 'Your account Connected', 'my own state in the row');
    await expectText(cellOf(row, 'Token expires'), /^in \d+ (minute|hour)s?$/, 'my own token expiry');
    await row.getByRole('button', { name: 'Disconnect my account from Team' }).waitFor();
    check(await row.getByRole('button', { name: 'Connect my account to Team' }).count() === 0, 'Connect is still offered');
    const detail = await detailOf(row);
    await expectText(detail.locator('section.account'), /Connected · first connected .+ · token expires in/, 'my own state in the detail');
    await assertNoSecretsOnPage();
  });

  await step('whoami answers with my own upstream account', async () => {
    const card = (await detailOf(rowOf('Team'))).locator('article[data-tool="whoami"]');
    await callTool(card, '{}');
    await expectText(card.locator('.result'), 'admin-upstream', 'who the server says I am');
  });

  await step('the admin sees who has connected', async () => {
    const members = (await detailOf(rowOf('Team'))).locator('section.members');
    await expectText(members, 'Connected members', 'the heading');
    const me = members.locator('li.member').filter({ hasText: 'admin' });
    await expectText(me, /^admin Authorized first connected .+ token expires in .+ Disconnect$/, 'me in the list');
  });

  await step('another member sees the server as not connected while I am', async () => {
    memberPage = await openPage(browser);
    watchApi(memberPage, (body) => memberQueries.push(body.query));
    await memberPage.goto(`${BASE}/`);
    await memberPage.getByLabel('API token').fill(MEMBER_TOKEN);
    await memberPage.getByRole('button', { name: 'Sign in' }).click();
    await expectText(memberPage.locator('#viewer'), `Signed in as ${MEMBER_NAME}`, 'the member');
    await expectText(memberPage.locator('#role'), 'Your role: viewer', 'the member\'s role');
    await expectText(memberPage.locator('#live'), 'Live', 'the member\'s live indicator');
    await memberPage.evaluate(() => { window.__sameDocument = true; });
    const row = rowOf('Team', memberPage);
    await expectText(cellOf(row, 'Authorization'), 'Your account Not connected', 'the member\'s own state');
    await expectText(cellOf(row, 'Token expires'), '—', 'the member has no token');
    await row.getByRole('button', { name: 'Connect my account to Team' }).waitFor();
    check(await row.getByRole('button', { name: 'Edit Team' }).count() === 0, 'a viewer is offered Edit');
    await row.getByRole('button', { name: 'Team', exact: true }).click();
    const detail = await detailOf(row, memberPage);
    await expectText(detail.locator('section.account'), 'Your account Not connected', 'the member\'s detail');
    await detail.locator('article[data-tool="whoami"]').waitFor();
    check(await detail.locator('section.members').isHidden(), 'a viewer sees who has connected');
    check(!memberQueries.some((query) => query.includes('authorizations(')), 'a viewer asked who has connected');
    check(await memberPage.locator('#notice').isHidden(), `a notice shows: ${await memberPage.locator('#notice').innerText()}`);
    // Mine is unchanged.
    await expectText(cellOf(rowOf('Team'), 'Authorization'), 'Your account Connected', 'my own state');
  });

  await step('a call before connecting asks the member to connect their account, and they can', async () => {
    await memberPage.bringToFront();
    const row = rowOf('Team', memberPage);
    const card = (await detailOf(row, memberPage)).locator('article[data-tool="whoami"]');
    await callTool(card, '{}');
    const prompt = card.locator('.reauth');
    await expectText(prompt, 'Connect your account.', 'the prompt');
    await expectText(prompt, 'REAUTH_REQUIRED', 'the error code');
    await control(`/subject/${MEMBER_NAME}-upstream`);
    await authorizeInPopup(() => prompt.getByRole('button', { name: 'Connect my account' }).click(),
      'the member\'s account on Team', memberPage);
    await expectText(card.locator('.result'), 'Your account is connected. You can call the tool again.', 'the answered prompt');
    await expectText(cellOf(row, 'Authorization'), 'Your account Connected', 'the member\'s own state');
    await callTool(card, '{}');
    await expectText(card.locator('.result'), `${MEMBER_NAME}-upstream`, 'who the server says the member is');
    // Mine still acts as me. (A tab in the background draws no frames: bring mine forward.)
    await page.bringToFront();
    const mine = (await detailOf(rowOf('Team'))).locator('article[data-tool="whoami"]');
    await callTool(mine, '{}');
    await expectText(mine.locator('.result'), 'admin-upstream', 'who the server says I am');
  });

  await step('the admin disconnects one member after asking, and their tab hears it live', async () => {
    await page.getByRole('button', { name: 'Reload', exact: true }).click();
    const members = (await detailOf(rowOf('Team'))).locator('section.members');
    const member = members.locator('li.member').filter({ hasText: MEMBER_NAME });
    await expectText(member, `${MEMBER_NAME} Authorized first connected`, 'the member in the list');
    await confirmTwice(
      () => member.getByRole('button', { name: `Disconnect ${MEMBER_NAME} from Team` }).click(),
      `Disconnect ${MEMBER_NAME}’s account from “Team”?`,
      async () => {
        await sleep(300);
        check(await member.count() === 1, 'Cancel disconnected the member');
      },
      'Disconnect',
    );
    await expectText(notice, `${MEMBER_NAME} is disconnected from “Team”; their tokens were revoked.`, 'the notice');
    await eventually(async () => check(await member.count() === 0, 'still listed'), 'the member leaves the list');
    await expectText(members.locator('li.member'), /^admin Authorized/, 'I am still listed');
    await expectText(cellOf(rowOf('Team'), 'Authorization'), 'Your account Connected', 'my own state');
    const theirs = rowOf('Team', memberPage);
    await expectText(cellOf(theirs, 'Authorization'), 'Your account Not connected', 'the member\'s tab');
    await theirs.getByRole('button', { name: 'Connect my account to Team' }).waitFor();
    check(await memberPage.evaluate(() => window.__sameDocument === true), 'the member\'s tab was reloaded');
    await memberPage.close();
    memberPage = null;
  });

  await step('disconnecting my account makes a call ask me to connect it again', async () => {
    const row = rowOf('Team');
    await row.getByRole('button', { name: 'Disconnect my account from Team' }).click();
    await expectText(notice, 'Your account is disconnected from “Team”; your tokens were revoked.', 'the notice');
    await expectText(cellOf(row, 'Authorization'), 'Your account Not connected', 'my own state');
    await expectText(cellOf(row, 'Token expires'), '—', 'no expiry without a grant');
    const detail = await detailOf(row);
    await expectText(detail.locator('section.members'), 'No member has connected an account yet.', 'who has connected');
    const card = detail.locator('article[data-tool="whoami"]');
    await callTool(card, '{}');
    const prompt = card.locator('.reauth');
    await expectText(prompt, 'Connect your account.', 'the prompt');
    await expectText(prompt, 'REAUTH_REQUIRED', 'the error code');
  });

  await step('Connect my account from the prompt connects me again', async () => {
    await control('/subject/admin-upstream');
    const row = rowOf('Team');
    const detail = await detailOf(row);
    const card = detail.locator('article[data-tool="whoami"]');
    await authorizeInPopup(() => card.getByRole('button', { name: 'Connect my account' }).click(), 'my account again');
    await expectText(card.locator('.result'), 'Your account is connected. You can call the tool again.', 'the answered prompt');
    await expectText(cellOf(row, 'Authorization'), 'Your account Connected', 'my own state');
    await callTool(card, '{}');
    await expectText(card.locator('.result'), 'admin-upstream', 'who the server says I am');
    await expectText(detail.locator('section.members li.member'), /^admin Authorized/, 'me in the list again');
    const overflow = await overflowAt(390);
    check(overflow <= 1, `the page scrolls sideways by ${overflow}px at 390px with a per-user server open`);
  });

  await step('the add form offers a machine client, with a private key field for it alone', async () => {
    const form = page.locator('#add-form');
    const mode = form.getByLabel('Credentials');
    const key = form.getByLabel(/^Private key/);
    check(await key.isHidden(), 'the private key field shows for shared credentials');
    await mode.selectOption('CLIENT_CREDENTIALS');
    await expectText(mode.locator('option:checked'), 'Machine client (client credentials)', 'the mode');
    await expectText(form.locator('.credentials-hint'), 'the workspace’s machine client gets its own tokens', 'the mode explained');
    await key.waitFor();
    await expectText(form.locator('label[for="add-client-id"]'), 'OAuth client id (required)', 'the client id is required');
    await expectText(form.locator('#add-key-hint'), 'never shown again', 'the key is write-only');
    await mode.selectOption('SHARED');
    await eventually(async () => check(await key.isHidden(), 'still shown'), 'the key field hides again');
    await expectText(form.locator('label[for="add-client-id"]'), 'OAuth client id (optional, pre-registered)', 'the note again');
  });

  await step('a machine client without its id, or with a bad key, is refused on the right field', async () => {
    const form = page.locator('#add-form');
    const error = form.locator('.error');
    await addMachine({ name: 'Robot', clientId: '', key: MACHINE_KEY });
    await expectText(error, 'BAD_USER_INPUT', 'the missing client id');
    check(await isFocused(form.getByLabel(/OAuth client id/)), 'the client id field has no focus');

    await addMachine({ name: 'Robot', clientId: MACHINE_CLIENT_ID, key: BAD_KEY });
    await eventually(async () => check(await isFocused(form.getByLabel(/^Private key/)), 'not focused'),
      'the private key field takes focus');
    const text = await textOf(error);
    check(text.startsWith('BAD_USER_INPUT'), `the error is ${JSON.stringify(text)}`);
    check(!text.includes(BAD_KEY_BODY), 'the error echoes the key');
    check(await rowOf('Robot').count() === 0, 'a refused server was added');
    check(createInputs.at(-1).oauthClientKey === BAD_KEY, 'the key typed was not the key sent');
  });

  await step('a machine client added with its private key gets a token with nobody connecting it', async () => {
    await addMachine({ name: 'Robot', clientId: MACHINE_CLIENT_ID, key: MACHINE_KEY });
    await expectText(notice, 'Added “Robot”. Its machine client got a token; 1 tool listed.', 'the added notice');
    const sent = createInputs.at(-1);
    check(sent.credentials === 'CLIENT_CREDENTIALS' && sent.oauthClientId === MACHINE_CLIENT_ID,
      `the creation sent ${JSON.stringify({ ...sent, oauthClientKey: undefined })}`);
    check(sent.oauthClientKey === MACHINE_KEY, 'the key typed was not the key sent');
    check(!('oauthClientSecret' in sent), 'an empty secret was sent');
    const form = page.locator('#add-form');
    await expectText(form.locator('.error'), /^$/, 'the error of the refused attempts is gone');
    check(await form.getByLabel('Credentials').inputValue() === 'SHARED', 'the form kept the machine mode');
    check(await form.getByLabel(/^Private key/).isHidden(), 'the key field is still shown');

    const row = rowOf('Robot');
    await expectText(cellOf(row, 'Auth'), 'OAuth Credentials: machine client', 'the mode in the row');
    await expectText(cellOf(row, 'Auth'), `Client: ${MACHINE_CLIENT_ID}`, 'the client id in the row');
    await expectText(cellOf(row, 'Authorization'), 'Machine client Authorized', 'the machine client\'s state');
    await expectText(cellOf(row, 'Connection'), 'Connected', 'the connection');
    await expectText(cellOf(row, 'Tools'), '1', 'the tool count');
    await expectText(cellOf(row, 'Token expires'), /^in \d+ (minutes|hour)/, 'the token expiry');
    await row.getByRole('button', { name: 'Refresh tools of Robot' }).waitFor();
    for (const offered of ['Connect Robot', 'Connect my account to Robot', 'Disconnect Robot', 'Disconnect my account from Robot']) {
      check(await row.getByRole('button', { name: offered, exact: true }).count() === 0, `${offered} is offered`);
    }
    await assertNoKeyOnPage();
  });

  await step('whoami on the machine client answers with its client id', async () => {
    const row = rowOf('Robot');
    await row.getByRole('button', { name: 'Robot', exact: true }).click();
    const detail = await detailOf(row);
    const machine = detail.locator('section.machine');
    await expectText(machine, /^Machine client Authorized · token expires in .+ · token obtained (now|.+ ago)/, 'the machine client in the detail');
    await expectText(machine, `Client id: ${MACHINE_CLIENT_ID}. It proves who it is with a private key, stored encrypted and never shown.`, 'how it proves who it is');
    check(await detail.locator('section.account').isHidden(), 'an account is shown for a machine client');
    check(await detail.locator('section.members').isHidden(), 'members are shown for a machine client');
    const card = detail.locator('article[data-tool="whoami"]');
    await callTool(card, '{}');
    await expectText(card.locator('.result'), MACHINE_CLIENT_ID, 'who the server says the caller is');
    await expectText(card.locator('.result .result-head'), 'OK', 'the outcome');
    await assertNoKeyOnPage();
  });

  await step('the edit dialog says a key is stored, never shows it, and sends none unless one is typed', async () => {
    const dialog = page.locator('#edit-dialog');
    await rowOf('Robot').getByRole('button', { name: 'Edit Robot' }).click();
    check(await dialog.getByLabel('Credentials').inputValue() === 'CLIENT_CREDENTIALS', 'Robot is not shown as a machine client');
    await expectText(dialog.locator('.credentials-hint'), 'machine client gets its own tokens', 'the mode explained');
    await expectText(dialog.locator('#edit-key-hint'), 'A private key is stored (it is never shown).', 'the stored key');
    await expectText(dialog.locator('#edit-secret-hint'), 'No secret is stored.', 'no secret');
    check(await dialog.getByLabel(/OAuth client id/).inputValue() === MACHINE_CLIENT_ID, 'the client id');
    check(await dialog.getByLabel(/^Private key/).inputValue() === '', 'the key field is filled');
    check(await dialog.getByLabel('Remove the private key').isEnabled(), 'the key cannot be removed');
    await assertNoKeyOnPage();
    await dialog.getByLabel('Description').fill('Reached as a machine');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await expectText(notice, 'Saved “Robot”.', 'the saved notice');
    const sent = updateInputs.at(-1);
    check(JSON.stringify(sent) === '{"description":"Reached as a machine"}', `the update sent ${JSON.stringify(sent)}`);
    await expectText(cellOf(rowOf('Robot'), 'Authorization'), 'Machine client Authorized', 'still authorized');
  });

  await step('a key the authorization server does not know leaves the client rejected, shown as such', async () => {
    await replaceKey('Robot', UNKNOWN_MACHINE_KEY);
    const sent = updateInputs.at(-1);
    check(Object.keys(sent).join() === 'oauthClientKey' && sent.oauthClientKey === UNKNOWN_MACHINE_KEY,
      'the update did not send the new key alone');
    await expectText(notice, `Saved “Robot”, but its machine client got no token: ${WORDS.status.CLIENT_REJECTED}`, 'the warning');
    const row = rowOf('Robot');
    await expectText(cellOf(row, 'Authorization'), 'Machine client No token', 'the machine client\'s state');
    await expectText(cellOf(row, 'Authorization'), WORDS.status.CLIENT_REJECTED, 'the reason in the schema\'s words');
    await expectText(cellOf(row, 'Authorization'), 'Check its client id, secret or private key with Edit', 'what to do');
    await expectText(cellOf(row, 'Token expires'), '—', 'no token, no expiry');
    check(await row.getByRole('button', { name: 'Connect Robot', exact: true }).count() === 0, 'Connect is offered');
    const detail = await detailOf(row);
    await expectText(detail.locator('section.machine'), WORDS.status.CLIENT_REJECTED, 'the reason in the detail');
    const card = detail.locator('article[data-tool="whoami"]');
    await callTool(card, '{}');
    const prompt = card.locator('.reauth');
    await expectText(prompt, 'No token. The authorization server gave the machine client no token', 'the refusal');
    await expectText(prompt, 'REAUTH_REQUIRED', 'the error code');
    check(await prompt.getByRole('button').count() === 0, 'a machine client is offered a way to connect');
    await assertNoKeyOnPage();
  });

  await step('pasting the right key again recovers the machine client, and calls work', async () => {
    await replaceKey('Robot', MACHINE_KEY);
    await expectText(notice, 'Saved “Robot”.', 'the saved notice');
    const row = rowOf('Robot');
    await expectText(cellOf(row, 'Authorization'), 'Machine client Authorized', 'the machine client\'s state');
    await expectText(cellOf(row, 'Token expires'), /^in \d+ (minutes|hour)/, 'the token expiry');
    const card = (await detailOf(row)).locator('article[data-tool="whoami"]');
    await expectText(card.locator('.result'), 'The machine client has a token again. You can call the tool again.', 'the answered prompt');
    await callTool(card, '{}');
    await expectText(card.locator('.result'), MACHINE_CLIENT_ID, 'who the server says the caller is');
    await assertNoKeyOnPage();
    const overflow = await overflowAt(390);
    check(overflow <= 1, `the page scrolls sideways by ${overflow}px at 390px with a machine client open`);
  });

  await step('screenshot of servers in several states', async () => {
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `the page scrolls sideways by ${overflow}px`);
    await page.locator('#notice').evaluate((node) => { node.hidden = true; });
    await page.screenshot({ path: path.join(OUTPUT, 'console.png'), fullPage: true });
    console.log(`   screenshot: ${path.join(OUTPUT, 'console.png')}`);
  });

  await step('Disconnect everyone asks first and disconnects every member', async () => {
    const row = rowOf('Team');
    const members = (await detailOf(row)).locator('section.members');
    await confirmTwice(
      () => members.getByRole('button', { name: 'Disconnect every member from Team' }).click(),
      'Disconnect every member’s account from “Team”?',
      async () => {
        await sleep(300);
        check(await members.locator('li.member').count() === 1, 'Cancel disconnected someone');
        await expectText(cellOf(row, 'Authorization'), 'Your account Connected', 'my own state after Cancel');
      },
      'Disconnect everyone',
    );
    await expectText(notice, 'Every member is disconnected from “Team”; their tokens were revoked.', 'the notice');
    await expectText(members, 'No member has connected an account yet.', 'who has connected');
    await expectText(cellOf(row, 'Authorization'), 'Your account Not connected', 'my own state');
  });

  await step('the edit dialog shows the credential mode; per user is refused without OAuth', async () => {
    const dialog = page.locator('#edit-dialog');
    const mode = dialog.getByLabel('Credentials');
    const hint = dialog.locator('.credentials-hint');
    await rowOf('Search').getByRole('button', { name: 'Edit Search' }).click();
    check(await mode.inputValue() === 'SHARED', 'Search is not shown as shared');
    await expectText(hint, 'One connection for the whole workspace', 'the shared mode explained');
    await mode.selectOption('PER_USER');
    await expectText(hint, 'Each member connects their own account', 'the per-user mode explained');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await expectText(dialog.locator('.error'), 'BAD_USER_INPUT', 'the refusal');
    check(await mode.evaluate((node) => node === document.activeElement), 'the refused field has no focus');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await expectText(cellOf(rowOf('Search'), 'Connection'), 'Connected', 'Search is unchanged');
  });

  await step('switching a per-user server to shared credentials through the edit dialog', async () => {
    const row = rowOf('Team');
    const dialog = page.locator('#edit-dialog');
    const mode = dialog.getByLabel('Credentials');
    await row.getByRole('button', { name: 'Edit Team' }).click();
    check(await mode.inputValue() === 'PER_USER', 'Team is not shown as per user');
    await expectText(dialog.locator('.credentials-hint'), 'Each member connects their own account', 'the per-user mode explained');
    await mode.selectOption('SHARED');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await expectText(notice, 'Saved “Team”.', 'the saved notice');
    const sent = updateInputs.at(-1);
    check(sent && JSON.stringify(sent) === '{"credentials":"SHARED"}', `the update sent ${JSON.stringify(sent)}`);
    await row.getByRole('button', { name: 'Connect Team', exact: true }).waitFor();
    await expectText(cellOf(row, 'Authorization'), 'Needs authorization', 'Team as a shared server');
    check(!(await textOf(cellOf(row, 'Auth'))).includes('per user'), 'Team is still shown as per user');
    const detail = await detailOf(row);
    check(await detail.locator('section.account').isHidden(), 'my own account is shown for a shared server');
    check(await detail.locator('section.members').isHidden(), 'members are shown for a shared server');
  });

  await step('a revoked grant makes the console ask to reconnect', async () => {
    await control('/revoke-all');
    const echo = (await detailOf(rowOf('Docs'))).locator('article[data-tool="echo"]');
    await callTool(echo, '{"message": "after the revocation"}');
    const prompt = echo.locator('.reauth');
    await expectText(prompt, 'Reconnect required', 'the reconnect prompt');
    await expectText(prompt, 'REAUTH_REQUIRED', 'the error code');
    await expectText(cellOf(rowOf('Docs'), 'Authorization'), 'Needs authorization', 'Docs after the revocation');
  });

  await step('Reconnect from the prompt authorizes again and calls work', async () => {
    const echo = (await detailOf(rowOf('Docs'))).locator('article[data-tool="echo"]');
    await authorizeInPopup(() => echo.getByRole('button', { name: 'Reconnect' }).click(), 'Docs again');
    await expectText(echo.locator('.result'), 'Reconnected', 'the answered prompt');
    const row = rowOf('Docs');
    await expectText(cellOf(row, 'Authorization'), 'Authorized', 'Docs after reconnecting');
    await expectText(cellOf(row, 'Connection'), 'Connected', 'Docs after reconnecting');
    await callTool(echo, '{"message": "connected again"}');
    await expectText(echo.locator('.result'), 'connected again', 'the call after reconnecting');
  });

  await step('hostile names and descriptions are shown as text', async () => {
    await addServer({ name: HOSTILE_TEXT, url: HOSTILE_URL });
    const row = rowOf(HOSTILE_TEXT);
    const toggle = row.getByRole('button', { name: HOSTILE_TEXT, exact: true });
    check(await toggle.innerText() === HOSTILE_TEXT, 'the server name is not shown verbatim');
    await row.getByRole('button', { name: `Refresh tools of ${HOSTILE_TEXT}` }).click();
    await expectText(cellOf(row, 'Tools'), '1', 'the hostile tool count');
    await toggle.click();
    const card = page.locator('article[data-tool="hostile"]');
    await card.waitFor();
    check(await card.locator('.description').innerText() === HOSTILE_TEXT, 'the description is not verbatim');
    await expectText(card.locator('h4'), HOSTILE_TEXT, 'the hostile title');
    await page.getByText(HOSTILE_TEXT, { exact: true }).first().waitFor();
    const dom = await page.evaluate(() => ({
      scripts: [...document.querySelectorAll('script')].map((s) => s.getAttribute('src')),
      images: document.querySelectorAll('img').length,
      injected: window.__injected,
    }));
    check(JSON.stringify(dom.scripts) === JSON.stringify(['/console.js']), `scripts: ${JSON.stringify(dom.scripts)}`);
    check(dom.images === 0, `${dom.images} img elements in the page`);
    check(dom.injected === undefined, 'injected script ran');
  });

  await step('editing keeps header values write-only and renames the server', async () => {
    const legacy = rowOf('Legacy');
    await legacy.getByRole('button', { name: 'Edit Legacy' }).click();
    const dialog = page.locator('#edit-dialog');
    await expectText(dialog, 'Stored headers: X-Api-Key (values are never shown).', 'the stored header names');
    await assertNoSecretsOnPage();
    await page.keyboard.press('Escape');
    await eventually(async () => check(!(await dialog.evaluate((d) => d.open)), 'still open'), 'Escape closes the dialog');

    const row = rowOf(HOSTILE_TEXT);
    await row.getByRole('button', { name: `Edit ${HOSTILE_TEXT}` }).click();
    await dialog.getByLabel('Name', { exact: true }).fill('Hostile, renamed');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await rowOf('Hostile, renamed').waitFor();
    await expectText(notice, 'Saved “Hostile, renamed”.', 'the saved notice');
  });

  await step('deleting asks for confirmation first', async () => {
    const row = rowOf('Hostile, renamed');
    await row.getByRole('button', { name: 'Delete Hostile, renamed' }).click();
    const dialog = page.locator('#delete-dialog');
    await expectText(dialog, 'Delete “Hostile, renamed”?', 'the confirmation');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    check(await row.count() === 1, 'cancel deleted the server');
    await row.getByRole('button', { name: 'Delete Hostile, renamed' }).click();
    await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
    await expectText(notice, 'Deleted “Hostile, renamed”.', 'the deleted notice');
    await eventually(async () => check(await row.count() === 0, 'row still there'), 'the row goes');
  });

  await step('the console is readable at a narrow width', async () => {
    await page.setViewportSize({ width: 390, height: 900 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `the page scrolls sideways by ${overflow}px at 390px`);
    await page.screenshot({ path: path.join(OUTPUT, 'console-narrow.png'), fullPage: true });
    await page.setViewportSize({ width: 1360, height: 900 });
  });

  await step('a socket the server refuses (4403) asks to sign in again instead of reconnecting', async () => {
    const refused = socketToPage;
    await refused.close({ code: 4403, reason: 'Forbidden: the token is no longer valid' });
    await page.getByLabel('API token').waitFor();
    await expectText(page.locator('#sign-in-error'), 'Sign in again', 'the sign-in message');
    check(await page.evaluate(() => sessionStorage.length) === 0, 'the token is still stored');
    await page.waitForTimeout(2500);
    check(socketToPage === refused, 'the console reconnected after 4403');
    await page.getByLabel('API token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectText(live, 'Live', 'the live indicator after signing in again');
  });

  await step('signing out forgets the token', async () => {
    check(await page.evaluate(() => window.__sameDocument === true), 'the page was reloaded');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API token').waitFor();
    check(await page.evaluate(() => sessionStorage.length) === 0, 'sessionStorage still holds something');
    check(await page.locator('tr.server').count() === 0, 'servers still shown after sign-out');
    check(await live.isHidden(), 'the live indicator still shows');
  });

  await step('without the schema\'s words, reasons are shown as the API names them', async () => {
    check(vocabularyRequests.length === 1, `${vocabularyRequests.length} introspection queries for the reasons`);
    await page.route('**/graphql', async (route) => {
      if ((route.request().postData() || '').includes('__type(')) return route.abort();
      return route.fallback();
    });
    await page.reload();
    await page.getByLabel('API token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const row = rowOf('Search');
    await expectText(cellOf(row, 'Authorization'), 'CONNECTED', 'the raw reason of Search');
    check(!(await textOf(cellOf(row, 'Authorization'))).includes(WORDS.status.CONNECTED), 'words without the schema');
    await page.unroute('**/graphql');
  });

  await step('no script error or policy violation happened', async () => {
    check(problems.length === 0, problems.join('\n'));
  });
}

await run('console', browser, OUTPUT, scenario);
