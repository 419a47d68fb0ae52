// The Switchboard console signing in with an identity provider, in a real Chromium driven with
// playwright-core.
//
// tests/console_identity.rs starts Switchboard with the test kit's fake OpenID provider
// configured for the console (public client, authorization code + PKCE, short-lived access
// tokens with rotating refresh tokens) on 127.0.0.1, then runs this script. It signs in with a
// click, checks that the code left the address bar and what the tab keeps, that the person's
// name and workspace appear and live updates connect, that the token is renewed silently before
// it expires (the live connection, closed when its first token expired, comes back), signs
// out, refuses a redirect back it did not start, signs in again and, with no refresh token
// left, is told the session expired.
//
// Every step prints "ok - <step>"; the first failure prints the step and the reason, saves
// console_identity-failure.png in E2E_OUTPUT and exits 1 (see kit.mjs). No address outside
// 127.0.0.1 is ever contacted.

import {
  check, eventually, expectText, openBrowser, refuseNonLoopback, required, run, sleep, step, textOf,
} from './kit.mjs';

const BASE = required('SWITCHBOARD_URL');
const PROVIDER_NAME = required('PROVIDER_NAME');
const PERSON_NAME = required('PERSON_NAME');
const CHROMIUM = required('CHROMIUM_PATH');
const OUTPUT = required('E2E_OUTPUT');
refuseNonLoopback([BASE]);

const TOKEN_KEY = 'switchboard.console.token';
const SESSION_KEY = 'switchboard.console.provider-session';
const PENDING_KEY = 'switchboard.console.provider-pending';

const browser = await openBrowser(CHROMIUM, OUTPUT);
const { page, problems } = browser;

const stored = () => page.evaluate(([token, session, pending]) => ({
  token: sessionStorage.getItem(token),
  session: JSON.parse(sessionStorage.getItem(session) || 'null'),
  pending: sessionStorage.getItem(pending),
  count: sessionStorage.length,
}), [TOKEN_KEY, SESSION_KEY, PENDING_KEY]);

async function signInWithProvider() {
  const signInButton = page.getByRole('button', { name: `Sign in with ${PROVIDER_NAME}` });
  await signInButton.click();
  await expectText(page.locator('#viewer'), `Signed in as ${PERSON_NAME}`, 'the viewer after the redirect back');
}

async function scenario() {
  await step('the sign-in screen offers the identity provider beside the API token', async () => {
    await page.goto(BASE);
    await page.getByRole('button', { name: `Sign in with ${PROVIDER_NAME}` }).waitFor();
    check(await page.locator('#token').isVisible(), 'the API token field is still there');
  });

  let first;
  await step('one click signs in through the provider and back', async () => {
    await signInWithProvider();
    const url = new URL(page.url());
    check(url.search === '' && url.pathname === '/', `the code left the address bar: ${page.url()}`);
    first = await stored();
    check(first.token && first.token.split('.').length === 3, 'the access token is kept for the tab');
    check(first.session && first.session.refreshToken, 'the refresh token is kept for the tab');
    check(first.pending === null, 'the round trip state is gone');
  });

  await step('the workspace loads and live updates connect', async () => {
    await eventually(async () => {
      check(await page.locator('#workspace option').count() >= 1, 'no workspace yet');
    }, 'a workspace in the selector');
    check(!(await page.locator('#workbench').isHidden()), 'the workbench shows');
    await expectText(page.locator('#live-text'), 'Live', 'the live indicator');
  });

  await step('the token is renewed silently before it expires', async () => {
    await eventually(async () => {
      const now = await stored();
      check(now.token && now.token !== first.token, 'the token has not changed yet');
      check(now.session.refreshToken !== first.session.refreshToken, 'the refresh token rotated');
    }, 'a renewed token', 20_000);
    check(await page.locator('#sign-in').isHidden(), 'still signed in');
  });

  await step('after the first token expired the console is still signed in and live', async () => {
    // The first token lasted 8 s: its socket was closed with 4401 and opened again.
    await sleep(Math.max(0, first.session.expiresAt - Date.now()) + 2000);
    await expectText(page.locator('#live-text'), 'Live', 'the live indicator after the expiry');
    await expectText(page.locator('#viewer'), `Signed in as ${PERSON_NAME}`, 'the viewer');
    check(await page.locator('#sign-in').isHidden(), 'still signed in');
    await page.getByRole('button', { name: 'Reload' }).click();
    await expectText(page.locator('#notice'), 'Reloaded.', 'an API call with the renewed token');
  });

  await step('signing out returns to the sign-in screen and clears the tab', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#sign-in').waitFor();
    check(await page.locator('#workbench').isHidden(), 'the workbench is hidden');
    check((await stored()).count === 0, 'nothing stays in sessionStorage');
  });

  await step('a redirect back this tab did not start is refused and its code never redeemed', async () => {
    await page.goto(`${BASE}/?code=forged-code&state=forged-state&iss=${encodeURIComponent(BASE)}`);
    await expectText(page.locator('#sign-in-error'), 'This sign-in was not started in this tab',
      'the refusal');
    const url = new URL(page.url());
    check(url.search === '', `the code left the address bar: ${page.url()}`);
    check(await page.locator('#workbench').isHidden(), 'not signed in');
  });

  await step('without a refresh token the session ends with a clear message', async () => {
    await signInWithProvider();
    await page.evaluate((key) => {
      const session = JSON.parse(sessionStorage.getItem(key));
      session.refreshToken = null;
      sessionStorage.setItem(key, JSON.stringify(session));
    }, SESSION_KEY);
    await expectText(page.locator('#sign-in-error'), 'Your session expired — sign in again.',
      'the expiry message', 20_000);
    check(await page.locator('#workbench').isHidden(), 'back on the sign-in screen');
    check((await stored()).count === 0, 'nothing stays in sessionStorage');
    check(await textOf(page.locator('#sign-in-title')) === 'Sign in', 'the sign-in screen');
  });

  await step('no script errors or policy violations', async () => {
    check(problems.length === 0, problems.join('\n'));
  });
}

await run('console_identity', browser, OUTPUT, scenario);
