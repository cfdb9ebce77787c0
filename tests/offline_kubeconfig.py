"""A kubeconfig for tests that build pods with the real KubeSpawner without a cluster.

KubeSpawner loads a kubeconfig when it is created; this one points at an address where
nothing listens, and nothing is ever contacted. Use the fixture with
``@pytest.mark.usefixtures("kubeconfig")`` after ``from .offline_kubeconfig import
kubeconfig  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import kube_config
from kubespawner.clients import load_config

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: unreachable
  cluster: {server: "https://127.0.0.1:9"}
users:
- name: nobody
  user: {token: "not-a-token"}
contexts:
- name: unreachable
  context: {cluster: unreachable, user: nobody, namespace: dsplatform}
current-context: unreachable
"""


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The unreachable kubeconfig as kubernetes_asyncio's default, restored afterwards."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    # read from $KUBECONFIG once, when kubernetes_asyncio is imported
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    saved = Configuration.get_default_copy()
    load_config.cache_clear()
    try:
        yield
    finally:
        load_config.cache_clear()
        Configuration.set_default(saved)
