/**
 * The Data & Models sidebar in a sandbox spawned by JupyterHub, reached through
 * the hub's proxy under /user/NAME/. Started by tests/test_lab_e2e.py with:
 *
 *   HUB_URL      the hub's public URL, e.g. http://127.0.0.1:8000
 *   HUB_USER     the user whose server runs (profile with a preloaded dataset)
 *   HUB_PASSWORD the shared password of the local default authenticator
 *   PRELOADED    the dataset the profile preloads (into data/NAME)
 *   PULL         a dataset to pull from the sidebar
 *   EXPERIMENT   an MLflow experiment the MLflow UI (behind the hub login) lists
 *   ARTIFACTS    folder for screenshots
 *   CHROMIUM     the browser (default /usr/bin/chromium)
 */
import path from 'node:path';

import { hubStory, log } from './browser.mjs';

const sidebar = '#dsdata-sidebar';

await hubStory('hub-sandbox', 'lab', async ({ page, hub, user, out }) => {
  await page.locator('#jp-main-dock-panel').waitFor();
  log('JupyterLab of the sandbox at', page.url());
  if (!page.url().startsWith(`${hub}/user/${user}/lab`)) {
    throw new Error(`not the user's JupyterLab: ${page.url()}`);
  }
  await page
    .locator('.jp-SideBar .lm-TabBar-tab[data-id="dsdata-sidebar"]')
    .click();
  const preloaded = process.env.PRELOADED ?? 'iris';
  const row = page.locator(
    `${sidebar} .dsdata-Pulled[data-path="data/${preloaded}"][data-state="unchanged"]`
  );
  await row.waitFor();
  log('preloaded:', (await row.innerText()).replace(/\n/g, ' '));

  const name = process.env.PULL ?? 'churn';
  await page
    .locator(`${sidebar} .dsdata-Dataset[data-name="${name}"] button`)
    .click();
  await page.locator('.jp-Dialog .jp-Dialog-button.jp-mod-accept').click();
  await page
    .locator('.jp-Notification-Toast-success')
    .filter({ hasText: `into data/${name}` })
    .first()
    .waitFor();
  await page
    .locator(`${sidebar} .dsdata-Pulled[data-path="data/${name}"]`)
    .waitFor();
  log(
    'pulled through the proxy:',
    await page.locator('.dsdata-Pull-label').allInnerTexts()
  );
  await page.screenshot({ path: path.join(out, 'hub-sandbox.png') });

  // "Open MLflow": the UI behind the hub's login (MLflow has none), in a new tab
  const mlflowLink = page.locator(`${sidebar} .dsdata-MLflowLink`);
  const href = await mlflowLink.getAttribute('href');
  if (href !== '/services/catalog/mlflow/') {
    throw new Error(`Open MLflow links to ${href}, not the hub's MLflow route`);
  }
  const [tab] = await Promise.all([
    page.context().waitForEvent('page'),
    mlflowLink.click()
  ]);
  await tab.waitForLoadState();
  await tab.goto(`${hub}${href}#/experiments`);
  const experiment = process.env.EXPERIMENT ?? 'Default';
  await tab.getByText(experiment, { exact: true }).first().waitFor();
  log('MLflow UI through the hub lists', experiment, 'at', tab.url());
  await tab.screenshot({ path: path.join(out, 'hub-mlflow-ui.png') });
});
