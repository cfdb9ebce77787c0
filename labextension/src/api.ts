import { ServerConnection } from '@jupyterlab/services';

import { apiURL, requestAPI } from './request';

/**
 * The payloads of `/dsdata/api/` (server_ext/api/openapi.yaml).
 */
export interface IDataset {
  name: string;
  registry: string;
  description: string;
  labels: string[];
  versions: string[];
  stages?: Record<string, string>;
  latest: string;
  size: number | null;
  nfiles: number | null;
  path?: string;
  /** "file": a single-file dataset, pulled to data/<file name> */
  kind?: 'file' | 'directory';
  /** why the catalog could not describe the latest version, if it could not */
  error?: string;
}

export interface IPullProgress {
  dataset?: string;
  phase?: 'resolving' | 'downloading' | 'linking' | 'done';
  bytes_done?: number;
  bytes_total?: number | null;
  files_done?: number;
  files_total?: number | null;
}

export interface IPullResult {
  dataset: string;
  version: string;
  tag: string;
  rev: string;
  registry: string;
  path: string;
  content_hash: string;
  files: number;
  bytes: number | null;
  downloaded_objects: number;
  from_cache: boolean;
  seconds: number;
}

export type PullStatus = 'running' | 'done' | 'failed';

export interface IPull {
  id: string;
  status: PullStatus;
  request: {
    dataset: string;
    version: string | null;
    path: string | null;
    force: boolean;
  };
  progress: IPullProgress;
  result: IPullResult | null;
  error: { message: string; status: number } | null;
}

export interface IPullRequest {
  dataset: string;
  version?: string;
  path?: string;
  force?: boolean;
}

/**
 * A lineage record with its path's state now.
 */
export interface IPulledPath {
  dataset: string;
  version: string;
  path: string;
  rev: string;
  tag?: string;
  registry?: string;
  content_hash?: string;
  time?: string;
  state: 'unchanged' | 'modified' | 'missing' | 'unknown';
  changed: string[];
}

export interface ILineage {
  pulls: Record<string, unknown>[];
  status: IPulledPath[];
}

export interface IRun {
  run_id: string | null;
  status: string;
  message: string;
  metrics: Record<string, number>;
  git_sha: string | null;
  datasets: Record<string, string>;
  time: string;
  url: string | null;
}

export interface IExperiments {
  runs: IRun[];
  mlflow_url: string | null;
  experiment: string;
}

export interface ICommitRequest {
  message: string;
  params?: Record<string, string>;
  metrics?: Record<string, number | string>;
  outputs?: string[];
  /** an MLflow model directory or a pickled estimator: this run's model */
  model?: string;
}

export interface ICommitResult {
  commit_id: string;
  git_sha: string;
  experiment: string;
  run_id: string | null;
  queued: boolean;
  message: string;
  outputs: Record<string, string>;
  url: string | null;
  note: string;
}

export interface IModel {
  name: string;
  latest_version: number | null;
  aliases: Record<string, number>;
  versions: number[];
  owner: string | null;
  description: string;
}

export interface IPromotion {
  id: string;
  model: string;
  alias: string;
  version: string;
  requester: string;
  note: string;
  state: 'pending' | 'approved' | 'rejected';
  gates: { name: string; passed: boolean; detail: string }[];
  created: string;
}

export interface IModelEvent {
  event: 'requested' | 'approved' | 'rejected' | 'rollback';
  alias: string;
  actor: string;
  from_version: string | null;
  to_version: string | null;
  note: string;
  time: string;
}

export interface IModelHistory {
  model: string;
  events: IModelEvent[];
  promotions: IPromotion[];
}

export interface IPublishRequest {
  model: string;
  run_id?: string;
  path?: string;
  alias?: string;
}

export interface IPublished {
  name: string;
  version: number;
  alias: string | null;
  run_id: string;
  source: string;
  uri: string;
  tags: Record<string, string>;
}

/** A connection to the data lake (S3) or the warehouse (SQL); no credential. */
export interface IConnection {
  name: string;
  type: 's3' | 'sql';
  description: string;
  bucket?: string;
  prefix?: string;
  max_rows?: number;
  timeout?: number;
}

export interface IConnections {
  connections: IConnection[];
  /** why there are none (e.g. no catalog service in this sandbox) */
  note?: string;
}

/** One level of a lake prefix, or a warehouse's tables. */
export interface IBrowse {
  connection: string;
  type: 's3' | 'sql';
  prefix?: string;
  prefixes?: string[];
  objects?: { key: string; size: number }[];
  truncated?: boolean;
  tables?: {
    schema: string;
    name: string;
    columns: { name: string; type: string }[];
  }[];
}

export interface IImportRequest {
  as: string;
  path?: string;
  query?: string;
  params?: Record<string, string>;
}

/** `POST jobs`: run a notebook of the workspace as a job (papermill). */
export interface IJobRequest {
  notebook: string;
  profile?: string;
  cpu?: number;
  memory?: string;
  gpus?: number;
  parameters?: Record<string, string | number | boolean | null>;
  wait?: boolean;
  commit?: boolean;
}

export interface IJob {
  id: string;
  state: string;
  notebook: string;
  output: string;
  log: string;
  position: number | null;
  message: string;
  duration: number | null;
}

export interface IImportResult {
  dataset: string;
  version: string;
  /** false: the source had not changed since that version */
  created: boolean;
  lineage: Record<string, unknown>;
}

function post(body: unknown): RequestInit {
  return {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' }
  };
}

/**
 * Typed calls of the server extension's REST API.
 */
export class DsdataAPI {
  constructor(
    readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  async datasets(): Promise<IDataset[]> {
    const data = await requestAPI<{ datasets: IDataset[] }>(
      'datasets',
      {},
      this.settings
    );
    return data.datasets;
  }

  startPull(request: IPullRequest): Promise<{ id: string }> {
    return requestAPI('pulls', post(request), this.settings);
  }

  pull(id: string): Promise<IPull> {
    return requestAPI(`pulls/${encodeURIComponent(id)}`, {}, this.settings);
  }

  /**
   * The pull's Server-Sent Events stream (`pulls/ID/events`), as a Response
   * whose body the caller reads.
   */
  pullEvents(id: string): Promise<Response> {
    const url = apiURL(
      this.settings.baseUrl,
      `pulls/${encodeURIComponent(id)}/events`
    );
    return ServerConnection.makeRequest(url, {}, this.settings);
  }

  lineage(): Promise<ILineage> {
    return requestAPI('lineage', {}, this.settings);
  }

  experiments(n: number): Promise<IExperiments> {
    return requestAPI('experiments', {}, this.settings, { n });
  }

  commit(request: ICommitRequest): Promise<ICommitResult> {
    return requestAPI('experiments', post(request), this.settings);
  }

  async models(): Promise<IModel[]> {
    const data = await requestAPI<{ models: IModel[] }>(
      'models',
      {},
      this.settings
    );
    return data.models;
  }

  publish(request: IPublishRequest): Promise<IPublished> {
    return requestAPI('models', post(request), this.settings);
  }

  /**
   * Promotion requests, approvals and rollbacks of a model (the catalog's history).
   */
  history(name: string): Promise<IModelHistory> {
    return requestAPI(
      `models/${encodeURIComponent(name)}/history`,
      {},
      this.settings
    );
  }

  connections(): Promise<IConnections> {
    return requestAPI('connections', {}, this.settings);
  }

  browse(name: string, prefix = ''): Promise<IBrowse> {
    return requestAPI(
      `connections/${encodeURIComponent(name)}/browse`,
      {},
      this.settings,
      { prefix }
    );
  }

  /** Import a lake path or a query's rows as a dataset version (on the platform). */
  importData(name: string, request: IImportRequest): Promise<IImportResult> {
    return requestAPI(
      `connections/${encodeURIComponent(name)}/imports`,
      post(request),
      this.settings
    );
  }

  runJob(request: IJobRequest): Promise<IJob> {
    return requestAPI('jobs', post(request), this.settings);
  }
}
