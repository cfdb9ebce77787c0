import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { CommandIDs } from '../commands';
import { formatBytes, formatWhen, stateLabel } from '../format';
import { DsdataModel } from '../model';
import { pullFraction, pullLabel, visiblePulls } from '../pulls';
import { SectionPanel } from './section';

/**
 * The catalog (versions, descriptions, a pull button each), the pulls in
 * progress, and what this project has pulled with its state now.
 */
export class DatasetsPanel extends SectionPanel {
  constructor(model: DsdataModel, commands: CommandRegistry) {
    super(model, commands, 'datasets', 'Datasets');
  }

  protected render(): React.ReactElement {
    const model = this.model;
    const pulls = visiblePulls(model.pulls);
    return (
      <div className="dsdata-Panel">
        {this.header({
          label: 'Pull…',
          className: 'dsdata-PullButton',
          command: CommandIDs.pull
        })}
        {pulls.length > 0 && (
          <div className="dsdata-Pulls">
            <div className="dsdata-Heading">
              Pulls{' '}
              <button
                className="dsdata-Link"
                onClick={() => model.clearFinished()}
              >
                clear finished
              </button>
            </div>
            {pulls.map(pull => {
              // a failed pull shows a full (red) bar
              const fraction =
                pull.status === 'failed' ? 1 : (pullFraction(pull) ?? 0);
              return (
                <div
                  key={pull.id}
                  className="dsdata-Pull"
                  data-status={pull.status}
                >
                  <div className="dsdata-Progress">
                    <div
                      className="dsdata-Progress-bar"
                      style={{ width: `${Math.round(fraction * 100)}%` }}
                    />
                  </div>
                  <div className="dsdata-Pull-label">{pullLabel(pull)}</div>
                </div>
              );
            })}
          </div>
        )}
        <div className="dsdata-Heading">In this project</div>
        {model.pulled.length === 0 ? (
          <div className="dsdata-Empty">Nothing pulled yet.</div>
        ) : (
          <ul className="dsdata-List">
            {model.pulled.map(row => (
              <li
                key={row.path}
                className="dsdata-Pulled"
                data-path={row.path}
                data-state={row.state}
                title={row.changed.length ? row.changed.join('\n') : undefined}
              >
                <span className="dsdata-Name">{row.dataset}</span>{' '}
                <span className="dsdata-Version">{row.version}</span> →{' '}
                <code>{row.path}</code>{' '}
                <span className={`dsdata-Badge dsdata-mod-${row.state}`}>
                  {stateLabel(row)}
                </span>
                {row.time && (
                  <span className="dsdata-Meta"> · {formatWhen(row.time)}</span>
                )}
              </li>
            ))}
          </ul>
        )}
        <div className="dsdata-Heading">Catalog</div>
        {model.datasets.length === 0 && !model.loading.has('datasets') ? (
          <div className="dsdata-Empty">No datasets in the catalog.</div>
        ) : (
          <ul className="dsdata-List">
            {model.datasets.map(dataset => (
              <li
                key={dataset.name}
                className="dsdata-Dataset"
                data-name={dataset.name}
              >
                <div className="dsdata-Row">
                  <span className="dsdata-Name">{dataset.name}</span>
                  <span className="dsdata-Version">{dataset.latest}</span>
                  <button
                    className="jp-Button jp-mod-styled dsdata-Small dsdata-End"
                    title={`Pull a version of ${dataset.name}`}
                    onClick={() =>
                      void this.commands.execute(CommandIDs.pull, {
                        dataset: dataset.name
                      })
                    }
                  >
                    Pull…
                  </button>
                </div>
                {dataset.description && (
                  <div className="dsdata-Description">
                    {dataset.description}
                  </div>
                )}
                {dataset.error && (
                  <div className="dsdata-Error dsdata-Dataset-error">
                    Unavailable: {dataset.error}
                  </div>
                )}
                <div className="dsdata-Meta">
                  {formatBytes(dataset.size)}
                  {dataset.kind === 'file'
                    ? ' · one file'
                    : dataset.nfiles !== null &&
                      ` in ${dataset.nfiles} file${dataset.nfiles === 1 ? '' : 's'}`}
                  {' · versions: '}
                  {[...dataset.versions].reverse().join(', ')}
                  {Object.keys(dataset.stages ?? {}).length > 0 &&
                    ` · stages: ${Object.entries(dataset.stages ?? {})
                      .map(([stage, version]) => `${stage} → ${version}`)
                      .join(', ')}`}
                </div>
                {dataset.labels.length > 0 && (
                  <div className="dsdata-Labels">
                    {dataset.labels.map(label => (
                      <span key={label} className="dsdata-Chip">
                        {label}
                      </span>
                    ))}
                  </div>
                )}
              </li>
            ))}
          </ul>
        )}
      </div>
    );
  }
}
