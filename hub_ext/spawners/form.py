"""The spawn form: rendered from the usage report, parsed into ``user_options``.

The form shows exactly what the usage API returns (limits, usage, pools, and for each
profile whether it can start now), so the two never disagree; what it posts is checked by
the same admission as a REST request.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

if TYPE_CHECKING:
    from hub_ext.spawners.base import ProfileSpawner

_jinja = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=select_autoescape(["html"]),
)

FORM_FIELDS = ("cpu", "memory", "gpus", "disk")


def render_options_form(spawner: ProfileSpawner) -> str:
    """``c.Spawner.options_form``: the profiles and numbers of the spawner's user."""
    report = spawner.usage()
    previous = spawner.orm_spawner.user_options if spawner.orm_spawner is not None else None
    return _jinja.get_template("options_form.html").render(report=report, previous=previous or {})


def options_from_form(form_data: dict[str, list[str]]) -> dict[str, Any]:
    """Form fields (``profile`` and ``<slug>.<field>``) to typed ``user_options``.

    Only the chosen profile's fields are kept; numbers become numbers, anything that does
    not parse is passed on unchanged so validation refuses it with the usual message.
    """
    profile = (form_data.get("profile") or [""])[0]
    options: dict[str, Any] = {"profile": profile} if profile else {}
    for field in FORM_FIELDS:
        values = form_data.get(f"{profile}.{field}")
        if not values or values[0].strip() == "":
            continue
        text = values[0].strip()
        if field in ("cpu", "gpus"):
            try:
                number = float(text)
                options[field] = int(number) if number.is_integer() and "." not in text else number
            except ValueError:
                options[field] = text
        else:
            options[field] = text
    return options
