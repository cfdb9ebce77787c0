/**
 * The pull, commit and publish dialogs: JupyterLab `Dialog`s whose bodies are
 * small forms; `getValue()` gives the fields, `forms.ts` turns them into
 * requests.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import type { IConnection, IDataset, IRun } from './api';
import {
  defaultImportName,
  defaultPullPath,
  IChoice,
  ICommitForm,
  IImportForm,
  IPublishForm,
  IPullForm,
  IRunJobForm,
  runChoices,
  versionChoices
} from './forms';

function field(
  parent: HTMLElement,
  label: string,
  control: HTMLElement,
  hint?: string
): void {
  const row = document.createElement('label');
  row.className = 'dsdata-Form-field';
  const title = document.createElement('span');
  title.className = 'dsdata-Form-label';
  title.textContent = label;
  row.append(title, control);
  if (hint) {
    const small = document.createElement('small');
    small.className = 'dsdata-Form-hint';
    small.textContent = hint;
    row.append(small);
  }
  parent.append(row);
}

function input(name: string, value = '', placeholder = ''): HTMLInputElement {
  const element = document.createElement('input');
  element.className = 'jp-mod-styled';
  element.name = name;
  element.value = value;
  element.placeholder = placeholder;
  return element;
}

function textarea(name: string, placeholder: string): HTMLTextAreaElement {
  const element = document.createElement('textarea');
  element.className = 'jp-mod-styled';
  element.name = name;
  element.rows = 3;
  element.placeholder = placeholder;
  return element;
}

function select(name: string, choices: IChoice[]): HTMLSelectElement {
  const element = document.createElement('select');
  element.className = 'jp-mod-styled';
  element.name = name;
  fill(element, choices);
  return element;
}

function fill(element: HTMLSelectElement, choices: IChoice[]): void {
  element.replaceChildren(
    ...choices.map(choice => {
      const option = document.createElement('option');
      option.value = choice.value;
      option.textContent = choice.label;
      return option;
    })
  );
}

/**
 * Dataset, version, target folder and force.
 */
export class PullForm extends Widget implements Dialog.IBodyWidget<IPullForm> {
  constructor(datasets: IDataset[], chosen: string, folder: string) {
    super();
    this.addClass('dsdata-Form');
    const byName = new Map(datasets.map(d => [d.name, d]));
    this.datasetSelect = select(
      'dataset',
      datasets.map(d => ({ value: d.name, label: d.name }))
    );
    this.datasetSelect.value = byName.has(chosen)
      ? chosen
      : (datasets[0]?.name ?? '');
    this.versionSelect = select('version', []);
    this.pathInput = input('path');
    this.forceBox = document.createElement('input');
    this.forceBox.type = 'checkbox';
    this.forceBox.name = 'force';
    let pathEdited = false;
    this.pathInput.addEventListener('input', () => (pathEdited = true));
    const chooseDataset = () => {
      const dataset = byName.get(this.datasetSelect.value);
      fill(this.versionSelect, dataset ? versionChoices(dataset) : []);
      if (!pathEdited) {
        this.pathInput.value = defaultPullPath(
          this.datasetSelect.value,
          folder,
          dataset
        );
      }
    };
    this.datasetSelect.addEventListener('change', chooseDataset);
    chooseDataset();
    field(this.node, 'Dataset', this.datasetSelect);
    field(this.node, 'Version', this.versionSelect);
    field(
      this.node,
      'Into folder',
      this.pathInput,
      'relative to the server root, as in the file browser'
    );
    field(
      this.node,
      'Replace local changes (--force)',
      this.forceBox,
      'otherwise a folder with changes is left as it is'
    );
  }

  getValue(): IPullForm {
    return {
      dataset: this.datasetSelect.value,
      version: this.versionSelect.value,
      path: this.pathInput.value,
      force: this.forceBox.checked
    };
  }

  readonly datasetSelect: HTMLSelectElement;
  readonly versionSelect: HTMLSelectElement;
  readonly pathInput: HTMLInputElement;
  readonly forceBox: HTMLInputElement;
}

/**
 * Message, params, metrics and outputs of `%dsdata commit`.
 */
export class CommitForm
  extends Widget
  implements Dialog.IBodyWidget<ICommitForm>
{
  constructor() {
    super();
    this.addClass('dsdata-Form');
    field(this.node, 'Message', this.message, 'what changed (required)');
    field(this.node, 'Params', this.params, 'key=value, one per line');
    field(this.node, 'Metrics', this.metrics, 'key=number, one per line');
    field(
      this.node,
      'Outputs',
      this.outputs,
      'paths to version with DVC, e.g. model/ (optional)'
    );
    field(
      this.node,
      'Model',
      this.model,
      'the trained model, logged in this run: an MLflow model directory or a pickle (optional)'
    );
  }

  getValue(): ICommitForm {
    return {
      message: this.message.value,
      params: this.params.value,
      metrics: this.metrics.value,
      outputs: this.outputs.value,
      model: this.model.value
    };
  }

  readonly message = input('message', '', 'tuned the learning rate');
  readonly params = textarea('params', 'lr=0.05\ndepth=3');
  readonly metrics = textarea('metrics', 'auc=0.91');
  readonly outputs = input('outputs', '', 'model/');
  readonly model = input('model', '', 'model/model.pkl');
}

/**
 * Model name, source (a run of this project, or a path) and alias.
 */
export class PublishForm
  extends Widget
  implements Dialog.IBodyWidget<IPublishForm>
{
  constructor(runs: IRun[], runId = '') {
    super();
    this.addClass('dsdata-Form');
    const choices = runChoices(runs);
    this.run = select('run', choices);
    if (runId && !choices.some(c => c.value === runId)) {
      fill(this.run, [{ value: runId, label: runId }, ...choices]);
    }
    if (runId) {
      this.run.value = runId;
    }
    this.source = select('source', [
      { value: 'run', label: "a run's MLflow model (runs:/RUN/model)" },
      { value: 'path', label: 'a path in the workspace' }
    ]);
    this.source.value = choices.length || runId ? 'run' : 'path';
    const runField = document.createElement('div');
    const pathField = document.createElement('div');
    const showSource = () => {
      runField.hidden = this.source.value !== 'run';
      pathField.hidden = this.source.value !== 'path';
    };
    this.source.addEventListener('change', showSource);
    field(this.node, 'Model name', this.model, 'registered model to add to');
    field(this.node, 'From', this.source);
    field(runField, 'Run', this.run);
    field(
      pathField,
      'Path',
      this.path,
      'an MLflow model folder or a pickled scikit-learn model'
    );
    this.node.append(runField, pathField);
    field(
      this.node,
      'Alias',
      this.alias,
      'optional, e.g. staging; moves to the new version'
    );
    showSource();
  }

  getValue(): IPublishForm {
    return {
      model: this.model.value,
      source: this.source.value === 'path' ? 'path' : 'run',
      runId: this.run.value,
      path: this.path.value,
      alias: this.alias.value
    };
  }

  readonly model = input('model', '', 'churn');
  readonly source: HTMLSelectElement;
  readonly run: HTMLSelectElement;
  readonly path = input('path', '', 'model/model.pkl');
  readonly alias = input('alias', '', 'staging');
}

/**
 * Show a form dialog; the form's value when accepted, else `null`.
 */
export async function askForm<T>(
  title: string,
  body: Dialog.IBodyWidget<T>,
  accept: string
): Promise<T | null> {
  const result = await showDialog<T>({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: accept })],
    focusNodeSelector: 'input, select'
  });
  return result.button.accept ? result.value : null;
}

/**
 * The import dialog: the dataset name, then a lake path (S3) or a query and
 * its parameters (SQL); the connection is chosen in the dialog.
 */
export class ImportForm
  extends Widget
  implements Dialog.IBodyWidget<IImportForm & { connection: string }>
{
  constructor(connections: IConnection[], connection = '', path = '') {
    super();
    this.addClass('dsdata-Form');
    this.connections = connections;
    this.connection = select(
      'connection',
      connections.map(c => ({
        value: c.name,
        label: `${c.name} (${c.type === 's3' ? 'lake' : 'warehouse'})`
      }))
    );
    if (connection) {
      this.connection.value = connection;
    }
    this.path.value = path;
    const lake = document.createElement('div');
    const warehouse = document.createElement('div');
    const show = () => {
      const chosen = this.chosen();
      lake.hidden = chosen?.type !== 's3';
      warehouse.hidden = chosen?.type !== 'sql';
      if (chosen && !this.as.dataset.edited) {
        this.as.value = defaultImportName(chosen, this.path.value);
      }
    };
    this.connection.addEventListener('change', show);
    this.path.addEventListener('input', show);
    this.as.addEventListener('input', () => (this.as.dataset.edited = '1'));
    field(this.node, 'Connection', this.connection);
    field(
      lake,
      'Path',
      this.path,
      "a prefix or an object below the connection's"
    );
    field(warehouse, 'Query', this.query, 'a SELECT; :name binds a parameter');
    field(warehouse, 'Parameters', this.params, 'name=value, one per line');
    this.node.append(lake, warehouse);
    field(
      this.node,
      'Dataset',
      this.as,
      'a new version of it when the data changed'
    );
    show();
  }

  chosen(): IConnection | undefined {
    return this.connections.find(c => c.name === this.connection.value);
  }

  getValue(): IImportForm & { connection: string } {
    return {
      connection: this.connection.value,
      as: this.as.value,
      path: this.path.value,
      query: this.query.value,
      params: this.params.value
    };
  }

  readonly connections: IConnection[];
  readonly connection: HTMLSelectElement;
  readonly as = input('as', '', 'clicks');
  readonly path = input('path', '', '2026-11/');
  readonly query = textarea(
    'query',
    'SELECT * FROM customers WHERE tenure >= :t'
  );
  readonly params = textarea('params', 't=12');
}

/**
 * The notebook, profile, resources, parameters and options of `%dsdata run`.
 */
export class RunJobForm
  extends Widget
  implements Dialog.IBodyWidget<IRunJobForm>
{
  constructor(notebook = '') {
    super();
    this.addClass('dsdata-Form');
    this.notebook.value = notebook;
    field(this.node, 'Notebook', this.notebook, 'a notebook of the workspace');
    field(this.node, 'Profile', this.profile, "empty: this sandbox's profile");
    field(this.node, 'CPUs', this.cpu, "empty: the profile's default");
    field(this.node, 'Memory', this.memory, 'e.g. 4G');
    field(this.node, 'GPUs', this.gpus, "empty: the profile's default");
    field(
      this.node,
      'Parameters',
      this.parameters,
      "name=value, one per line: into the notebook's 'parameters' cell"
    );
    field(
      this.node,
      'Wait',
      this.wait,
      'wait in the queue if it does not fit now'
    );
    field(
      this.node,
      'Commit',
      this.commit,
      'commit the succeeded job as a run'
    );
  }

  getValue(): IRunJobForm {
    return {
      notebook: this.notebook.value,
      profile: this.profile.value,
      cpu: this.cpu.value,
      memory: this.memory.value,
      gpus: this.gpus.value,
      parameters: this.parameters.value,
      wait: this.wait.checked,
      commit: this.commit.checked
    };
  }

  readonly notebook = input('notebook', '', 'train.ipynb');
  readonly profile = input('profile', '', 'gpu-a100');
  readonly cpu = input('cpu', '', '2');
  readonly memory = input('memory', '', '4G');
  readonly gpus = input('gpus', '', '1');
  readonly parameters = textarea('parameters', 'lr=0.01\nepochs=20');
  readonly wait = checkbox('wait');
  readonly commit = checkbox('commit');
}

function checkbox(name: string): HTMLInputElement {
  const element = document.createElement('input');
  element.type = 'checkbox';
  element.name = name;
  return element;
}
