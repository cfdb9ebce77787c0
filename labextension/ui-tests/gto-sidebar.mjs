/**
 * The sidebar over a registry made with the `dvc` and `gto` CLIs
 * (tests/registries.py `build_gto_registry`): what the Datasets section shows
 * for a single-file dataset with stages and a pre-release, a `DIR:NAME`
 * artifact of a nested dvc.yaml, a directory, and a dataset the catalog cannot
 * describe; then pulls of the single file by stage and of the nested artifact,
 * each to its proposed `data/<file name>`. Started by tests/test_lab_e2e.py
 * with LAB_URL, LAB_TOKEN, ARTIFACTS and CHROMIUM in the environment; prints
 * `SUMMARY {json}` with what each row said.
 */
import fs from 'node:fs';
import path from 'node:path';

import { launchPage, log, runStory } from './browser.mjs';

const base = (process.env.LAB_URL ?? '').replace(/\/?$/, '/');
const token = process.env.LAB_TOKEN ?? '';
const out = process.env.ARTIFACTS ?? 'test-artifacts';
fs.mkdirSync(out, { recursive: true });

const sidebar = '#dsdata-sidebar';
const dialog = '.jp-Dialog';
const { browser, page } = await launchPage();
const summary = { rows: {}, proposed: {}, versions: {}, pulled: [] };

function row(name) {
  return page.locator(`${sidebar} .dsdata-Dataset[data-name="${name}"]`);
}

/** Pull `dataset` at `version` to the path the dialog proposes. */
async function pull(dataset, version) {
  await row(dataset).locator('button').click();
  const select = page.locator(`${dialog} select[name="version"]`);
  await select.waitFor();
  summary.versions[dataset] = await select
    .locator('option')
    .evaluateAll(options => options.map(o => o.value));
  await select.selectOption(version);
  summary.proposed[dataset] = await page.inputValue(
    `${dialog} input[name="path"]`
  );
  await page.locator(`${dialog} .jp-Dialog-button.jp-mod-accept`).click();
  await page.locator(dialog).waitFor({ state: 'detached' });
  const done = page
    .locator('.jp-Notification-Toast-success')
    .filter({ hasText: `Pulled ${dataset} ` })
    .first();
  await done.waitFor({ timeout: 120000 });
  summary.pulled.push((await done.innerText()).trim().split('\n')[0]);
  log('pulled', dataset, version, 'to', summary.proposed[dataset]);
}

await runStory(
  { browser, page },
  path.join(out, 'gto-sidebar-failure.png'),
  async () => {
    await page.goto(`${base}lab?token=${token}`);
    await page.locator('#jp-main-dock-panel').waitFor();
    const tab = page.locator(
      '.jp-SideBar .lm-TabBar-tab[data-id="dsdata-sidebar"]'
    );
    await tab.click();
    await row('table').waitFor();
    for (const name of ['table', 'sub:feats', 'images', 'broken']) {
      summary.rows[name] = (await row(name).innerText()).trim();
      log(`row ${name}:`, summary.rows[name].replace(/\n/g, ' | '));
    }
    summary.names = await page
      .locator(`${sidebar} .dsdata-Dataset`)
      .evaluateAll(items => items.map(i => i.getAttribute('data-name')));
    await page.screenshot({ path: path.join(out, 'gto-sidebar.png') });

    await pull('table', 'prod');
    await pull('sub:feats', 'v1.0.0');
    await page.screenshot({ path: path.join(out, 'gto-sidebar-pulled.png') });
  },
  () => console.log(`SUMMARY ${JSON.stringify(summary)}`)
);
