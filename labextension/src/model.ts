/**
 * The sidebar's state: what the three panels show, loaded from the REST API.
 * Every failure becomes a notification with the server's message.
 */
import { VDomModel } from '@jupyterlab/ui-components';

import type {
  DsdataAPI,
  IBrowse,
  ICommitRequest,
  ICommitResult,
  IConnection,
  IImportRequest,
  IImportResult,
  IJob,
  IJobRequest,
  IDataset,
  IModel,
  IModelHistory,
  IPublished,
  IPublishRequest,
  IPull,
  IPulledPath,
  IPullRequest,
  IRun
} from './api';
import { mergePull, followPull } from './pulls';
import { messageOf } from './request';

/**
 * How the model tells the user about outcomes (JupyterLab's `Notification`
 * in the extension).
 */
export interface INotifier {
  error(message: string): void;
  success(message: string): void;
}

export type Section = 'datasets' | 'experiments' | 'models' | 'connections';

export class DsdataModel extends VDomModel {
  constructor(
    readonly api: DsdataAPI,
    readonly notify: INotifier
  ) {
    super();
  }

  datasets: IDataset[] = [];
  pulled: IPulledPath[] = [];
  pulls: Record<string, IPull> = {};
  runs: IRun[] = [];
  experiment = '';
  mlflowUrl: string | null = null;
  models: IModel[] = [];
  /** Each model's promotion history; absent where the catalog could not say. */
  histories: Record<string, IModelHistory> = {};
  runsShown = 10;
  connections: IConnection[] = [];
  /** why no connection is listed, when the server says */
  connectionsNote = '';
  /** the last browse of each connection */
  browsed: Record<string, IBrowse> = {};
  /** imports running now, by connection */
  importing = new Set<string>();
  /** Sections loading now. */
  loading = new Set<Section>();
  /** The last error of each section, shown in it until it loads again. */
  errors: Partial<Record<Section, string>> = {};
  /** Called after a pull wrote files (to refresh the file browser). */
  onPulled: (pull: IPull) => void = () => undefined;

  private async load<T>(
    section: Section,
    work: () => Promise<T>
  ): Promise<T | undefined> {
    this.loading.add(section);
    this.stateChanged.emit();
    try {
      const result = await work();
      delete this.errors[section];
      return result;
    } catch (error) {
      const message = messageOf(error);
      // a notification when a section starts failing, not again at each reload
      if (this.errors[section] !== message) {
        this.notify.error(message);
      }
      this.errors[section] = message;
      return undefined;
    } finally {
      this.loading.delete(section);
      this.stateChanged.emit();
    }
  }

  async refreshDatasets(): Promise<void> {
    await this.load('datasets', async () => {
      const [datasets, lineage] = await Promise.all([
        this.api.datasets(),
        this.api.lineage()
      ]);
      this.datasets = datasets;
      this.pulled = lineage.status;
    });
  }

  async refreshExperiments(): Promise<void> {
    await this.load('experiments', async () => {
      const data = await this.api.experiments(this.runsShown);
      this.runs = data.runs;
      this.experiment = data.experiment;
      this.mlflowUrl = data.mlflow_url;
    });
  }

  async refreshModels(): Promise<void> {
    await this.load('models', async () => {
      this.models = await this.api.models();
      const histories: Record<string, IModelHistory> = {};
      await Promise.all(
        this.models.map(async m => {
          try {
            histories[m.name] = await this.api.history(m.name);
          } catch {
            // no catalog (or no promotions there): the model shows without history
          }
        })
      );
      this.histories = histories;
    });
  }

  async refreshConnections(): Promise<void> {
    await this.load('connections', async () => {
      const data = await this.api.connections();
      this.connections = data.connections;
      this.connectionsNote = data.note ?? '';
    });
  }

  refresh(section: Section): Promise<void> {
    switch (section) {
      case 'datasets':
        return this.refreshDatasets();
      case 'experiments':
        return this.refreshExperiments();
      case 'connections':
        return this.refreshConnections();
      default:
        return this.refreshModels();
    }
  }

  async refreshAll(): Promise<void> {
    await Promise.all([
      this.refreshDatasets(),
      this.refreshExperiments(),
      this.refreshModels(),
      this.refreshConnections()
    ]);
  }

  /** List one level of a connection (S3 prefix) or its tables (SQL). */
  async browse(name: string, prefix = ''): Promise<IBrowse | undefined> {
    const found = await this.attempt(() => this.api.browse(name, prefix));
    if (found) {
      this.browsed = { ...this.browsed, [name]: found };
      this.stateChanged.emit();
    }
    return found;
  }

  /** Import on the platform; the dataset list follows. */
  async importData(
    name: string,
    request: IImportRequest
  ): Promise<IImportResult | undefined> {
    this.importing.add(name);
    this.stateChanged.emit();
    try {
      const result = await this.attempt(() =>
        this.api.importData(name, request)
      );
      if (result) {
        this.notify.success(
          result.created
            ? `Imported ${result.dataset} ${result.version} from ${name}`
            : `${result.dataset} ${result.version} is unchanged: no new version`
        );
        await this.refreshDatasets();
      }
      return result;
    } finally {
      this.importing.delete(name);
      this.stateChanged.emit();
    }
  }

  private update(pull: IPull): void {
    this.pulls = mergePull(this.pulls, pull);
    this.stateChanged.emit();
  }

  /**
   * Start a pull and follow it to the end; resolves with its final state, or
   * `undefined` when it could not start.
   */
  async pull(request: IPullRequest): Promise<IPull | undefined> {
    const started = await this.attempt(() => this.api.startPull(request));
    if (!started) {
      return undefined;
    }
    const id = started.id;
    this.update({
      id,
      status: 'running',
      request: {
        dataset: request.dataset,
        version: request.version ?? null,
        path: request.path ?? null,
        force: request.force ?? false
      },
      progress: { phase: 'resolving' },
      result: null,
      error: null
    });
    const final = await this.attempt(() =>
      followPull(this.api, id, pull => this.update(pull))
    );
    if (!final) {
      return undefined;
    }
    if (final.status === 'failed') {
      this.notify.error(final.error?.message ?? 'The pull failed');
    } else if (final.result) {
      const r = final.result;
      this.notify.success(`Pulled ${r.dataset} ${r.version} into ${r.path}`);
      this.onPulled(final);
    }
    await this.refreshDatasets();
    return final;
  }

  /** Forget finished pulls (the panel's "clear"). */
  clearFinished(): void {
    this.pulls = Object.fromEntries(
      Object.entries(this.pulls).filter(([, p]) => p.status === 'running')
    );
    this.stateChanged.emit();
  }

  /** The result of a user's action, or `undefined` after notifying its error. */
  private async attempt<T>(work: () => Promise<T>): Promise<T | undefined> {
    try {
      return await work();
    } catch (error) {
      this.notify.error(messageOf(error));
      return undefined;
    }
  }

  async runJob(request: IJobRequest): Promise<IJob | undefined> {
    const job = await this.attempt(() => this.api.runJob(request));
    if (job) {
      const where = job.position ? `, #${job.position} in its queue` : '';
      this.notify.success(
        `Job ${job.id}: ${job.state}${where} (${job.notebook} -> ${job.output}); ` +
          `%dsdata logs ${job.id}`
      );
    }
    return job;
  }

  async commit(request: ICommitRequest): Promise<ICommitResult | undefined> {
    const result = await this.attempt(() => this.api.commit(request));
    if (!result) {
      return undefined;
    }
    const sha = result.git_sha.slice(0, 10);
    if (result.queued) {
      this.notify.success(
        `Committed ${sha}; the run is queued: ${result.note || 'MLflow is unreachable'}`
      );
    } else {
      this.notify.success(`Committed ${sha} as run ${result.run_id}`);
    }
    await this.refreshExperiments();
    return result;
  }

  async publish(request: IPublishRequest): Promise<IPublished | undefined> {
    const result = await this.attempt(() => this.api.publish(request));
    if (!result) {
      return undefined;
    }
    this.notify.success(
      `Registered ${result.name} version ${result.version} (${result.uri})`
    );
    await Promise.all([this.refreshModels(), this.refreshExperiments()]);
    return result;
  }
}
