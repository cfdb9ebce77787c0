/**
 * A new user's story: run cells in a new notebook, then `%dsdata commit` from
 * the notebook without saving it first. The commit must record the cells that
 * ran (the kernel asks the frontend to save; server_ext/notebook.py), not the
 * empty file the launcher created. Started by tests/test_lab_e2e.py with
 * LAB_URL, LAB_TOKEN, ARTIFACTS and CHROMIUM in the environment.
 */
import fs from 'node:fs';
import path from 'node:path';

import { launchPage, log, runStory } from './browser.mjs';

const base = (process.env.LAB_URL ?? '').replace(/\/?$/, '/');
const token = process.env.LAB_TOKEN ?? '';
const out = process.env.ARTIFACTS ?? 'test-artifacts';
fs.mkdirSync(out, { recursive: true });

const { browser, page } = await launchPage();
const summary = {};

/** Type `code` into the active cell and run it (Shift+Enter). */
async function runCell(code) {
  await page.keyboard.type(code);
  await page.keyboard.press('Shift+Enter');
}

/** The text of the output area of the cell whose input contains `marker`. */
async function outputOf(marker, expected) {
  const cell = page.locator('.jp-Notebook .jp-CodeCell').filter({
    has: page.locator('.jp-InputArea', { hasText: marker })
  });
  const output = cell.locator('.jp-OutputArea').filter({ hasText: expected });
  await output.waitFor({ timeout: 120000 });
  return (await output.innerText()).trim();
}

await runStory(
  { browser, page },
  path.join(out, 'notebook-commit-failure.png'),
  async () => {
    await page.goto(`${base}lab?token=${token}`);
    await page.locator('#jp-main-dock-panel').waitFor();
    await page
      .locator('.jp-LauncherCard[data-category="Notebook"]')
      .first()
      .click();
    const editor = page.locator('.jp-Notebook .jp-Cell .cm-content').first();
    await editor.waitFor();
    // the kernel must be up before Shift+Enter, or the run is dropped
    await page
      .locator('.jp-StatusBar-TextItem')
      .filter({ hasText: /\| Idle/ })
      .first()
      .waitFor({ timeout: 120000 });
    await editor.click();
    log('a new notebook is open');

    await runCell("x = 41 + 1\nprint('trained', x)");
    summary.trained = await outputOf('41 + 1', 'trained 42');
    log('the training cell ran:', summary.trained);

    // no save: the file on disk is still the empty notebook the launcher made
    await runCell('%dsdata commit -m "from the notebook"');
    summary.commit = await outputOf('%dsdata commit', 'committed');
    log('the commit said:', summary.commit.replace(/\n/g, ' | '));
    await page.screenshot({ path: path.join(out, 'notebook-commit.png') });
    summary.title = await page
      .locator(
        '.jp-mod-current .lm-TabBar-tabLabel, .lm-TabBar-tab.jp-mod-current'
      )
      .first()
      .innerText()
      .catch(() => '');
  },
  () => console.log(`SUMMARY ${JSON.stringify(summary)}`)
);
