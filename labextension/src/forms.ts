/**
 * Pure translation of the dialogs' fields into REST requests. Values are
 * checked by the server (one place for the rules); here only the shape of
 * what was typed is checked, with a message naming the field.
 */
import type {
  ICommitRequest,
  IConnection,
  IDataset,
  IImportRequest,
  IJobRequest,
  IPublishRequest,
  IPullRequest,
  IRun
} from './api';

/**
 * A field that cannot be turned into a request.
 */
export class FormError extends Error {}

export interface IChoice {
  value: string;
  label: string;
}

/**
 * Versions offered for a dataset: the latest, each version newest first, then
 * each GTO stage with the version it points to.
 */
export function versionChoices(dataset: IDataset): IChoice[] {
  const choices: IChoice[] = [
    { value: '', label: `latest (${dataset.latest})` }
  ];
  for (const version of [...dataset.versions].reverse()) {
    choices.push({ value: version, label: version });
  }
  for (const [stage, version] of Object.entries(dataset.stages ?? {}).sort()) {
    choices.push({ value: stage, label: `${stage} (${version})` });
  }
  return choices;
}

/**
 * The target proposed for a pull: `FOLDER/NAME` (`data/iris` by default; the
 * part after `DIR:` of a nested artifact), or `FOLDER/<file name>` for a
 * single-file dataset; a path relative to the server root as the file browser
 * shows it.
 */
export function defaultPullPath(
  name: string,
  folder = 'data',
  dataset?: Pick<IDataset, 'path' | 'kind'>
): string {
  const parent = folder.replace(/^\/+|\/+$/g, '');
  let leaf = name.slice(name.lastIndexOf(':') + 1);
  if (dataset?.kind === 'file' && dataset.path) {
    leaf = dataset.path.slice(dataset.path.lastIndexOf('/') + 1);
  }
  return parent ? `${parent}/${leaf}` : leaf;
}

export interface IPullForm {
  dataset: string;
  version: string;
  path: string;
  force: boolean;
}

/**
 * The `POST pulls` body of the pull dialog.
 */
export function pullRequest(form: IPullForm): IPullRequest {
  const dataset = form.dataset.trim();
  if (!dataset) {
    throw new FormError('Choose a dataset to pull');
  }
  const request: IPullRequest = { dataset, force: form.force };
  const version = form.version.trim();
  if (version) {
    request.version = version;
  }
  const path = form.path.trim().replace(/^\/+/, '');
  if (path) {
    request.path = path;
  }
  return request;
}

/**
 * `key=value` pairs, one per line or separated by commas, into an object.
 *
 * @param kind `param` or `metric`, for the message
 */
export function parsePairs(text: string, kind: string): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const raw of text.split(/[\n,]/)) {
    const item = raw.trim();
    if (!item) {
      continue;
    }
    const at = item.indexOf('=');
    const key = at < 0 ? '' : item.slice(0, at).trim();
    if (!key) {
      throw new FormError(`Invalid ${kind} '${item}': use key=value`);
    }
    pairs[key] = item.slice(at + 1).trim();
  }
  return pairs;
}

/**
 * Metrics as numbers where they are numbers; anything else is sent as typed,
 * for the server to refuse with its own message.
 */
export function parseMetrics(text: string): Record<string, number | string> {
  const metrics: Record<string, number | string> = {};
  for (const [key, value] of Object.entries(parsePairs(text, 'metric'))) {
    const number = Number(value);
    metrics[key] = value !== '' && Number.isFinite(number) ? number : value;
  }
  return metrics;
}

/**
 * Paths separated by commas, spaces or new lines.
 */
export function parsePaths(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map(path => path.trim())
    .filter(Boolean);
}

export interface ICommitForm {
  message: string;
  params: string;
  metrics: string;
  outputs: string;
  model?: string;
}

/**
 * The `POST experiments` body of the commit dialog.
 */
export function commitRequest(form: ICommitForm): ICommitRequest {
  const message = form.message.trim();
  if (!message) {
    throw new FormError('A commit message is required');
  }
  const request: ICommitRequest = { message };
  const params = parsePairs(form.params, 'param');
  if (Object.keys(params).length) {
    request.params = params;
  }
  const metrics = parseMetrics(form.metrics);
  if (Object.keys(metrics).length) {
    request.metrics = metrics;
  }
  const outputs = parsePaths(form.outputs);
  if (outputs.length) {
    request.outputs = outputs;
  }
  const model = (form.model ?? '').trim().replace(/^\/+/, '');
  if (model) {
    request.model = model;
  }
  return request;
}

export interface IPublishForm {
  model: string;
  source: 'run' | 'path';
  runId: string;
  path: string;
  alias: string;
}

/**
 * The `POST models` body of the publish dialog: from a run or from a path.
 */
export function publishRequest(form: IPublishForm): IPublishRequest {
  const model = form.model.trim();
  if (!model) {
    throw new FormError('A model name is required');
  }
  const request: IPublishRequest = { model };
  if (form.source === 'run') {
    const runId = form.runId.trim();
    if (!runId) {
      throw new FormError('Choose the run whose model to publish');
    }
    request.run_id = runId;
  } else {
    const path = form.path.trim();
    if (!path) {
      throw new FormError('Give the path of the model to publish');
    }
    request.path = path;
  }
  const alias = form.alias.trim();
  if (alias) {
    request.alias = alias;
  }
  return request;
}

/**
 * Runs a model can be published from (those in MLflow), for a select.
 */
export function runChoices(runs: IRun[]): IChoice[] {
  return runs
    .filter(run => run.run_id)
    .map(run => ({
      value: run.run_id as string,
      label: `${run.message || '(no message)'} · ${(run.run_id as string).slice(0, 8)}`
    }));
}

export interface IImportForm {
  /** the dataset the import becomes */
  as: string;
  /** S3: a prefix or object below the connection's prefix */
  path: string;
  /** SQL: the SELECT */
  query: string;
  /** SQL: `key=value` bind parameters, one per line */
  params: string;
}

/**
 * A dataset name proposed for an import: the last part of the path, or the
 * connection's name, in the registry's alphabet.
 */
export function defaultImportName(connection: IConnection, path = ''): string {
  const leaf = path.replace(/\/+$/, '').split('/').pop() || connection.name;
  const name = leaf
    .toLowerCase()
    .replace(/\.[a-z0-9]+$/, '')
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/^[^a-z]+/, '');
  return name || connection.name;
}

/**
 * The `POST connections/NAME/imports` body of the import dialog.
 */
export function importRequest(
  connection: IConnection,
  form: IImportForm
): IImportRequest {
  const as = form.as.trim();
  if (!as) {
    throw new FormError('Name the dataset the import becomes');
  }
  if (connection.type === 'sql') {
    const query = form.query.trim();
    if (!query) {
      throw new FormError(
        `${connection.name} is a warehouse: give a SELECT query`
      );
    }
    const request: IImportRequest = { as, query };
    const params = parsePairs(form.params, 'parameter');
    if (Object.keys(params).length) {
      request.params = params;
    }
    return request;
  }
  return { as, path: form.path.trim().replace(/^\/+/, '') };
}

export interface IRunJobForm {
  notebook: string;
  profile: string;
  cpu: string;
  memory: string;
  gpus: string;
  parameters: string;
  wait: boolean;
  commit: boolean;
}

/**
 * The `POST jobs` body of the run dialog: a notebook of the workspace, the
 * resources given (empty: the profile's defaults), parameters as numbers,
 * booleans and null where they read as such (else text), as papermill's `-p`.
 */
export function runJobRequest(form: IRunJobForm): IJobRequest {
  const notebook = form.notebook.trim().replace(/^\/+/, '');
  if (!notebook.endsWith('.ipynb')) {
    throw new FormError('Choose a notebook (.ipynb) to run');
  }
  const request: IJobRequest = {
    notebook,
    wait: form.wait,
    commit: form.commit
  };
  if (form.profile.trim()) {
    request.profile = form.profile.trim();
  }
  for (const key of ['cpu', 'gpus'] as const) {
    const text = form[key].trim();
    if (text) {
      const value = Number(text);
      if (!Number.isFinite(value) || value < 0) {
        throw new FormError(`${key}: a number (empty: the profile's default)`);
      }
      request[key] = value;
    }
  }
  if (form.memory.trim()) {
    request.memory = form.memory.trim();
  }
  const parameters: Record<string, string | number | boolean | null> = {};
  for (const [key, value] of Object.entries(
    parsePairs(form.parameters, 'parameter')
  )) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      throw new FormError(`Parameter '${key}' is not a Python name`);
    }
    const number = Number(value);
    parameters[key] =
      value === 'true' || value === 'false'
        ? value === 'true'
        : value === 'null'
          ? null
          : value !== '' && Number.isFinite(number)
            ? number
            : value;
  }
  if (Object.keys(parameters).length) {
    request.parameters = parameters;
  }
  return request;
}
