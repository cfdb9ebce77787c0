import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { CommandIDs } from '../commands';
import { DsdataModel } from '../model';
import { SectionPanel } from './section';

/**
 * Registered models with their versions and aliases, and the publish dialog.
 */
export class ModelsPanel extends SectionPanel {
  constructor(model: DsdataModel, commands: CommandRegistry) {
    super(model, commands, 'models', 'Models');
  }

  protected render(): React.ReactElement {
    const model = this.model;
    return (
      <div className="dsdata-Panel">
        {this.header({
          label: 'Publish…',
          className: 'dsdata-PublishButton',
          command: CommandIDs.publish
        })}
        {model.models.length === 0 && !model.loading.has('models') ? (
          <div className="dsdata-Empty">No registered models.</div>
        ) : (
          <ul className="dsdata-List">
            {model.models.map(m => (
              <li key={m.name} className="dsdata-Model" data-name={m.name}>
                <div className="dsdata-Row">
                  <span className="dsdata-Name">{m.name}</span>
                  {m.latest_version !== null && (
                    <span className="dsdata-Version">v{m.latest_version}</span>
                  )}
                  {m.owner && <span className="dsdata-Meta">by {m.owner}</span>}
                </div>
                <div className="dsdata-Meta dsdata-Model-versions">
                  versions: {m.versions.map(v => `v${v}`).join(', ') || '—'}
                </div>
                {Object.keys(m.aliases).length > 0 && (
                  <div className="dsdata-Labels">
                    {Object.keys(m.aliases)
                      .sort()
                      .map(alias => (
                        <span
                          key={alias}
                          className="dsdata-Chip dsdata-Alias"
                          data-alias={alias}
                        >
                          {alias} → v{m.aliases[alias]}
                        </span>
                      ))}
                  </div>
                )}
                {m.description && (
                  <div className="dsdata-Description">{m.description}</div>
                )}
              </li>
            ))}
          </ul>
        )}
      </div>
    );
  }
}
