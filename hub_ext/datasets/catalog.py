"""The hub's dataset catalog: registries the admin lists, filtered by the user's groups.

Read by the hub's ``GET /hub/api/dsplatform/datasets`` (:mod:`hub_ext.api.datasets`) and by
the catalog service's ``GET api/datasets``, which is what sandboxes read through
``DSDATA_CATALOG_URL``: only the datasets the calling user's groups may see.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from traitlets import Dict, Int, List, Unicode
from traitlets.config import Configurable

from hub_ext.errors import ConfigError
from server_ext.catalog import CachedListing
from server_ext.records import DatasetEntry


class DatasetCatalog(Configurable):
    """DVC data registries whose datasets users may pull."""

    registries = List(
        Unicode(),
        help="""Git URLs or paths of DVC data registries (dvc.yaml `artifacts:` of type
        dataset, versions as annotated tags NAME@vX.Y.Z). A name in an earlier registry
        hides the same name in later ones.

            c.DatasetCatalog.registries = ["https://git.example.com/data/registry.git"]
        """,
    ).tag(config=True)

    dataset_groups = Dict(
        {},
        help="""Datasets restricted to hub groups; a dataset not listed is visible to all.

            c.DatasetCatalog.dataset_groups = {"churn": ["ml-research"]}
        """,
    ).tag(config=True)

    metadata_dir = Unicode(
        "",
        help="Where the hub keeps registry metadata it reads (default: a temp directory).",
    ).tag(config=True)

    refresh_seconds = Int(
        30,
        help="""Seconds a listing of the registries is reused before it is read again (by the
        hub's API and the catalog service); 0 reads them at every request.

            c.DatasetCatalog.refresh_seconds = 30
        """,
    ).tag(config=True)


def check_dataset_groups(raw: Any) -> dict[str, tuple[str, ...]]:
    where = "c.DatasetCatalog.dataset_groups"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a dict of dataset -> list of groups")
    result = {}
    for name, groups in raw.items():
        if isinstance(groups, str) or not isinstance(groups, Sequence) or not groups:
            raise ConfigError(f"{where}[{name!r}]: must be a non-empty list of group names")
        result[str(name)] = tuple(str(g) for g in groups)
    return result


def may_see(name: str, groups: Sequence[str], restrictions: Mapping[str, Sequence[str]]) -> bool:
    """May a member of ``groups`` see (and pull) dataset ``name``? (pure)"""
    allowed = restrictions.get(name)
    return allowed is None or "*" in allowed or any(g in allowed for g in groups)


def visible(
    entries: Sequence[DatasetEntry],
    groups: Sequence[str],
    restrictions: Mapping[str, Sequence[str]],
) -> list[DatasetEntry]:
    """The entries a member of ``groups`` may see (pure)."""
    return [e for e in entries if may_see(e.name, groups, restrictions)]


_listings: dict[tuple[tuple[str, ...], str, float], CachedListing] = {}


async def all_entries(catalog: DatasetCatalog) -> list[DatasetEntry]:
    """The registries' datasets, shared by every request of this hub."""
    cache = catalog.metadata_dir or str(Path(tempfile.gettempdir()) / "dsplatform-hub")
    key = (tuple(catalog.registries), cache, float(catalog.refresh_seconds))
    if key not in _listings:
        _listings[key] = CachedListing(
            list(catalog.registries), Path(cache), catalog.refresh_seconds
        )
    return await _listings[key].entries()
