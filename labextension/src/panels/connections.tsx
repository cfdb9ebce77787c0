/**
 * The Connections section: the lake and warehouse connections the user's
 * groups may use, browsable one level at a time, each with Import… (the
 * platform imports; the sandbox never holds a credential).
 */
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import type { IBrowse, IConnection } from '../api';
import { CommandIDs } from '../commands';
import { formatBytes } from '../format';
import { DsdataModel } from '../model';
import { SectionPanel } from './section';

export class ConnectionsPanel extends SectionPanel {
  constructor(model: DsdataModel, commands: CommandRegistry) {
    super(model, commands, 'connections', 'Connections');
  }

  private listing(connection: IConnection, found: IBrowse): React.ReactNode {
    const model = this.model;
    if (found.type === 'sql') {
      return (
        <ul className="dsdata-List dsdata-Browse">
          {(found.tables ?? []).map(t => (
            <li key={`${t.schema}.${t.name}`} className="dsdata-Table">
              <code>
                {t.schema}.{t.name}
              </code>
              <span className="dsdata-Meta">
                {' '}
                {t.columns.map(c => c.name).join(', ')}
              </span>
            </li>
          ))}
        </ul>
      );
    }
    const prefix = found.prefix ?? '';
    const parent = prefix.replace(/[^/]*\/$/, '');
    return (
      <ul className="dsdata-List dsdata-Browse" data-prefix={prefix}>
        {prefix && (
          <li>
            <button
              className="jp-Button jp-mod-styled dsdata-Small dsdata-Up"
              onClick={() => void model.browse(connection.name, parent)}
            >
              ..
            </button>
          </li>
        )}
        {(found.prefixes ?? []).map(p => (
          <li key={p} className="dsdata-Prefix" data-key={p}>
            <button
              className="jp-Button jp-mod-styled dsdata-Small"
              title={`Browse ${p}`}
              onClick={() => void model.browse(connection.name, p)}
            >
              {p}
            </button>
            <button
              className="jp-Button jp-mod-styled dsdata-Small dsdata-End"
              title={`Import ${connection.name}:${p} as a dataset`}
              onClick={() =>
                void this.commands.execute(CommandIDs.importData, {
                  connection: connection.name,
                  path: p
                })
              }
            >
              Import…
            </button>
          </li>
        ))}
        {(found.objects ?? []).map(o => (
          <li key={o.key} className="dsdata-Object" data-key={o.key}>
            <code>{o.key}</code>
            <span className="dsdata-Meta"> {formatBytes(o.size)}</span>
          </li>
        ))}
        {found.truncated && (
          <li className="dsdata-Meta">More: browse a narrower prefix.</li>
        )}
      </ul>
    );
  }

  protected render(): React.ReactElement {
    const model = this.model;
    return (
      <div className="dsdata-Panel">
        {this.header({
          label: 'Import…',
          className: 'dsdata-ImportButton',
          command: CommandIDs.importData
        })}
        {model.connections.length === 0 && !model.loading.has('connections') ? (
          <div className="dsdata-Empty">
            {model.connectionsNote || 'No connections for your groups.'}
          </div>
        ) : (
          <ul className="dsdata-List">
            {model.connections.map(c => (
              <li key={c.name} className="dsdata-Connection" data-name={c.name}>
                <div className="dsdata-Row">
                  <span className="dsdata-Name">{c.name}</span>
                  <span className="dsdata-Version">
                    {c.type === 's3' ? `s3://${c.bucket}/${c.prefix}` : 'SQL'}
                  </span>
                  <button
                    className="jp-Button jp-mod-styled dsdata-Small dsdata-End dsdata-BrowseButton"
                    onClick={() => void model.browse(c.name, '')}
                  >
                    Browse
                  </button>
                  {model.importing.has(c.name) && (
                    <span className="dsdata-Loading">importing…</span>
                  )}
                </div>
                {c.description && (
                  <div className="dsdata-Description">{c.description}</div>
                )}
                {model.browsed[c.name] &&
                  this.listing(c, model.browsed[c.name])}
              </li>
            ))}
          </ul>
        )}
      </div>
    );
  }
}
