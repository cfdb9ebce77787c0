"""Generate the chart's values.schema.json from values.schema.yaml (the file people edit).

    python helm/generate_schema.py           # write helm/dsplatform/values.schema.json
    python helm/generate_schema.py --check   # exit 1 if the committed JSON is out of date

Helm reads only the JSON; YAML is easier to write and review, with comments.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "dsplatform"
SOURCE = CHART / "values.schema.yaml"
TARGET = CHART / "values.schema.json"


def load_schema(source: Path = SOURCE) -> dict[str, Any]:
    schema = yaml.safe_load(source.read_text())
    if not isinstance(schema, dict):
        raise SystemExit(f"{source}: not a YAML mapping")
    return schema


def render(schema: dict[str, Any]) -> str:
    """The JSON text written to values.schema.json (stable: key order of the YAML)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render(load_schema())
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python helm/generate_schema.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
