/**
 * What the browser stories share: Debian's chromium through playwright-core
 * (Playwright's own browser downloads do not work on these machines) with the
 * flags it needs here, and a log line with the seconds since the start.
 */
import fs from 'node:fs';
import path from 'node:path';

import { chromium } from 'playwright-core';

const started = Date.now();

export function log(...parts) {
  const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  console.log(`[${seconds}s]`, ...parts);
}

/** A new page of a headless chromium (CHROMIUM, default /usr/bin/chromium). */
export async function launchPage() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run'
    ]
  });
  const context = await browser.newContext({
    viewport: { width: 1440, height: 900 }
  });
  const page = await context.newPage();
  page.setDefaultTimeout(Number(process.env.STEP_TIMEOUT_MS ?? 60000));
  page.on('pageerror', error => log('page error:', error.message));
  page.on('console', message => {
    if (message.type() === 'error' || message.text().includes('dsdata')) {
      log(`console.${message.type()}:`, message.text());
    }
  });
  return { browser, page };
}

/** Log in through the hub's form as `user`, on the way to `next`. */
export async function hubLogin(page, hub, user, password, next) {
  await page.goto(`${hub}/hub/login?next=${next}`);
  await page.fill('#username_input', user);
  await page.fill('#password_input', password);
  await page.click('#login_submit');
}

/**
 * Run a story: `steps()`; on an error print it and screenshot `page` to
 * `failureShot`; close the browser; then `after()` (e.g. a summary line), a
 * last log line, and exit 0 or 1.
 */
export async function runStory(
  { browser, page },
  failureShot,
  steps,
  after = () => undefined
) {
  let failed = false;
  try {
    await steps();
  } catch (error) {
    failed = true;
    console.error(error);
    await page.screenshot({ path: failureShot }).catch(() => undefined);
  } finally {
    await browser.close();
  }
  after();
  log(failed ? 'FAILED' : 'all steps passed');
  process.exit(failed ? 1 : 0);
}

/**
 * A story in a hub user's sandbox: HUB_URL, HUB_USER (default alice),
 * HUB_PASSWORD and ARTIFACTS (screenshots) from the environment; logged in
 * through the hub's form on the way to `/user/USER/${next}`, then
 * `steps({ page, hub, user, out })` under runStory (`${name}-failure.png`).
 */
export async function hubStory(name, next, steps, after = () => undefined) {
  const hub = (process.env.HUB_URL ?? '').replace(/\/$/, '');
  const user = process.env.HUB_USER ?? 'alice';
  const out = process.env.ARTIFACTS ?? 'test-artifacts';
  fs.mkdirSync(out, { recursive: true });
  const { browser, page } = await launchPage();
  await runStory(
    { browser, page },
    path.join(out, `${name}-failure.png`),
    async () => {
      await hubLogin(
        page,
        hub,
        user,
        process.env.HUB_PASSWORD ?? '',
        `/user/${user}/${next}`
      );
      await steps({ page, hub, user, out });
    },
    after
  );
}
