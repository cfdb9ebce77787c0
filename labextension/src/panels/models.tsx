import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { CommandIDs } from '../commands';
import { describeEvent, describePending } from '../format';
import { DsdataModel } from '../model';
import { SectionPanel } from './section';

/**
 * Registered models with their versions and aliases, pending promotions and the
 * promotion history, and the publish dialog.
 */
export class ModelsPanel extends SectionPanel {
  constructor(model: DsdataModel, commands: CommandRegistry) {
    super(model, commands, 'models', 'Models');
  }

  /**
   * Pending promotion requests and the latest history events of one model.
   */
  private governance(name: string): React.ReactElement | null {
    const history = this.model.histories[name];
    if (!history) {
      return null;
    }
    const pending = history.promotions.filter(p => p.state === 'pending');
    const recent = history.events.slice(-3).reverse();
    if (pending.length === 0 && recent.length === 0) {
      return null;
    }
    return (
      <div className="dsdata-Governance">
        {pending.map(p => (
          <div
            key={p.id}
            className="dsdata-Meta dsdata-Pending"
            data-promotion={p.id}
            title={p.note}
          >
            pending: {describePending(p)}
          </div>
        ))}
        {recent.map((e, i) => (
          <div
            key={`${e.time}-${i}`}
            className="dsdata-Meta dsdata-Event"
            data-event={e.event}
            title={e.time}
          >
            {describeEvent(e)}
          </div>
        ))}
      </div>
    );
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
                {this.governance(m.name)}
              </li>
            ))}
          </ul>
        )}
      </div>
    );
  }
}
