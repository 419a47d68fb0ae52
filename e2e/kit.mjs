// The small test kit shared by the browser scenarios (console.test.mjs, graphiql.test.mjs):
// environment, steps and checks, and a headless Chromium that records every script error and
// Content-Security-Policy violation of the page.
//
// A scenario prints "ok - <step>" per step; the first failure prints the step and the reason,
// saves a screenshot in E2E_OUTPUT and exits 1.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

export { sleep };

export const TIMEOUT = 15_000;

export function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${path.basename(process.argv[1])}: ${name} is not set (this script is started by the Rust tests)`);
    process.exit(2);
  }
  return value;
}

export function refuseNonLoopback(urls) {
  for (const url of urls) {
    if (new URL(url).hostname !== '127.0.0.1') {
      console.error(`${path.basename(process.argv[1])}: refusing a non-loopback address: ${url}`);
      process.exit(2);
    }
  }
}

let currentStep = 'start-up';

export async function step(name, body) {
  currentStep = name;
  const started = Date.now();
  await body();
  console.log(`ok - ${name} (${Date.now() - started} ms)`);
}

export class CheckFailed extends Error {}

export function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

// Retry `probe` until it stops throwing; fail with `what` and the last reason.
export async function eventually(probe, what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last = null;
  for (;;) {
    try {
      return await probe();
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new CheckFailed(`${what} (waited ${timeout} ms; last: ${last && last.message})`);
    }
    await sleep(100);
  }
}

export async function textOf(locator) {
  return (await locator.innerText({ timeout: 1000 })).replace(/\s+/g, ' ').trim();
}

export async function expectText(locator, expected, what, timeout = TIMEOUT) {
  await eventually(async () => {
    const text = await textOf(locator);
    const matches = expected instanceof RegExp ? expected.test(text) : text.includes(expected);
    check(matches, `text is ${JSON.stringify(text)}`);
  }, `${what}: expected ${expected}`, timeout);
}

// POST `action` to the Rust test's control server.
export async function control(base, action) {
  const response = await fetch(`${base}${action}`, { method: 'POST' });
  check(response.ok, `control ${action} answered ${response.status}: ${await response.text()}`);
  return response;
}

// A fresh Chromium profile with one page. `problems` collects uncaught exceptions, console
// errors and policy violations (also reported by the page's own `securitypolicyviolation`
// events, so a violation counts even when Chromium logs it differently).
export async function openBrowser(chromiumPath, output) {
  mkdirSync(output, { recursive: true });
  const profile = mkdtempSync(path.join(tmpdir(), 'switchboard-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1360, height: 900 },
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  context.setDefaultTimeout(TIMEOUT);
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  await watch(page, problems);
  return { context, page, problems, profile };
}

// Another tab of the same browser, watched like the first: its own sessionStorage, so another
// person can sign in there. Its problems are `problems` too.
export async function openPage(browser) {
  const page = await browser.context.newPage();
  await watch(page, browser.problems);
  return page;
}

async function watch(page, problems) {
  page.on('pageerror', (error) => problems.push(`uncaught exception: ${error.message}`));
  page.on('console', (message) => {
    const text = message.text();
    if (message.type() === 'error' && !text.startsWith('Failed to load resource')) {
      problems.push(`console error: ${text}`);
    }
    if (/Content Security Policy|Refused to/i.test(text)) problems.push(`policy violation: ${text}`);
  });
  await page.exposeFunction('__reportViolation', (text) => problems.push(`policy violation: ${text}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      window.__reportViolation(`${event.effectiveDirective} blocked ${event.blockedURI || 'inline'} (${event.sourceFile}:${event.lineNumber})`);
    });
  });
}

// Run `scenario`, report, clean up and exit with its outcome.
export async function run(name, browser, output, scenario) {
  const { context, page, problems, profile } = browser;
  let failed = false;
  try {
    await scenario();
  } catch (error) {
    failed = true;
    const reason = error instanceof CheckFailed ? error.message : error.stack || String(error);
    console.error(`FAILED at step "${currentStep}": ${reason}`);
    if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
    try {
      const shot = path.join(output, `${name}-failure.png`);
      await page.screenshot({ path: shot, fullPage: true });
      console.error(`failure screenshot: ${shot}`);
    } catch (shotError) {
      console.error(`no failure screenshot: ${shotError.message}`);
    }
  } finally {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
  console.log(failed ? `${name} e2e: FAILED` : `${name} e2e: all steps passed`);
  process.exit(failed ? 1 : 0);
}
