/**
 * The Connections section of a hub sandbox's sidebar: browse the lake (moto's
 * S3 server) one level, import a prefix as a dataset through the platform, and
 * find it in the Datasets section. Started by tests/test_connections_hub.py
 * with HUB_URL, HUB_USER, HUB_PASSWORD, DATASET, ARTIFACTS and CHROMIUM in the
 * environment; prints `SUMMARY {json}`.
 */
import path from 'node:path';

import { hubStory, log } from './browser.mjs';

const dataset = process.env.DATASET ?? 'clicks-ui';
const sidebar = '#dsdata-sidebar';
const dialog = '.jp-Dialog';
const summary = {};

await hubStory(
  'hub-connections',
  'lab',
  async ({ page, out }) => {
    await page.locator('#jp-main-dock-panel').waitFor();
    await page
      .locator('.jp-SideBar .lm-TabBar-tab[data-id="dsdata-sidebar"]')
      .click();
    const header = page
      .locator(`${sidebar} .jp-AccordionPanel-title`)
      .filter({ hasText: 'Connections' });
    if ((await header.getAttribute('aria-expanded')) === 'false') {
      await header.click();
    }
    const lake = page.locator(
      `${sidebar} .dsdata-Connection[data-name="lake"]`
    );
    await lake.waitFor();
    summary.connections = await page
      .locator(`${sidebar} .dsdata-Connection`)
      .evaluateAll(items => items.map(i => i.getAttribute('data-name')));
    await lake.locator('.dsdata-BrowseButton').click();
    const prefix = lake.locator('.dsdata-Prefix[data-key="2026-11/"]');
    await prefix.waitFor();
    summary.browsed = (await lake.locator('.dsdata-Browse').innerText()).trim();
    log('browsed lake:', summary.browsed.replace(/\n/g, ' | '));
    await page.screenshot({ path: path.join(out, 'hub-connections.png') });

    await prefix.locator('button', { hasText: 'Import…' }).click();
    await page.locator(`${dialog} input[name="as"]`).waitFor();
    summary.proposedPath = await page.inputValue(
      `${dialog} input[name="path"]`
    );
    await page.fill(`${dialog} input[name="as"]`, dataset);
    await page.locator(`${dialog} .jp-Dialog-button.jp-mod-accept`).click();
    const done = page
      .locator('.jp-Notification-Toast-success')
      .filter({ hasText: `Imported ${dataset}` })
      .first();
    await done.waitFor({ timeout: 120000 });
    summary.toast = (await done.innerText()).trim().split('\n')[0];
    log('import:', summary.toast);
    await page
      .locator(`${sidebar} .dsdata-Dataset[data-name="${dataset}"]`)
      .waitFor();
    summary.datasetRow = (
      await page
        .locator(`${sidebar} .dsdata-Dataset[data-name="${dataset}"]`)
        .innerText()
    ).trim();
    await page.screenshot({
      path: path.join(out, 'hub-connections-imported.png')
    });
  },
  () => console.log(`SUMMARY ${JSON.stringify(summary)}`)
);
