"""The prediction gateway's monitoring through the real hub and proxy: Prometheus metrics
(parsed with ``prometheus_client.parser``) behind ``read:metrics``, and input drift against
the training data found from lineage alone.

The model is trained on ``iris@v2`` pulled from the platform's demo registry (its
``train.csv``) and published from that project, so its version's lineage names the dataset
version; nothing else tells the gateway where the reference is.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from .conftest import TEST_POLICY
from .hub import HubProcess
from .metrics import parse_samples

pytestmark = [
    pytest.mark.hub,
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

PREDICT = "custom:dsplatform:predict"
ACCESS = "access:services!service=catalog"
METRICS_TOKEN = "dsplatform-test-prometheus-token-0123456789"
MODEL = "iris-monitored"
EXAMPLE_MODEL = "xy-example"
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
WINDOW = 200

SITE = (
    TEST_POLICY
    + f"""
c.JupyterHub.load_groups = {{"product": {{"users": ["paul"]}}, "ml-research": {{"users": ["alice"]}}}}
c.ModelGovernance.protected_aliases = []
c.PlatformMonitoring.sample_size = {WINDOW}
c.PlatformMonitoring.min_window = 30
c.PlatformMonitoring.drift_interval = 1
# what a Prometheus server scrapes with: JupyterHub's read:metrics, and the catalog
c.JupyterHub.services = list(c.JupyterHub.get("services", [])) + [
    {{"name": "prometheus", "api_token": {METRICS_TOKEN!r}}}]
c.JupyterHub.load_roles = list(c.JupyterHub.get("load_roles", [])) + [
    {{"name": "metrics", "services": ["prometheus"], "scopes": ["read:metrics", {ACCESS!r}]}}]
"""
)


def catalog(hub: HubProcess, path: str) -> str:
    return f"{hub.url}/services/catalog/{path}"


def train_on_pulled_iris(hub: HubProcess, root: Path) -> dict[str, Any]:
    """alice's project: pull iris@v2, fit on its train.csv, publish the pickle."""
    from sklearn.linear_model import LogisticRegression

    from server_ext.catalog import RegistryCatalog
    from server_ext.core import DataService
    from server_ext.experiments import ExperimentService
    from server_ext.models import ModelService

    registry = hub.state / "platform" / "registries" / "demo"
    cache = root.parent / "alice-cache"
    data = DataService(root, cache, RegistryCatalog([str(registry)], cache))
    pulled = data.pull("iris@v2")
    train = pd.read_csv(root / pulled.path / "train.csv")
    model = LogisticRegression(max_iter=500).fit(train[FEATURES], train["species"])
    with open(root / "model.pkl", "wb") as f:
        pickle.dump(model, f)
    service = ModelService(ExperimentService(root=root, tracking_uri=hub.mlflow_url, user="alice"))
    with hub.mlflow_as("alice"):
        return service.publish(MODEL, path="model.pkl", alias="production")


def log_with_example(hub: HubProcess) -> None:
    """A model without lineage but with a logged input example (a weak reference)."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(40, 2)), columns=["x", "y"])
    with hub.mlflow_as("alice"):
        mlflow.set_tracking_uri(hub.mlflow_url)
        mlflow.set_experiment("monitoring-example")
        with mlflow.start_run() as run:
            mlflow.sklearn.log_model(
                LinearRegression().fit(x, x["x"] + x["y"]), name="model", input_example=x.head(20)
            )
        mlflow.register_model(f"runs:/{run.info.run_id}/model", EXAMPLE_MODEL)


@pytest.fixture(scope="module")
def mhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    state: Path = tmp_path_factory.mktemp("monitoring-hub")
    hub = HubProcess(state, SITE).start()
    try:
        hub.wait_mlflow()
        root = state / "project"
        root.mkdir()
        hub.published = train_on_pulled_iris(hub, root)  # type: ignore[attr-defined]
        log_with_example(hub)
        hub.paul = hub.scoped_token("paul", [PREDICT, ACCESS])  # type: ignore[attr-defined]
        yield hub
    finally:
        hub.shutdown()


def predict(hub: HubProcess, frame: pd.DataFrame, model: str = MODEL) -> requests.Response:
    body = {"dataframe_split": frame.to_dict(orient="split", index=False)}
    return requests.post(
        catalog(hub, f"api/models/{model}/production/predict"),
        json=body,
        headers={"Authorization": f"token {hub.paul}"},  # type: ignore[attr-defined]
        timeout=120,
    )


def scrape(hub: HubProcess, path: str = "services/catalog/metrics") -> dict[str, Any]:
    """``{sample name: {labels tuple: value}}`` of a metrics endpoint (the text parsed)."""
    r = requests.get(
        f"{hub.url}/{path}", headers={"Authorization": f"token {METRICS_TOKEN}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return parse_samples(r.text)


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return float(samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0))


def iris() -> pd.DataFrame:
    from hub_ext.datasets.demo import IRIS

    return pd.read_csv(IRIS)[FEATURES]


def test_metrics_need_read_metrics(mhub: HubProcess) -> None:
    url = catalog(mhub, "metrics")
    assert requests.get(url, timeout=30).status_code == 401
    paul = requests.get(url, headers={"Authorization": f"token {mhub.paul}"}, timeout=30)  # type: ignore[attr-defined]
    assert paul.status_code == 403 and "read:metrics" in paul.json()["message"], paul.text
    bad = requests.get(url, headers={"Authorization": "token nonsense"}, timeout=30)
    assert bad.status_code == 403, bad.text
    assert (
        "dsplatform_predictions_total"
        in requests.get(url, headers={"Authorization": f"token {METRICS_TOKEN}"}, timeout=30).text
    )


def test_every_call_is_counted_and_timed(mhub: HubProcess) -> None:
    version = str(mhub.published["version"])  # type: ignore[attr-defined]
    labels = {"model": MODEL, "version": version}
    before = scrape(mhub)
    frame = iris().head(7)
    for _ in range(3):
        r = predict(mhub, frame)
        assert r.status_code == 200, r.text
    bad = requests.post(
        catalog(mhub, f"api/models/{MODEL}/production/predict"), data=b"{not json",
        headers={"Authorization": f"token {mhub.paul}", "Content-Type": "application/json"},  # type: ignore[attr-defined]
        timeout=60,
    )  # fmt: skip
    assert bad.status_code == 400, bad.text
    unknown = predict(mhub, frame, model="no-such-model")
    assert unknown.status_code == 404
    after = scrape(mhub)

    def delta(name: str, **extra: str) -> float:
        return value(after, name, **extra) - value(before, name, **extra)

    assert delta("dsplatform_predictions_total", **labels, status="200") == 3
    assert delta("dsplatform_predictions_total", **labels, status="400") == 1
    assert delta("dsplatform_predictions_total", model="", version="", status="404") == 1
    assert delta("dsplatform_predicted_rows_total", **labels) == 21
    # the histogram counts every call of the version, 2xx and 4xx
    assert delta("dsplatform_prediction_latency_seconds_count", **labels) == 4
    inf = delta("dsplatform_prediction_latency_seconds_bucket", **labels, le="+Inf")
    assert inf == 4 and delta("dsplatform_prediction_latency_seconds_sum", **labels) > 0
    assert value(after, "dsplatform_serving_worker_events_total", event="started") >= 1


def test_drift_from_lineage(mhub: HubProcess) -> None:
    version = str(mhub.published["version"])  # type: ignore[attr-defined]
    drift_url = catalog(mhub, f"api/models/{MODEL}/production/drift")
    headers = {"Authorization": f"token {mhub.paul}"}  # type: ignore[attr-defined]

    # 150 in-distribution rows (iris itself), in three calls
    flowers = iris()
    for part in (flowers.iloc[i : i + 50] for i in range(0, 150, 50)):
        assert predict(mhub, part).status_code == 200
    report = requests.get(drift_url, headers=headers, timeout=120).json()
    assert report["version"] == version and report["ref"] == "production"
    assert report["reference"] == {
        "source": "lineage", "dataset": "iris", "version": "v2.0.0", "path": "train.csv",
        "weak": False, "note": "",
    }, report  # fmt: skip
    assert report["window"] >= 150 and report["drift"] is False, report
    assert {f["feature"] for f in report["features"]} == set(FEATURES)
    assert all(f["test"] == "ks" and f["p_value"] > 0.01 for f in report["features"]), report

    # 200 rows with petal length shifted by 3 cm: that feature drifts, the others do not
    rng = np.random.default_rng(3)
    shifted = flowers.sample(n=WINDOW, replace=True, random_state=4).reset_index(drop=True)
    shifted["petal_length_cm"] += 3.0 + rng.normal(0, 0.1, WINDOW)
    for part in (shifted.iloc[i : i + 50] for i in range(0, WINDOW, 50)):
        assert predict(mhub, part).status_code == 200
    report = requests.get(drift_url, headers=headers, timeout=120).json()
    assert report["window"] == WINDOW and report["drift"] is True, report
    flagged = {f["feature"]: f for f in report["features"]}
    assert [n for n, f in flagged.items() if f["drift"]] == ["petal_length_cm"], report
    assert flagged["petal_length_cm"]["p_value"] < 1e-6
    assert report["reference"]["dataset"] == "iris" and report["reference"]["version"] == "v2.0.0"

    # the verdict is a gauge per feature, for alert rules
    samples = scrape(mhub)
    labels = {"model": MODEL, "version": version}
    assert value(samples, "dsplatform_drift", **labels, feature="petal_length_cm") == 1
    assert value(samples, "dsplatform_drift", **labels, feature="sepal_width_cm") == 0
    assert value(samples, "dsplatform_drift_window_rows", **labels) == WINDOW

    # the catalog page: the last hour's calls and the version's drift status
    page = requests.get(catalog(mhub, ""), headers=headers, timeout=60)
    assert page.status_code == 200, page.text[:300]
    calls = re.search(rf'data-calls="{MODEL}">Last hour: (\d+) calls,\s+([\d.]+) % errors, '
                      r"p50 ([\d.]+) ms, p99 ([\d.]+) ms", page.text)  # fmt: skip
    assert calls and int(calls.group(1)) >= 7 and float(calls.group(4)) >= float(calls.group(3))
    cell = re.search(rf'data-drift="{MODEL}/{version}">(.*?)</td>', page.text, re.S)
    assert cell and "drift: petal_length_cm" in cell.group(1), page.text[-3000:]


def test_drift_without_lineage_uses_the_input_example_and_says_so(mhub: HubProcess) -> None:
    headers = {"Authorization": f"token {mhub.paul}"}  # type: ignore[attr-defined]
    url = catalog(mhub, f"api/models/{EXAMPLE_MODEL}/1/drift")
    report = requests.get(url, headers=headers, timeout=120).json()
    assert report["drift"] is None and "drift needs 30" in report["note"], report
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(40, 2)), columns=["x", "y"])
    r = requests.post(
        catalog(mhub, f"api/models/{EXAMPLE_MODEL}/1/predict"),
        json={"dataframe_records": frame.to_dict(orient="records")}, headers=headers,
        timeout=120,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    report = requests.get(url, headers=headers, timeout=120).json()
    assert report["reference"]["source"] == "input_example", report
    assert report["reference"]["weak"] is True and "weak" in report["reference"]["note"]
    assert report["window"] == 40 and report["drift"] is False, report

    assert requests.get(url).status_code in (401, 403)  # no token: no report
    missing = requests.get(catalog(mhub, "api/models/nope/1/drift"), headers=headers, timeout=60)
    assert missing.status_code == 404, missing.text


def test_a_real_prometheus_scrapes_the_hub_and_the_gateway(
    mhub: HubProcess, tmp_path: Path
) -> None:
    """Debian's ``prometheus`` on loopback scrapes ``/hub/metrics`` and the gateway's
    ``/services/catalog/metrics`` through the proxy with a ``read:metrics`` token."""
    import shutil
    import subprocess
    import time

    from . import processes
    from .hub import free_port

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (scripts/system-deps installs it)")
    assert predict(mhub, iris().head(3)).status_code == 200  # something to count
    port = free_port()
    host = mhub.url.removeprefix("http://")
    jobs = "".join(
        f"""
  - job_name: {job}
    metrics_path: {path}
    authorization: {{credentials: {METRICS_TOKEN}}}
    static_configs: [{{targets: ["{host}"]}}]"""
        for job, path in (("hub", "/hub/metrics"), ("gateway", "/services/catalog/metrics"))
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:{jobs}\n"
    )
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/v1/query"

    def query(expr: str) -> list[dict[str, Any]]:
        try:
            r = requests.get(api, params={"query": expr}, timeout=5)
        except requests.ConnectionError:
            return []
        return list(r.json()["data"]["result"]) if r.status_code == 200 else []

    try:
        deadline = time.monotonic() + 60
        wanted = {
            "up": 2.0,
            f'sum(dsplatform_predictions_total{{model="{MODEL}",status="200"}})': 1.0,
            'dsplatform_gpus_total{gpu_type="nvidia-a100"}': 4.0,
        }
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            for expr in wanted:
                result = query(f"sum({expr})" if expr == "up" else expr)
                if result:
                    seen[expr] = float(result[0]["value"][1])
            if all(seen.get(e, 0) >= v for e, v in wanted.items()):
                break
            time.sleep(0.5)
        assert all(seen.get(e, 0) >= v for e, v in wanted.items()), (
            f"{seen}\n{processes.log_tail(log, 3000)}"
        )
        targets = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
        health = {t["labels"]["job"]: t["health"] for t in targets["data"]["activeTargets"]}
        assert health == {"hub": "up", "gateway": "up"}, targets
    finally:
        processes.stop(proc, 10)
