"""The hub's dataset catalog: registries the admin lists, filtered by the user's groups.

``GET /hub/api/dsplatform/datasets`` is what sandboxes read through ``DSDATA_CATALOG_URL``
(with their ``JUPYTERHUB_API_TOKEN``): only the datasets the calling user's groups may see.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web
from traitlets import Dict, Int, List, Unicode
from traitlets.config import Configurable

from server_ext.catalog import CachedListing

from .callers import per_user_caller
from .profiles import ConfigError


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
        30, help="How long a listing of the registries is reused before it is read again."
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


def visible(
    entries: Sequence[Mapping[str, Any]],
    groups: Sequence[str],
    restrictions: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    """The entries a member of ``groups`` may see (pure)."""
    return [
        dict(e)
        for e in entries
        if e["name"] not in restrictions
        or "*" in restrictions[e["name"]]
        or any(g in restrictions[e["name"]] for g in groups)
    ]


_listings: dict[tuple[tuple[str, ...], str, float], CachedListing] = {}


async def all_entries(catalog: DatasetCatalog) -> list[dict[str, Any]]:
    """The registries' datasets, shared by every request of this hub."""
    cache = catalog.metadata_dir or str(Path(tempfile.gettempdir()) / "dsplatform-hub")
    key = (tuple(catalog.registries), cache, float(catalog.refresh_seconds))
    if key not in _listings:
        _listings[key] = CachedListing(
            list(catalog.registries), Path(cache), catalog.refresh_seconds
        )
    return await _listings[key].entries()


class DatasetsAPIHandler(APIHandler):
    """``GET /hub/api/dsplatform/datasets``: ``{"datasets": [...]}`` for the calling user."""

    async def get(self) -> None:
        caller = per_user_caller(self, "The dataset catalog")
        catalog = DatasetCatalog(config=self.settings["config"])
        restrictions = check_dataset_groups(catalog.dataset_groups)
        try:
            entries = await all_entries(catalog)
        except Exception as e:  # a registry the hub cannot read
            raise web.HTTPError(502, f"Cannot read the data registries: {e}") from None
        groups = [g.name for g in caller.groups]
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"datasets": visible(entries, groups, restrictions)}))
