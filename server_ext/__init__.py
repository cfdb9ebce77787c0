"""dsplatform, sandbox side: the ``%dsdata`` magics, a jupyter-server extension (REST under
``/dsdata/api/``) and widgets, all thin fronts over :mod:`server_ext.core`.

``%load_ext server_ext`` loads the magics in any IPython; sandboxes load it automatically.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    from .magics import DsdataMagics, help_lines
    from .notebook import record_finished

    ipython.register_magics(DsdataMagics)
    if record_finished not in ipython.events.callbacks["post_run_cell"]:
        ipython.events.register("post_run_cell", record_finished)  # notebook.ensure_saved
    cleanup = getattr(ipython, "input_transformers_cleanup", None)
    if cleanup is not None and help_lines not in cleanup:
        cleanup.append(help_lines)  # %dsdata commit? -> %dsdata help commit


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import DsdataApp

    return [{"module": "server_ext", "app": DsdataApp}]
