/**
 * End-to-end story of the Data & Models sidebar in a real JupyterLab, driven
 * in Debian's chromium with playwright-core. Started by tests/test_lab_e2e.py,
 * which runs the JupyterLab (with a DVC registry and an MLflow server) and
 * passes, in the environment:
 *
 *   LAB_URL      the server's base URL, e.g. http://127.0.0.1:8888/
 *   LAB_TOKEN    its token
 *   MLFLOW_URL   the MLflow server the sidebar should link to
 *   ARTIFACTS    folder for screenshots (written in step order)
 *   CHROMIUM     the browser (default /usr/bin/chromium)
 *
 * Each step waits for what a user would see; the script exits 1 at the first
 * step that does not happen, after a screenshot named `failure.png`.
 */
import fs from 'node:fs';
import path from 'node:path';

import { launchPage, log, runStory } from './browser.mjs';

const base = (process.env.LAB_URL ?? '').replace(/\/?$/, '/');
const token = process.env.LAB_TOKEN ?? '';
const mlflowUrl = (process.env.MLFLOW_URL ?? '').replace(/\/$/, '');
const out = process.env.ARTIFACTS ?? 'test-artifacts';
fs.mkdirSync(out, { recursive: true });

function check(condition, message) {
  if (!condition) {
    throw new Error(`check failed: ${message}`);
  }
}

const { browser, page } = await launchPage();

let shots = 0;
async function shot(name) {
  shots += 1;
  // each section of the sidebar from its top, so the screenshot shows its state
  await page.evaluate(() => {
    for (const section of document.querySelectorAll('.dsdata-Section')) {
      section.scrollTop = 0;
    }
  });
  const file = path.join(out, `${String(shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  log('screenshot', file);
}

const sidebar = '#dsdata-sidebar';
const dialog = '.jp-Dialog';

/** Wait for a toast of `kind` whose text contains `text`; close it. */
async function toast(kind, text) {
  const item = page
    .locator(`.jp-Notification-Toast-${kind}`)
    .filter({ hasText: text })
    .first();
  await item.waitFor();
  const said = (await item.innerText()).trim();
  log(`notification (${kind}):`, said.split('\n')[0]);
  return said;
}

async function dismissToasts() {
  const closers = page.locator('.jp-Notification-Toast-Close');
  for (let i = (await closers.count()) - 1; i >= 0; i--) {
    await closers
      .nth(i)
      .click({ timeout: 2000 })
      .catch(() => undefined);
  }
}

async function accept() {
  await page.locator(`${dialog} .jp-Dialog-button.jp-mod-accept`).click();
  await page.locator(dialog).waitFor({ state: 'detached' });
}

/** Open a section of the sidebar (accordion) if it is collapsed. */
async function expand(title) {
  const header = page
    .locator(`${sidebar} .jp-AccordionPanel-title`)
    .filter({ hasText: title });
  if ((await header.getAttribute('aria-expanded')) === 'false') {
    await header.click();
  }
}

/** Record every label a pull shows, from now on (a MutationObserver). */
async function recordPullLabels() {
  await page.evaluate(() => {
    const seen = [];
    window.__dsdataLabels = seen;
    const note = () => {
      for (const node of document.querySelectorAll('.dsdata-Pull-label')) {
        if (!seen.includes(node.textContent)) {
          seen.push(node.textContent);
        }
      }
    };
    new MutationObserver(note).observe(document.body, {
      subtree: true,
      childList: true,
      characterData: true
    });
  });
}

async function pull({ dataset, version, path: target, force = false }) {
  await page
    .locator(`${sidebar} .dsdata-Dataset[data-name="${dataset}"] button`)
    .click();
  await page.locator(`${dialog} select[name="version"]`).waitFor();
  await page.selectOption(`${dialog} select[name="version"]`, version);
  const proposed = await page.inputValue(`${dialog} input[name="path"]`);
  check(
    proposed === `data/${dataset}`,
    `the dialog proposes data/${dataset}, not ${proposed}`
  );
  if (target) {
    await page.fill(`${dialog} input[name="path"]`, target);
  }
  if (force) {
    await page.check(`${dialog} input[name="force"]`);
  }
  await accept();
}

async function fileBrowserShows(names) {
  for (const name of names) {
    await page
      .locator('.jp-DirListing-content .jp-DirListing-itemText')
      .filter({ hasText: new RegExp(`^${name}$`) })
      .first()
      .waitFor();
  }
}

async function openInFileBrowser(name) {
  await page
    .locator('.jp-DirListing-content .jp-DirListing-item')
    .filter({
      has: page.locator('.jp-DirListing-itemText', {
        hasText: new RegExp(`^${name}$`)
      })
    })
    .first()
    .dblclick();
}

async function commitDialog({
  message,
  params = '',
  metrics = '',
  outputs = ''
}) {
  await page.locator(`${sidebar} .dsdata-CommitButton`).click();
  await page.locator(`${dialog} input[name="message"]`).waitFor();
  await page.fill(`${dialog} input[name="message"]`, message);
  await page.fill(`${dialog} textarea[name="params"]`, params);
  await page.fill(`${dialog} textarea[name="metrics"]`, metrics);
  await page.fill(`${dialog} input[name="outputs"]`, outputs);
  await accept();
}

function runItem(message) {
  return page
    .locator(`${sidebar} .dsdata-Run`)
    .filter({
      has: page.locator('.dsdata-Run-message', {
        hasText: new RegExp(
          `^${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`
        )
      })
    })
    .first();
}

const summary = {};
await runStory(
  { browser, page },
  path.join(out, 'failure.png'),
  async () => {
    // --- JupyterLab with the extension --------------------------------------------
    await page.goto(`${base}lab?token=${token}`);
    await page.locator('#jp-main-dock-panel').waitFor();
    const tab = page.locator(
      '.jp-SideBar .lm-TabBar-tab[data-id="dsdata-sidebar"]'
    );
    await tab.waitFor();
    log('JupyterLab is up; the sidebar tab is there');

    // --- the sidebar: catalog, experiments, models --------------------------------
    await tab.click();
    // wider than its default, for readable screenshots (as a user would drag it)
    const handle = page
      .locator('#jp-main-split-panel > .lm-SplitPanel-handle')
      .first();
    const box = await handle.boundingBox();
    if (box) {
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await page.mouse.down();
      await page.mouse.move(box.x + 160, box.y + box.height / 2, { steps: 5 });
      await page.mouse.up();
    }
    const iris = page.locator(`${sidebar} .dsdata-Dataset[data-name="iris"]`);
    await iris.waitFor();
    const irisText = await iris.innerText();
    check(
      irisText.includes('Iris flowers, renamed columns'),
      `iris shows its description: ${irisText}`
    );
    check(
      irisText.includes('versions: v2.0.0, v1.1.0, v1.0.0'),
      `iris lists its versions newest first: ${irisText}`
    );
    await page.locator(`${sidebar} .dsdata-Dataset[data-name="big"]`).waitFor();
    await page
      .locator(`${sidebar} .dsdata-Empty`)
      .filter({ hasText: 'Nothing pulled yet.' })
      .waitFor();
    const mlflowLink = page.locator(`${sidebar} .dsdata-MLflowLink`);
    await mlflowLink.waitFor();
    const href = await mlflowLink.getAttribute('href');
    check(href === mlflowUrl, `Open MLflow links to ${mlflowUrl}, not ${href}`);
    await shot('sidebar');

    // --- pull iris v1.1.0 into data/iris, then big v2 with live progress ----------
    await recordPullLabels();
    await pull({ dataset: 'iris', version: 'v1.1.0' });
    await toast('success', 'Pulled iris v1.1.0 into data/iris');
    await page
      .locator(
        `${sidebar} .dsdata-Pulled[data-path="data/iris"][data-state="unchanged"]`
      )
      .waitFor();
    await pull({ dataset: 'big', version: 'v2.0.0' });
    await page
      .locator(`${sidebar} .dsdata-Pull[data-status="running"]`)
      .first()
      .waitFor();
    await shot('pull-in-progress');
    await toast('success', 'Pulled big v2.0.0 into data/big');
    await page
      .locator(
        `${sidebar} .dsdata-Pulled[data-path="data/big"][data-state="unchanged"]`
      )
      .waitFor();
    const labels = await page.evaluate(() => window.__dsdataLabels);
    log('pull labels seen:', JSON.stringify(labels));
    summary.pullLabels = labels;
    check(
      labels.some(l =>
        /^big@v2\.0\.0: downloading .* of 50 MiB, \d+\/50 files$/.test(l)
      ),
      'the big pull showed its download progress'
    );
    check(
      labels.includes('big v2.0.0 → data/big (50 files, 50 MiB)'),
      'the big pull ended with its result'
    );
    const finished = await page
      .locator(`${sidebar} .dsdata-Pull[data-status="done"]`)
      .count();
    check(finished === 2, `two finished pulls are listed, not ${finished}`);
    await shot('pulled');

    // --- the file browser shows the data ------------------------------------------
    await page
      .locator('.jp-SideBar .lm-TabBar-tab[data-id="filebrowser"]')
      .click();
    await fileBrowserShows(['data', 'train.py']);
    await openInFileBrowser('data');
    await fileBrowserShows(['iris', 'big']);
    await openInFileBrowser('iris');
    await fileBrowserShows(['iris.csv']);
    await shot('file-browser');
    await page.locator('.jp-FileBrowser .jp-BreadCrumbs-home').first().click();

    // --- a local change shows as modified; a pull then needs "replace" ------------
    const status = await page.evaluate(
      async ({ base, token }) => {
        const response = await fetch(`${base}api/contents/data/iris/iris.csv`, {
          method: 'PUT',
          headers: {
            Authorization: `token ${token}`,
            'Content-Type': 'application/json'
          },
          body: JSON.stringify({
            type: 'file',
            format: 'text',
            content: 'edited\n'
          })
        });
        return response.status;
      },
      { base, token }
    );
    check(status === 200, `the contents API saved the edit (status ${status})`);
    await tab.click();
    await expand('Datasets');
    await page.locator(`${sidebar} #dsdata-datasets .dsdata-Refresh`).click();
    const modified = page.locator(
      `${sidebar} .dsdata-Pulled[data-path="data/iris"][data-state="modified"]`
    );
    await modified.waitFor();
    check(
      (await modified.innerText()).includes('modified (1 file)'),
      'the edited dataset says modified (1 file)'
    );
    await dismissToasts();
    await pull({ dataset: 'iris', version: 'v1.1.0' });
    summary.conflict = await toast(
      'error',
      'has local changes (1 file(s): iris.csv)'
    );
    await shot('pull-refused');
    await dismissToasts();
    await pull({ dataset: 'iris', version: 'v1.1.0', force: true });
    await page
      .locator(
        `${sidebar} .dsdata-Pulled[data-path="data/iris"][data-state="unchanged"]`
      )
      .waitFor();
    log('the forced pull restored data/iris');

    // --- commit: a bad metric is the server's message, then a real commit ---------
    await dismissToasts();
    await expand('Experiments');
    await commitDialog({ message: 'bad metric', metrics: 'auc=high' });
    summary.badMetric = await toast(
      'error',
      "Metric auc='high' is not a number"
    );
    await shot('commit-refused');
    await dismissToasts();
    await commitDialog({
      message: 'e2e: first run',
      params: 'lr=0.1\ndepth=3',
      metrics: 'auc=0.875',
      outputs: 'model'
    });
    await toast('success', 'Committed');
    const run = runItem('e2e: first run');
    await run.waitFor();
    const runText = await run.innerText();
    log('run listed:', runText.replace(/\n/g, ' | '));
    check(runText.includes('auc=0.875'), 'the run shows its metric');
    check(
      runText.includes('data: big@v2.0.0 iris@v1.1.0'),
      'the run shows its datasets'
    );
    check(/git [0-9a-f]{10}/.test(runText), 'the run shows its git sha');
    const runHref = await run.locator('a.dsdata-Link').getAttribute('href');
    check(
      runHref.startsWith(`${mlflowUrl}/#/experiments/`),
      `the run links to MLflow: ${runHref}`
    );
    summary.runId = await run.getAttribute('data-run-id');
    await shot('committed');

    // --- publish from a path, then from the run that publish made -----------------
    await dismissToasts();
    await expand('Models');
    await page.locator(`${sidebar} .dsdata-PublishButton`).click();
    await page.locator(`${dialog} input[name="model"]`).waitFor();
    await page.fill(`${dialog} input[name="model"]`, 'iris-e2e');
    await page.selectOption(`${dialog} select[name="source"]`, 'path');
    await page.fill(`${dialog} input[name="path"]`, 'model/model.pkl');
    await page.fill(`${dialog} input[name="alias"]`, 'staging');
    await accept();
    await toast('success', 'Registered iris-e2e version 1');
    const model = page.locator(
      `${sidebar} .dsdata-Model[data-name="iris-e2e"]`
    );
    await model.locator('.dsdata-Alias[data-alias="staging"]').waitFor();
    check(
      (await model.innerText()).includes('staging → v1'),
      'the model shows staging → v1'
    );
    await shot('published');

    await dismissToasts();
    const publishRun = runItem(
      'publish model/model.pkl (not committed: this run holds only the model)'
    );
    await publishRun.waitFor();
    await publishRun.locator('.dsdata-PublishRun').click();
    await page.locator(`${dialog} select[name="run"]`).waitFor();
    const chosenRun = await page.inputValue(`${dialog} select[name="run"]`);
    check(
      chosenRun === (await publishRun.getAttribute('data-run-id')),
      'the dialog starts from the run whose button was clicked'
    );
    await page.fill(`${dialog} input[name="model"]`, 'iris-e2e');
    await page.fill(`${dialog} input[name="alias"]`, 'production');
    await accept();
    await toast('success', 'Registered iris-e2e version 2');
    await model.locator('.dsdata-Alias[data-alias="production"]').waitFor();
    const modelText = await model.innerText();
    check(
      modelText.includes('versions: v1, v2'),
      `both versions: ${modelText}`
    );
    check(
      modelText.includes('production → v2') &&
        modelText.includes('staging → v1'),
      `aliases: ${modelText}`
    );
    await shot('published-from-run');

    // --- the command palette -------------------------------------------------------
    await dismissToasts();
    await page.keyboard.press('Control+Shift+C');
    const palette = page.locator('#modal-command-palette');
    await palette.locator('input').waitFor();
    await palette.locator('input').fill('Data & Models');
    for (const label of [
      'Pull Dataset…',
      'Commit Experiment…',
      'Publish Model…'
    ]) {
      await palette
        .locator('.lm-CommandPalette-item')
        .filter({ hasText: label })
        .first()
        .waitFor();
    }
    const header = await palette
      .locator('.lm-CommandPalette-header')
      .first()
      .innerText();
    check(/data & models/i.test(header), `the palette category: ${header}`);
    await shot('palette');
    await palette.locator('input').fill('Pull Dataset');
    await palette
      .locator('.lm-CommandPalette-item')
      .filter({ hasText: 'Pull Dataset…' })
      .first()
      .click();
    await page.locator(`${dialog} select[name="dataset"]`).waitFor();
    await shot('palette-pull-dialog');
    await page.locator(`${dialog} .jp-Dialog-button.jp-mod-reject`).click();
    log('the palette opened the pull dialog');
  },
  () => console.log(`SUMMARY ${JSON.stringify(summary)}`)
);
