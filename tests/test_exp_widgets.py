"""The experiment table widget: a thin front over ExperimentService (real MLflow, git)."""

from __future__ import annotations

from server_ext.experiments import ExperimentService
from server_ext.widgets import ExperimentTable

from .mlflow_server import Project, mlflow_server_fixture, project_fixture  # noqa: F401
from .registries import dvc_site_cache_fixture, registry_fixture  # noqa: F401


def test_experiment_table_commits_and_lists(project: Project) -> None:
    (project.root / "train.py").write_text("print('v1')\n")
    table = ExperimentTable(ExperimentService(root=project.root))
    assert "Experiments" in table.table.value and "<tbody></tbody>" in table.table.value

    table.message.value = "first from the widget"
    table.params.value = "lr=0.1 depth=3"
    table.metrics.value = "auc=0.9"
    result = table.commit()
    assert result is not None and result.run_id
    assert table.status.value.startswith(f"committed {result.git_sha[:10]} (run ")
    assert "first from the widget" in table.table.value and "auc=0.9" in table.table.value
    (run,) = project.runs()
    assert run.data.params == {"lr": "0.1", "depth": "3"}

    # nothing changed: the message says so, nothing new in MLflow
    table.message.value = "again"
    assert table.commit() is None
    assert table.status.value.startswith("commit failed: Nothing changed since the last commit")
    assert len(project.runs()) == 1

    # a malformed pair is refused with the reason
    (project.root / "train.py").write_text("print('v2')\n")
    table.message.value = "bad"
    table.params.value = "lr"
    assert table.commit() is None
    assert table.status.value == "commit failed: Invalid param 'lr': use key=value"
