/**
 * "Run Notebook as a Job…" from the command palette of a hub sandbox, with the
 * notebook open in the main area: the dialog proposes that notebook, the job
 * is submitted with parameters, the toast names it. Started by
 * tests/test_jobs_hub.py with HUB_URL, HUB_USER, HUB_PASSWORD, NOTEBOOK,
 * ARTIFACTS and CHROMIUM in the environment; prints `SUMMARY {json}`.
 */
import path from 'node:path';

import { hubStory, log } from './browser.mjs';

const notebook = process.env.NOTEBOOK ?? 'train.ipynb';
const dialog = '.jp-Dialog';
const summary = {};

await hubStory(
  'hub-jobs',
  `lab/tree/${notebook}`,
  async ({ page, out }) => {
    await page.locator('.jp-NotebookPanel').first().waitFor();
    // once its kernel is idle the notebook no longer takes the focus (which would
    // close the palette and send the keys to a cell)
    await page
      .locator('.jp-StatusBar-TextItem', { hasText: '| Idle' })
      .first()
      .waitFor({ timeout: 60000 });
    await page.locator('.jp-NotebookPanel .jp-Notebook').first().click();
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+Shift+C');
    const palette = page.locator('#modal-command-palette');
    await palette.locator('input').waitFor();
    await palette.locator('input').fill('Run Notebook as a Job');
    // the palette re-renders while the notebook loads: run the active item by key
    await palette
      .locator('.lm-CommandPalette-item.lm-mod-active')
      .filter({ hasText: 'Run Notebook as a Job…' })
      .first()
      .waitFor();
    await palette.locator('input').press('Enter');
    await page.locator(`${dialog} input[name="notebook"]`).waitFor();
    summary.proposed = await page.inputValue(
      `${dialog} input[name="notebook"]`
    );
    await page.fill(
      `${dialog} textarea[name="parameters"]`,
      'alpha=7\nname=lab'
    );
    await page.fill(`${dialog} input[name="cpu"]`, '1');
    await page.screenshot({ path: path.join(out, 'hub-jobs-dialog.png') });
    await page.locator(`${dialog} .jp-Dialog-button.jp-mod-accept`).click();
    const done = page
      .locator('.jp-Notification-Toast-success')
      .filter({ hasText: 'Job ' })
      .first();
    await done.waitFor({ timeout: 120000 });
    summary.toast = (await done.innerText()).trim().split('\n')[0];
    log('job:', summary.toast);
  },
  () => console.log(`SUMMARY ${JSON.stringify(summary)}`)
);
