"""The ipywidgets dataset browser over a real DataService and registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as w
import pytest

from server_ext.catalog import RegistryCatalog
from server_ext.core import DataService
from server_ext.widgets import DatasetBrowser

from .registries import (  # noqa: F401  (fixtures)
    Registry,
    dvc_site_cache_fixture,
    expected_tree,
    md5_tree,
    registry_fixture,
    release,
)


@pytest.fixture
def service(registry: Registry, tmp_path: Path) -> DataService:
    root, cache = tmp_path / "ws", tmp_path / "cache"
    root.mkdir()
    return DataService(root=root, cache_dir=cache, catalog=RegistryCatalog([registry.url], cache))


@pytest.fixture
def browser(service: DataService) -> DatasetBrowser:
    return DatasetBrowser(service)


def watch(widget: Any) -> list[Any]:
    """Every value ``widget`` takes from now on."""
    seen: list[Any] = []
    widget.observe(lambda change: seen.append(change["new"]), names="value")
    return seen


def test_browser_builds_from_the_catalog(browser: DatasetBrowser) -> None:
    assert isinstance(browser.widget, w.VBox)
    assert browser.dataset.options == ("iris", "multi")
    assert browser.dataset.value == "iris"
    assert browser.version._options_labels == ("v2.0.0", "v1.1.0", "v1.0.0")  # newest first
    assert browser.version.value == "v2.0.0"
    assert browser.path.placeholder == "data/iris"
    assert (browser.bar.value, browser.label.value) == (0.0, "")
    assert repr(browser).startswith("Datasets\ndataset  latest")


def test_choosing_a_dataset_updates_the_versions(browser: DatasetBrowser) -> None:
    browser.dataset.value = "multi"
    assert browser.version._options_labels == ("v1.0.0",) and browser.version.value == "v1.0.0"
    assert browser.path.placeholder == "data/multi"
    browser.dataset.value = "iris"
    assert browser.version.value == "v2.0.0"


def test_pull_shows_progress_and_the_result(browser: DatasetBrowser, service: DataService) -> None:
    browser.version.value = "v1.0.0"
    bars, labels = watch(browser.bar), watch(browser.label)
    result = browser.pull()
    assert result is not None and (result.dataset, result.version) == ("iris", "v1.0.0")
    assert browser.bar.value == 1.0 and max(bars) == 1.0
    assert all(0.0 <= v <= 1.0 for v in bars)
    assert any(label.startswith("downloading: ") for label in labels)
    assert browser.label.value == "iris@v1.0.0 -> data/iris (1 files)"
    assert browser.button.disabled is False
    assert md5_tree(service.root / "data" / "iris") == expected_tree(release("iris", "v1.0.0"))


def test_pull_button_into_a_chosen_path(browser: DatasetBrowser, service: DataService) -> None:
    browser.dataset.value = "multi"
    browser.path.value = "here/m"
    browser.button.click()
    assert browser.label.value == "multi@v1.0.0 -> here/m (5 files)"
    assert browser.bar.value == 1.0
    assert md5_tree(service.root / "here" / "m") == expected_tree(release("multi", "v1.0.0"))


def test_a_failing_pull_shows_the_message(browser: DatasetBrowser, service: DataService) -> None:
    browser.path.value = "../outside"
    assert browser.pull() is None
    assert browser.label.value.startswith("failed: Target path '../outside' is outside")
    assert browser.button.disabled is False

    browser.path.value = ""
    browser.version.value = "v1.1.0"
    assert browser.pull() is not None
    (service.root / "data" / "iris" / "iris.csv").write_text("mine\n")
    browser.version.value = "v2.0.0"
    assert browser.pull() is None
    assert browser.label.value.startswith("failed: ")
    assert "local changes (1 file(s): iris.csv)" in browser.label.value
    browser.force.value = True
    assert browser.pull() is not None
    assert md5_tree(service.root / "data" / "iris") == expected_tree(release("iris", "v2.0.0"))
