/**
 * The admin usage view in the hub's pages: an admin logs in through the hub's
 * form, follows "Usage" in the navigation bar and reads the tables; a user who
 * is not an admin has no link and gets 403 at the page. Started by
 * tests/test_monitoring_hub.py with HUB_URL, ADMIN_PASSWORD, USER_PASSWORD,
 * ARTIFACTS and CHROMIUM in the environment; prints `SUMMARY {json}`.
 */
import fs from 'node:fs';
import path from 'node:path';

import { hubLogin, launchPage, log, runStory } from './browser.mjs';

const hub = (process.env.HUB_URL ?? '').replace(/\/$/, '');
const out = process.env.ARTIFACTS ?? 'test-artifacts';
fs.mkdirSync(out, { recursive: true });
const { browser, page } = await launchPage();
const summary = {};

async function login(name, password) {
  await page.context().clearCookies();
  await hubLogin(page, hub, name, password, '/hub/home');
  await page.waitForURL(/\/hub\/home/);
  log('logged in as', name);
}

function rows(table) {
  return page
    .locator(
      `#${table} tr[data-${table === 'pools' ? 'gpu-type' : table.slice(0, -1)}]`
    )
    .evaluateAll(trs =>
      trs.map(tr => [...tr.querySelectorAll('td')].map(td => td.innerText))
    );
}

await runStory(
  { browser, page },
  path.join(out, 'usage-page-failure.png'),
  async () => {
    await login('admin', process.env.ADMIN_PASSWORD ?? '');
    await page.locator('#dsplatform-usage-link').click();
    await page.locator('#servers').waitFor();
    summary.url = page.url();
    summary.servers = await rows('servers');
    summary.pools = await rows('pools');
    summary.users = await rows('users');
    summary.groups = await rows('groups');
    summary.csv = await page.locator('#usage-csv').getAttribute('href');
    await page.screenshot({
      path: path.join(out, 'usage-page.png'),
      fullPage: true
    });
    log('servers:', JSON.stringify(summary.servers));

    await login('alice', process.env.USER_PASSWORD ?? '');
    summary.aliceLinks = await page.locator('#dsplatform-usage-link').count();
    const response = await page.goto(`${hub}/hub/dsplatform/usage`);
    summary.aliceStatus = response.status();
    log('as alice: link', summary.aliceLinks, 'status', summary.aliceStatus);
  },
  () => console.log(`SUMMARY ${JSON.stringify(summary)}`)
);
