"""``GET /hub/api/dsplatform/datasets``: the registries' datasets the caller's groups may see,
for tokens holding ``custom:dsplatform:datasets`` (every user's role has it)."""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from hub_ext.api import DATASETS_SCOPE
from hub_ext.api.callers import per_user_caller
from hub_ext.datasets.catalog import DatasetCatalog, all_entries, check_dataset_groups, visible


class DatasetsAPIHandler(APIHandler):
    """``GET /hub/api/dsplatform/datasets``: ``{"datasets": [...]}`` for the calling user."""

    async def get(self) -> None:
        caller = per_user_caller(self, "The dataset catalog")
        if not self.has_scope(DATASETS_SCOPE):
            raise web.HTTPError(403, f"This token lacks the scope {DATASETS_SCOPE}")
        catalog = DatasetCatalog(config=self.settings["config"])
        restrictions = check_dataset_groups(catalog.dataset_groups)
        try:
            entries = await all_entries(catalog)
        except Exception as e:  # a registry the hub cannot read
            raise web.HTTPError(502, f"Cannot read the data registries: {e}") from None
        groups = [g.name for g in caller.groups]
        self.set_header("Content-Type", "application/json")
        shown = visible(entries, groups, restrictions)
        self.write(json.dumps({"datasets": [entry.to_json() for entry in shown]}))
