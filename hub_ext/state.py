"""Where the platform keeps its state on the hub's machine (local mode): one place."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """``$DSPLATFORM_STATE_DIR`` (default ``./.dsplatform``), absolute."""
    return Path(os.environ.get("DSPLATFORM_STATE_DIR", ".dsplatform")).resolve()
