"""Model names and versions as MLflow takes them: one rule for the sandbox, the catalog and
the MLflow server's plugin.

MLflow's search grammar has no escape character: a name is one string literal in single or
double quotes, so a name with a quote of one kind is quoted with the other, and a name with
both cannot be searched for (MLflow accepts such names at creation). Names never enter a
filter any other way, so ``zz'evil`` is listed like every other model.
"""

from __future__ import annotations

import re

# MLflow's version numbers are small positive integers; anything else names no version (and a
# twenty-digit one made MLflow's SQL store answer 500, which clients retry for minutes)
VERSION_RE = re.compile(r"^[1-9][0-9]{0,8}$")


def is_version(text: object) -> bool:
    """Whether ``text`` can be a model version number (pure)."""
    return VERSION_RE.match(str(text).strip()) is not None


class ModelNameError(ValueError):
    """A model name MLflow's filter grammar cannot express."""


def name_filter(name: str) -> str:
    """``name='…'`` for MLflow's ``search_model_versions``, the name as one literal."""
    if "'" not in name:
        return f"name='{name}'"
    if '"' not in name:
        return f'name="{name}"'
    raise ModelNameError(f"model name {name[:100]!r} has both kinds of quote")
