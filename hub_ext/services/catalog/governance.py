"""Model governance: which aliases are protected, who approves, which gates a promotion
passes. Its settings are declared here once and handed to the catalog service (which runs
the promotion flow) and to MLflow (which refuses direct moves of protected aliases)."""

from __future__ import annotations

from traitlets import List, Unicode
from traitlets.config import Config, Configurable

from hub_ext.errors import ConfigError

APPROVE_SCOPE = "custom:dsplatform:approve"
DIRECTIONS = ("higher", "lower")


class ModelGovernance(Configurable):
    """Four-eyes promotion of model versions to protected aliases."""

    protected_aliases = List(
        Unicode(),
        [],
        help="""Aliases of registered models that never move by a direct MLflow call (not
        even the owner's): only through a promotion the model's owner requests and an
        approver approves (POST /services/catalog/api/models/NAME/promotions).

            c.ModelGovernance.protected_aliases = ["production"]
        """,
    ).tag(config=True)

    approver_groups = List(
        Unicode(),
        [],
        help=f"""Hub groups whose members may approve, reject and roll back promotions
        (their tokens may carry the scope {APPROVE_SCOPE}); an approver never approves
        their own request.

            c.ModelGovernance.approver_groups = ["model-reviewers"]
        """,
    ).tag(config=True)

    gate_metric = Unicode(
        "",
        help="""A metric of the candidate's training run that must not be worse than the
        current version's ("" for none).

            c.ModelGovernance.gate_metric = "auc"
        """,
    ).tag(config=True)

    gate_metric_direction = Unicode(
        "higher",
        help="""Whether a higher ("higher") or lower ("lower") gate_metric is better.

            c.ModelGovernance.gate_metric_direction = "lower"   # e.g. for "rmse"
        """,
    ).tag(config=True)

    db_url = Unicode(
        "",
        help="""SQLAlchemy URL of the promotion history (requests, approvals, rejections,
        rollbacks; append-only). Default: governance.sqlite in the platform's state
        directory; the Helm chart uses the hub's PostgreSQL.

            c.ModelGovernance.db_url = "postgresql+psycopg2://hub@db:5432/jupyterhub"
        """,
    ).tag(config=True)


def check(c: Config) -> None:
    """Start-up checks (ConfigError naming the key)."""
    governance = ModelGovernance(config=c)
    if governance.gate_metric_direction not in DIRECTIONS:
        raise ConfigError(
            f"c.ModelGovernance.gate_metric_direction: {governance.gate_metric_direction!r} "
            f"is not one of {', '.join(DIRECTIONS)}"
        )
    for alias in governance.protected_aliases:
        if not alias or alias == "latest" or not alias.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"c.ModelGovernance.protected_aliases: {alias!r} is not an alias")
