// Switchboard's GraphiQL page in a real Chromium, driven with playwright-core.
//
// tests/graphiql.rs starts Switchboard with one MCP server registered (a fake on 127.0.0.1)
// and runs this script with their URLs and ids in the environment. The script uses GraphiQL
// as a person would: the page renders from this server alone, the docs explorer reads the
// schema, a query runs with the API token pasted in the headers editor, the history keeps it,
// a subscription to `mcpServerStatus` receives the event of a refresh made through the API,
// and no part of the token is stored by the browser.
//
// Every step prints "ok - <step>"; the first failure prints the step and the reason, saves
// graphiql-failure.png in E2E_OUTPUT and exits 1 (see kit.mjs). No address outside 127.0.0.1
// is ever contacted.

import path from 'node:path';
import {
  check, eventually, expectText, openBrowser, refuseNonLoopback, required, run, step, textOf,
} from './kit.mjs';

const BASE = required('SWITCHBOARD_URL');
const TOKEN = required('SWITCHBOARD_TOKEN');
const USER_ID = required('SWITCHBOARD_USER_ID');
const WORKSPACE_ID = required('SWITCHBOARD_WORKSPACE_ID');
const SERVER_ID = required('MCP_SERVER_ID');
const CHROMIUM = required('CHROMIUM_PATH');
const OUTPUT = required('E2E_OUTPUT');

refuseNonLoopback([BASE]);
const ORIGIN = new URL(BASE).origin;

const browser = await openBrowser(CHROMIUM, OUTPUT);
const { page, problems } = browser;

// Every request the page makes, and every WebSocket frame, as the network saw them.
const requests = [];
page.on('request', (request) => requests.push(request));
const sockets = [];
page.on('websocket', (socket) => {
  const record = { url: socket.url(), sent: [], received: [], closed: false };
  sockets.push(record);
  socket.on('framesent', (frame) => record.sent.push(JSON.parse(frame.payload)));
  socket.on('framereceived', (frame) => record.received.push(JSON.parse(frame.payload)));
  socket.on('close', () => { record.closed = true; });
});

const queryEditor = page.locator('.graphiql-query-editor .CodeMirror');
// The editor shown under the Headers tab, which the page opens by default.
const headersEditor = page.locator('section.graphiql-editor-tool[aria-label="Headers"] .graphiql-editor:not(.hidden) .CodeMirror');
const result = page.locator('section.result-window');

// Replace an editor's text as a paste would.
async function paste(editor, text) {
  await editor.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.insertText(text);
}

// Open a sidebar plugin unless it is open already (GraphiQL remembers the last one).
async function showPlugin(name) {
  const show = page.getByRole('button', { name: `Show ${name}` });
  if (await show.count()) await show.click();
}

async function execute() {
  await page.getByRole('button', { name: /^Execute query/ }).click();
}

// The JSON in the result pane, once it parses.
async function resultJson(what) {
  return eventually(async () => JSON.parse(await textOf(result)), `${what}: the result is JSON`);
}

async function storedText() {
  return page.evaluate(() => [localStorage, sessionStorage]
    .flatMap((store) => Object.keys(store).map((key) => `${key}=${store.getItem(key)}`))
    .join('\n'));
}

async function scenario() {
  await step('GraphiQL renders from this server alone', async () => {
    const response = await page.goto(`${BASE}/graphql`);
    check(response && response.status() === 200, `GET /graphql answered ${response && response.status()}`);
    await page.locator('.graphiql-container').waitFor();
    await eventually(async () => check(await page.getByText('Loading…').count() === 0, 'still loading'),
      'the loading text goes');
    await expectText(headersEditor, '"Authorization": "Bearer sbt_…"', 'the headers hint');
    await expectText(queryEditor, 'viewer', 'the default query');
    const foreign = requests.map((r) => r.url()).filter((url) => !url.startsWith(`${ORIGIN}/`) && !url.startsWith('data:'));
    check(foreign.length === 0, `requests to other origins: ${foreign.join(', ')}`);
    const scripts = await page.evaluate(() => [...document.scripts].map((s) => s.getAttribute('src')));
    check(scripts.every((src) => src && src.startsWith('/graphiql/')), `scripts: ${JSON.stringify(scripts)}`);
  });

  await step('the docs explorer reads the schema by introspection', async () => {
    await showPlugin('Documentation Explorer');
    const docs = page.locator('.graphiql-plugin');
    await expectText(docs, 'query: QueryRoot', 'the root types');
    await expectText(docs, 'subscription: SubscriptionRoot', 'the subscription root');
    await docs.getByRole('link', { name: 'QueryRoot' }).click();
    await expectText(docs, 'viewer: User!', 'the viewer field');
    await expectText(docs, 'The calling user.', 'its description');
    const introspection = requests.find((r) => r.method() === 'POST' && (r.postData() || '').includes('IntrospectionQuery'));
    check(introspection, 'no introspection request');
    check(!('authorization' in introspection.headers()), 'the headers hint was sent as a token');
  });

  await step('without a token the API says so', async () => {
    await paste(queryEditor, '{ viewer { id } }');
    await execute();
    const body = await resultJson('the anonymous answer');
    check(body.errors && body.errors[0].extensions.code === 'UNAUTHENTICATED', JSON.stringify(body));
  });

  await step('a query with the token in the headers editor returns data', async () => {
    await paste(headersEditor, `{"Authorization": "Bearer ${TOKEN}"}`);
    await execute();
    await eventually(async () => {
      const body = JSON.parse(await textOf(result));
      check(body.data && body.data.viewer && body.data.viewer.id === USER_ID, JSON.stringify(body));
    }, 'the viewer of the token');
    const sent = requests.filter((r) => r.method() === 'POST' && (r.postData() || '').includes('viewer'));
    check(sent.at(-1).headers().authorization === `Bearer ${TOKEN}`, 'the query did not carry the token');
  });

  await step('the history keeps the query and brings it back', async () => {
    await showPlugin('History');
    const entry = page.locator('.graphiql-history-item-label').filter({ hasText: 'viewer' }).first();
    await entry.waitFor();
    await paste(queryEditor, '{ workspaces { id } }');
    await entry.click();
    await expectText(queryEditor, '{ viewer { id } }', 'the query from the history');
    const stored = await storedText();
    check(stored.includes('viewer'), 'the history is not stored');
  });

  await step('a subscription receives an event triggered through the API', async () => {
    await paste(queryEditor, `subscription {
  mcpServerStatus(workspaceId: "${WORKSPACE_ID}") { serverId current { connectionStatus } server { name } }
}`);
    const before = sockets.length;
    await execute();
    await eventually(() => {
      check(sockets.length > before, 'no WebSocket opened');
      const socket = sockets.at(-1);
      check(socket.sent.some((m) => m.type === 'subscribe'), 'not subscribed yet');
    }, 'the subscription starts');
    const socket = sockets.at(-1);
    check(new URL(socket.url).pathname === '/graphql/ws', socket.url);
    const init = socket.sent[0];
    check(init.type === 'connection_init', `first frame: ${JSON.stringify(init)}`);
    check(JSON.stringify(init.payload) === JSON.stringify({ Authorization: `Bearer ${TOKEN}` }),
      'connection_init does not carry the Authorization header');
    check(socket.received.some((m) => m.type === 'connection_ack'), 'subscribed before connection_ack');
    const subscribe = socket.sent.find((m) => m.type === 'subscribe');
    check(typeof subscribe.id === 'string' && subscribe.id.length > 0, 'the subscription has no id');

    // Someone refreshes the server through the API.
    const refresh = await fetch(`${BASE}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        query: 'mutation($id: ID!) { refreshMcpServer(id: $id) { connectionStatus } }',
        variables: { id: SERVER_ID },
      }),
    });
    const refreshed = await refresh.json();
    check(!refreshed.errors, `refresh: ${JSON.stringify(refreshed)}`);

    await eventually(async () => {
      const body = JSON.parse(await textOf(result));
      const event = body.data && body.data.mcpServerStatus;
      check(event && event.serverId === SERVER_ID, JSON.stringify(body));
      check(event.server.name === 'Search', JSON.stringify(event));
    }, 'the event in the result pane');
    check(socket.received.some((m) => m.type === 'next' && m.id === subscribe.id), 'no next for the subscription');

    await page.getByRole('button', { name: /^Stop query/ }).click();
    await eventually(() => {
      check(socket.sent.some((m) => m.type === 'complete' && m.id === subscribe.id), 'no complete sent');
      check(socket.closed, 'the socket is still open');
    }, 'stopping completes the subscription');
    await page.getByRole('button', { name: /^Execute query/ }).waitFor();
  });

  await step('a subscription with a wrong token is refused visibly', async () => {
    await paste(headersEditor, '{"Authorization": "Bearer sbt_not_a_real_token"}');
    const before = sockets.length;
    await execute();
    await expectText(result, /The subscription connection closed \(\d+.*\)\. Check the Authorization header in the Headers tab\./, 'the refusal');
    check(!(await textOf(result)).includes('stack'), 'the refusal shows a stack trace');
    check(sockets.length === before + 1, 'no new WebSocket');
    check(!sockets.at(-1).sent.some((m) => m.type === 'subscribe'), 'subscribed without an ack');
    await paste(headersEditor, `{"Authorization": "Bearer ${TOKEN}"}`);
  });

  await step('dialogs open under the policy', async () => {
    await page.getByRole('button', { name: 'Open settings dialog' }).click();
    const dialog = page.getByRole('dialog');
    await expectText(dialog, 'Settings', 'the settings dialog');
    // GraphiQL locks scrolling with a <style> element that only the nonce admits.
    const overflow = await page.evaluate(() => getComputedStyle(document.body).overflow);
    check(overflow === 'hidden', `the dialog's style was not applied (overflow ${overflow})`);
    check(await dialog.getByText('Persist headers').count() === 0, 'headers can be persisted');
    await page.keyboard.press('Escape');
    await eventually(async () => check(await dialog.count() === 0, 'still open'), 'the dialog closes');
  });

  await step('screenshot', async () => {
    await page.screenshot({ path: path.join(OUTPUT, 'graphiql.png') });
    console.log(`   screenshot: ${path.join(OUTPUT, 'graphiql.png')}`);
  });

  await step('the token is never stored and is gone after a reload', async () => {
    const stored = await storedText();
    check(!stored.includes(TOKEN), 'the token is in the browser storage');
    check(!stored.includes('sbt_not_a_real_token'), 'a typed header is in the browser storage');
    await page.reload();
    await expectText(headersEditor, '"Authorization": "Bearer sbt_…"', 'the headers hint after a reload');
    await showPlugin('History');
    await page.locator('.graphiql-history-item-label').filter({ hasText: 'viewer' }).first().waitFor();
    check(!(await storedText()).includes(TOKEN), 'the token is in the browser storage after a reload');
  });

  await step('no script error or policy violation happened', async () => {
    check(problems.length === 0, problems.join('\n'));
  });
}

await run('graphiql', browser, OUTPUT, scenario);
