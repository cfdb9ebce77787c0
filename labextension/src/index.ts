import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon, SidePanel } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';

import { DsdataAPI } from './api';
import { addCommands } from './commands';
import { DsdataModel } from './model';
import { DatasetsPanel } from './panels/datasets';
import { ExperimentsPanel } from './panels/experiments';
import { ModelsPanel } from './panels/models';
import { ConnectionsPanel } from './panels/connections';
import { saveRendererFactory } from './save';

const PLUGIN_ID = 'dsplatform-labextension:plugin';

const dataIcon = new LabIcon({
  name: 'dsplatform:data',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161"><ellipse cx="12" cy="5" rx="8" ry="3"/>' +
    '<path d="M4 7v4c0 1.7 3.6 3 8 3s8-1.3 8-3V7c0 1.7-3.6 3-8 3S4 8.7 4 7z"/>' +
    '<path d="M4 13v5c0 1.7 3.6 3 8 3s8-1.3 8-3v-5c0 1.7-3.6 3-8 3s-8-1.3-8-3z"/>' +
    '</g></svg>'
});

/**
 * The sidebar: one accordion section per panel; calls `onShow` when shown.
 */
class DsdataSidebar extends SidePanel {
  constructor(private readonly onShow: () => void) {
    super();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.onShow();
  }
}

/**
 * The "Data & Models" sidebar: datasets, experiments and models of the
 * dsplatform server extension (`/dsdata/api/`), with commands for the palette.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Data & Models sidebar: pull datasets, commit experiments, publish models',
  autoStart: true,
  optional: [
    ICommandPalette,
    ISettingRegistry,
    IDefaultFileBrowser,
    ILayoutRestorer,
    IRenderMimeRegistry
  ],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    fileBrowser: IDefaultFileBrowser | null,
    restorer: ILayoutRestorer | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    // %dsdata commit in a notebook asks the frontend to save first (server_ext/notebook.py)
    rendermime?.addFactory(saveRendererFactory(app), 0);
    const model = new DsdataModel(
      new DsdataAPI(app.serviceManager.serverSettings),
      {
        error: message =>
          void Notification.error(message, { autoClose: 10000 }),
        success: message =>
          void Notification.success(message, { autoClose: 5000 })
      }
    );
    model.onPulled = () => void fileBrowser?.model.refresh();

    // every time it is shown, the sidebar reloads what it lists
    const sidebar = new DsdataSidebar(() => void model.refreshAll());
    sidebar.id = 'dsdata-sidebar';
    sidebar.title.icon = dataIcon;
    sidebar.title.caption = 'Data & Models';
    sidebar.addClass('dsdata-Sidebar');
    const heading = document.createElement('h2');
    heading.className = 'dsdata-Title';
    heading.textContent = 'Data & Models';
    sidebar.header.node.append(heading);
    sidebar.addWidget(new DatasetsPanel(model, app.commands));
    sidebar.addWidget(new ExperimentsPanel(model, app.commands));
    sidebar.addWidget(new ModelsPanel(model, app.commands));
    sidebar.addWidget(new ConnectionsPanel(model, app.commands));
    app.shell.add(sidebar, 'left', { rank: 600 });
    restorer?.add(sidebar, 'dsdata-sidebar');

    let folder = 'data';
    let refreshSeconds = 0;
    let timer: ReturnType<typeof setInterval> | undefined;
    const schedule = () => {
      if (timer !== undefined) {
        clearInterval(timer);
        timer = undefined;
      }
      if (refreshSeconds > 0) {
        timer = setInterval(() => {
          if (sidebar.isVisible) {
            void model.refreshAll();
          }
        }, refreshSeconds * 1000);
      }
    };

    addCommands({
      commands: app.commands,
      model,
      palette,
      open: () => app.shell.activateById(sidebar.id),
      pullFolder: () => folder,
      currentPath: () => {
        const widget = app.shell.currentWidget as
          { context?: { path?: string } } | null | undefined;
        return widget?.context?.path ?? '';
      }
    });

    if (settingRegistry) {
      const apply = (settings: ISettingRegistry.ISettings) => {
        folder = settings.get('pullFolder').composite as string;
        model.runsShown = settings.get('runsShown').composite as number;
        refreshSeconds = settings.get('refreshInterval').composite as number;
        schedule();
      };
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          apply(settings);
          settings.changed.connect(apply);
        })
        .catch(reason =>
          console.error(
            'Failed to load settings for dsplatform-labextension.',
            reason
          )
        );
    }
  }
};

export default plugin;
