"""Model names in MLflow filter strings: one quoting rule for the sandbox and the catalog.

MLflow's search grammar has no escape character: a name is one string literal in single or
double quotes, so a name with a quote of one kind is quoted with the other, and a name with
both cannot be searched for (MLflow accepts such names at creation). Names never enter a
filter any other way, so ``zz'evil`` is listed like every other model.
"""

from __future__ import annotations


class ModelNameError(ValueError):
    """A model name MLflow's filter grammar cannot express."""


def name_filter(name: str) -> str:
    """``name='…'`` for MLflow's ``search_model_versions``, the name as one literal."""
    if "'" not in name:
        return f"name='{name}'"
    if '"' not in name:
        return f'name="{name}"'
    raise ModelNameError(f"model name {name[:100]!r} has both kinds of quote")
