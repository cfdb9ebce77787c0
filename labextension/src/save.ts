/**
 * The kernel's request to save the open documents before `%dsdata commit`
 * (`server_ext/notebook.py`): a cell output of {@link SAVE_MIME}. Rendering it
 * saves every unsaved document, so the commit records what the browser shows;
 * the kernel waits for the notebook's file to be written.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { IRenderMime } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

export const SAVE_MIME = 'application/vnd.dsplatform.save-documents+json';

/**
 * Renders the request once: saves, then says so in the output.
 */
export class SaveRenderer extends Widget implements IRenderMime.IRenderer {
  private done = false;

  constructor(private readonly app: JupyterFrontEnd) {
    super();
    this.addClass('dsdata-Saved');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[SAVE_MIME] as { notebook?: string } | undefined;
    const name = data?.notebook ?? 'the notebook';
    if (this.done) {
      return;
    }
    this.done = true;
    this.node.textContent = `Saving ${name} for the commit…`;
    try {
      await this.app.commands.execute('docmanager:save-all');
      this.node.textContent = `Saved ${name} (and other unsaved documents) for the commit.`;
    } catch (reason) {
      this.node.textContent = `Could not save ${name}: ${String(reason)}`;
    }
  }
}

/**
 * The renderer factory, registered with the application's rendermime.
 */
export function saveRendererFactory(
  app: JupyterFrontEnd
): IRenderMime.IRendererFactory {
  return {
    safe: false, // an opened (untrusted) notebook's old output saves nothing
    mimeTypes: [SAVE_MIME],
    defaultRank: 0,
    createRenderer: () => new SaveRenderer(app)
  };
}
