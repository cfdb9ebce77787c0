"""docs/contract.md stays true: its configuration example passes configure(), and every
configurable trait of hub_ext and server_ext is listed there (a new key is written into the
contract, or this fails)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from traitlets.config import Config, Configurable

import hub_ext
import server_ext
from hub_ext.setup import configure

CONTRACT = Path(__file__).resolve().parent.parent / "docs" / "contract.md"
# runtime plumbing of service processes, filled from JupyterHub's service environment
INTERNAL = {
    "CatalogService": {"service_url", "prefix", "tracking_uri"},
    "ProfileIdleCuller": {"profile_timeouts", "fallback_timeout"},
}


def configurable_classes() -> dict[str, type[Configurable]]:
    found: dict[str, type[Configurable]] = {}
    for package in (hub_ext, server_ext):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, Configurable)
                    and value.__module__ == module.__name__
                ):
                    found[value.__name__] = value
    return found


def test_the_contracts_configuration_example_passes_configure() -> None:
    text = CONTRACT.read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S)
    assert example is not None
    c = Config()
    exec(example.group(1), {"c": c})
    c.PlatformMLflow.enabled = False
    configure(c)
    assert [p["slug"] for p in c.ProfileSpawner.profiles] == ["cpu-small", "gpu-a100"]


def test_every_configurable_trait_is_in_the_contract() -> None:
    text = CONTRACT.read_text()
    rows = {
        match.group(1): set(re.findall(r"`(\w+)`", match.group(2)))
        for match in re.finditer(r"^\| `(\w+)`[^|]*\| (.*) \|$", text, re.M)
    }
    missing = []
    for name, cls in sorted(configurable_classes().items()):
        # declared on the class itself (inherited ones are listed under their own class)
        own = {t for t in cls.class_trait_names(config=True) if t in cls.__dict__}
        own -= INTERNAL.get(name, set())
        if own and not own <= rows.get(name, set()):
            missing.append(f"c.{name}: {sorted(own - rows.get(name, set()))}")
    assert not missing, "not in docs/contract.md: " + "; ".join(missing)
