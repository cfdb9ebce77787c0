"""Where the platform keeps its state on the hub's machine (local mode), and its tables in
the hub's database: one place."""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.orm import Session


def state_dir() -> Path:
    """``$DSPLATFORM_STATE_DIR`` (default ``./.dsplatform``), absolute."""
    return Path(os.environ.get("DSPLATFORM_STATE_DIR", ".dsplatform")).resolve()


_tables_ready: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def ensure_tables(db: Session, metadata: MetaData) -> None:
    """Create ``metadata``'s tables in the hub's database, once per engine, through the
    hub's own connection (SQLite allows one writer at a time)."""
    bind = db.get_bind()
    done = _tables_ready.setdefault(bind, set())
    names = ",".join(sorted(metadata.tables))
    if names not in done:
        metadata.create_all(db.connection())
        db.commit()
        done.add(names)
