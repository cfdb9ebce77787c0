import { CommandRegistry } from '@lumino/commands';
import { VDomRenderer } from '@jupyterlab/ui-components';
import * as React from 'react';

import { DsdataModel, Section } from '../model';

/**
 * What the three sections share: their widget id, title, and the row of
 * actions (the section's command, Refresh, loading) above its last error.
 */
export abstract class SectionPanel extends VDomRenderer<DsdataModel> {
  constructor(
    model: DsdataModel,
    protected readonly commands: CommandRegistry,
    readonly section: Section,
    label: string
  ) {
    super(model);
    this.id = `dsdata-${section}`;
    this.addClass('dsdata-Section');
    this.title.label = label;
  }

  /**
   * The action row and the section's last error.
   *
   * @param action The section's main command, as a button
   * @param extra More elements for the row (links)
   */
  protected header(
    action: { label: string; className: string; command: string },
    extra?: React.ReactNode
  ): React.ReactElement {
    const model = this.model;
    const error = model.errors[this.section];
    return (
      <>
        <div className="dsdata-Actions">
          <button
            className={`jp-Button jp-mod-styled jp-mod-accept ${action.className}`}
            onClick={() => void this.commands.execute(action.command)}
          >
            {action.label}
          </button>
          <button
            className="jp-Button jp-mod-styled dsdata-Refresh"
            onClick={() => void model.refresh(this.section)}
          >
            Refresh
          </button>
          {extra}
          {model.loading.has(this.section) && (
            <span className="dsdata-Loading">loading…</span>
          )}
        </div>
        {error && <div className="dsdata-Error">{error}</div>}
      </>
    );
  }
}
