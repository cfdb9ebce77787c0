/**
 * The commands behind the sidebar's buttons and the command palette:
 * pull a dataset, commit an experiment, publish a model, refresh, open.
 */
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { CommandRegistry } from '@lumino/commands';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import {
  askForm,
  CommitForm,
  ImportForm,
  PublishForm,
  PullForm,
  RunJobForm
} from './dialogs';
import {
  commitRequest,
  FormError,
  importRequest,
  publishRequest,
  pullRequest,
  runJobRequest
} from './forms';
import { DsdataModel } from './model';

export namespace CommandIDs {
  export const open = 'dsdata:open';
  export const refresh = 'dsdata:refresh';
  export const pull = 'dsdata:pull';
  export const commit = 'dsdata:commit';
  export const publish = 'dsdata:publish';
  export const importData = 'dsdata:import';
  export const runJob = 'dsdata:run-job';
}

export const CATEGORY = 'Data & Models';

export interface ICommandOptions {
  commands: CommandRegistry;
  model: DsdataModel;
  /** Reveal the sidebar. */
  open: () => void;
  /** The parent folder proposed for pulls (setting `pullFolder`). */
  pullFolder: () => string;
  /** The path of the document in the main area ('' when none). */
  currentPath: () => string;
  palette: ICommandPalette | null;
}

function arg(args: ReadonlyPartialJSONObject, name: string): string {
  const value = args[name];
  return typeof value === 'string' ? value : '';
}

/**
 * Run a dialog's request builder; a FormError becomes a notification.
 */
function build<F, R>(form: F, make: (form: F) => R): R | null {
  try {
    return make(form);
  } catch (error) {
    if (error instanceof FormError) {
      Notification.error(error.message);
      return null;
    }
    throw error;
  }
}

export function addCommands(options: ICommandOptions): void {
  const { commands, model, palette } = options;

  commands.addCommand(CommandIDs.open, {
    label: 'Open Data & Models',
    caption: 'Show the Data & Models sidebar',
    execute: () => options.open()
  });

  commands.addCommand(CommandIDs.refresh, {
    label: 'Refresh Data & Models',
    caption: 'Reload datasets, pulls, experiments and models',
    execute: () => model.refreshAll()
  });

  commands.addCommand(CommandIDs.pull, {
    label: 'Pull Dataset…',
    caption: 'Pull a dataset version into a folder of the workspace',
    execute: async args => {
      options.open();
      if (model.datasets.length === 0) {
        await model.refreshDatasets();
      }
      if (model.datasets.length === 0) {
        Notification.error('The dataset catalog is empty: nothing to pull');
        return;
      }
      const form = await askForm(
        'Pull a dataset',
        new PullForm(
          model.datasets,
          arg(args, 'dataset'),
          options.pullFolder()
        ),
        'Pull'
      );
      const request = form && build(form, pullRequest);
      if (request) {
        await model.pull(request);
      }
    }
  });

  commands.addCommand(CommandIDs.commit, {
    label: 'Commit Experiment…',
    caption:
      'Commit code, outputs, params and metrics as one MLflow run (%dsdata commit)',
    execute: async () => {
      options.open();
      const form = await askForm(
        'Commit an experiment',
        new CommitForm(),
        'Commit'
      );
      const request = form && build(form, commitRequest);
      if (request) {
        // a commit records the files: what the editors hold must be in them first
        if (commands.hasCommand('docmanager:save-all')) {
          await commands.execute('docmanager:save-all');
        }
        await model.commit(request);
      }
    }
  });

  commands.addCommand(CommandIDs.publish, {
    label: 'Publish Model…',
    caption: 'Register a model version from a run or a path (%dsdata publish)',
    execute: async args => {
      options.open();
      if (model.runs.length === 0) {
        await model.refreshExperiments();
      }
      const form = await askForm(
        'Publish a model',
        new PublishForm(model.runs, arg(args, 'runId')),
        'Publish'
      );
      const request = form && build(form, publishRequest);
      if (request) {
        await model.publish(request);
      }
    }
  });

  commands.addCommand(CommandIDs.importData, {
    label: 'Import from a Connection…',
    caption:
      'Import lake objects or a query as a dataset version (%dsdata import)',
    execute: async args => {
      options.open();
      if (model.connections.length === 0) {
        await model.refreshConnections();
      }
      if (model.connections.length === 0) {
        Notification.error(
          model.connectionsNote || 'No connections for your groups'
        );
        return;
      }
      const form = await askForm(
        'Import into a dataset',
        new ImportForm(
          model.connections,
          arg(args, 'connection'),
          arg(args, 'path')
        ),
        'Import'
      );
      const connection = form
        ? model.connections.find(c => c.name === form.connection)
        : undefined;
      const request =
        form && connection && build(form, f => importRequest(connection, f));
      if (connection && request) {
        await model.importData(connection.name, request);
      }
    }
  });

  commands.addCommand(CommandIDs.runJob, {
    label: 'Run Notebook as a Job…',
    caption:
      'Run a notebook with papermill as a job under your quotas (%dsdata run)',
    execute: async args => {
      const current = options.currentPath();
      const notebook =
        arg(args, 'path') || (current.endsWith('.ipynb') ? current : '');
      const form = await askForm(
        'Run a notebook as a job',
        new RunJobForm(notebook),
        'Run'
      );
      const request = form && build(form, runJobRequest);
      if (request) {
        // the job runs the file: what the editor holds must be in it first
        if (commands.hasCommand('docmanager:save-all')) {
          await commands.execute('docmanager:save-all');
        }
        await model.runJob(request);
      }
    }
  });

  if (palette) {
    for (const command of [
      CommandIDs.runJob,
      CommandIDs.pull,
      CommandIDs.importData,
      CommandIDs.commit,
      CommandIDs.publish,
      CommandIDs.refresh,
      CommandIDs.open
    ]) {
      palette.addItem({ command, category: CATEGORY });
    }
  }
}
