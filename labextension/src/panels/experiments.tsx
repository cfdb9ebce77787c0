import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { CommandIDs } from '../commands';
import { formatDatasets, formatMetrics, formatWhen, shortSha } from '../format';
import { DsdataModel } from '../model';
import { SectionPanel } from './section';

/**
 * Recent runs of this project (metrics, datasets, git sha, MLflow links), a
 * link to the MLflow UI, and the commit dialog.
 */
export class ExperimentsPanel extends SectionPanel {
  constructor(model: DsdataModel, commands: CommandRegistry) {
    super(model, commands, 'experiments', 'Experiments');
  }

  protected render(): React.ReactElement {
    const model = this.model;
    return (
      <div className="dsdata-Panel">
        {this.header(
          {
            label: 'Commit…',
            className: 'dsdata-CommitButton',
            command: CommandIDs.commit
          },
          model.mlflowUrl && (
            <a
              className="dsdata-Link dsdata-MLflowLink"
              href={model.mlflowUrl}
              target="_blank"
              rel="noopener noreferrer"
            >
              Open MLflow
            </a>
          )
        )}
        {model.experiment && (
          <div className="dsdata-Meta">
            experiment <code>{model.experiment}</code>
          </div>
        )}
        {model.runs.length === 0 && !model.loading.has('experiments') ? (
          <div className="dsdata-Empty">No runs yet: commit to record one.</div>
        ) : (
          <ul className="dsdata-List">
            {model.runs.map((run, index) => (
              <li
                key={run.run_id ?? `queued-${index}`}
                className="dsdata-Run"
                data-run-id={run.run_id ?? ''}
                data-status={run.status}
              >
                <div className="dsdata-Row">
                  <span className="dsdata-Name dsdata-Run-message">
                    {run.message || '(no message)'}
                  </span>
                  <span
                    className={`dsdata-Badge dsdata-End dsdata-mod-${run.status}`}
                  >
                    {run.status}
                  </span>
                </div>
                <div className="dsdata-Meta">
                  {formatWhen(run.time)} · git{' '}
                  <code className="dsdata-Sha">{shortSha(run.git_sha)}</code>
                </div>
                {Object.keys(run.metrics).length > 0 && (
                  <div className="dsdata-Metrics">
                    {formatMetrics(run.metrics)}
                  </div>
                )}
                {Object.keys(run.datasets).length > 0 && (
                  <div className="dsdata-Datasets">
                    data: {formatDatasets(run.datasets)}
                  </div>
                )}
                <div className="dsdata-Row">
                  {run.url && (
                    <a
                      className="dsdata-Link"
                      href={run.url}
                      target="_blank"
                      rel="noopener noreferrer"
                    >
                      run in MLflow
                    </a>
                  )}
                  {run.run_id && (
                    <button
                      className="jp-Button jp-mod-styled dsdata-Small dsdata-End dsdata-PublishRun"
                      title="Publish this run's model to the Model Registry"
                      onClick={() =>
                        void this.commands.execute(CommandIDs.publish, {
                          runId: run.run_id
                        })
                      }
                    >
                      Publish…
                    </button>
                  )}
                </div>
              </li>
            ))}
          </ul>
        )}
      </div>
    );
  }
}
