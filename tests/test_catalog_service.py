"""The catalog service through the real hub and proxy: scoped predictions, models, datasets."""

from __future__ import annotations

import pickle
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from .conftest import TEST_POLICY
from .hub import HubProcess

pytestmark = [
    pytest.mark.hub,
    # mlflow warns about its own type hints and deprecations when imported in the test process
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

PREDICT = "custom:dsplatform:predict"
ACCESS = "access:services!service=catalog"
MODEL = "catalog-lr"
MAX_BYTES = 20000

SITE = (
    TEST_POLICY
    + f"""
c.JupyterHub.load_groups = {{
    "product": {{"users": ["paul"]}},
    "ml-research": {{"users": ["alice"]}},
}}
c.PlatformCatalog.max_request_bytes = {MAX_BYTES}
c.DatasetCatalog.refresh_seconds = 5
# the gateway's own behaviour (aliases moved directly); promotions: test_model_promotions.py
c.ModelGovernance.protected_aliases = []
"""
)

FRAME = pd.DataFrame(
    {
        "x1": [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 0.2, -0.3],
        "x2": [-1.0, -2.0, 0.1, -0.2, 2.0, 1.0, 0.4, -0.6],
    }
)


def train(flipped: bool = False) -> Any:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 2)), columns=["x1", "x2"])
    y = (x["x1"] + x["x2"] > 0).astype(int)
    return LogisticRegression().fit(x, 1 - y if flipped else y)


def publish(hub: HubProcess, root: Path, estimator: Any, alias: str | None) -> dict[str, Any]:
    from server_ext.experiments import ExperimentService
    from server_ext.models import ModelService

    with open(root / "model.pkl", "wb") as f:
        pickle.dump(estimator, f)
    service = ModelService(ExperimentService(root=root, tracking_uri=hub.mlflow_url, user="alice"))
    with hub.mlflow_as("alice"):  # as her sandbox does, with her hub token
        return service.publish(MODEL, path="model.pkl", alias=alias)


@pytest.fixture(scope="module")
def chub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    state: Path = tmp_path_factory.mktemp("catalog-hub")
    process = HubProcess(state, SITE).start()
    try:
        process.wait_mlflow()
        root = state / "project"
        root.mkdir()
        process.model = train()  # type: ignore[attr-defined]
        process.first = publish(process, root, process.model, "production")  # type: ignore[attr-defined]
        process.root = root  # type: ignore[attr-defined]
        process.paul = process.scoped_token("paul", [PREDICT, ACCESS])  # type: ignore[attr-defined]
        yield process
    finally:
        process.shutdown()


def catalog(hub: HubProcess, path: str) -> str:
    return f"{hub.url}/services/catalog/{path}"


def post(
    hub: HubProcess, path: str, token: str | None, body: Any = None, data: bytes | None = None
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    if data is None:
        return requests.post(catalog(hub, path), json=body, headers=headers, timeout=60)
    return requests.post(catalog(hub, path), data=data, headers=headers, timeout=60)


def get(hub: HubProcess, path: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(catalog(hub, path), headers=headers, timeout=60, allow_redirects=False)


SPLIT = {"dataframe_split": FRAME.to_dict(orient="split", index=False)}
PREDICT_PATH = f"api/models/{MODEL}/production/predict"


def test_predict_in_three_formats_matches_the_model(chub: HubProcess) -> None:
    expected = [int(v) for v in chub.model.predict(FRAME)]  # type: ignore[attr-defined]
    assert len(set(expected)) == 2  # both classes: the flipped model differs everywhere
    bodies = [
        SPLIT,
        {"dataframe_records": FRAME.to_dict(orient="records")},
        {"inputs": FRAME.to_dict(orient="list")},
    ]
    for body in bodies:
        r = post(chub, PREDICT_PATH, chub.paul, body)  # type: ignore[attr-defined]
        assert r.status_code == 200, (body, r.text)
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.headers["X-Model-Version"] == "1"
        assert r.json()["predictions"] == expected, body
    # by version number too
    r = post(chub, f"api/models/{MODEL}/1/predict", chub.paul, SPLIT)  # type: ignore[attr-defined]
    assert r.status_code == 200 and r.json()["predictions"] == expected


def test_predict_needs_the_scope(chub: HubProcess) -> None:
    alice = chub.scoped_token("alice", [ACCESS])
    r = post(chub, PREDICT_PATH, alice, SPLIT)
    assert r.status_code == 403, r.text
    assert PREDICT in r.json()["message"] and "group(s) 'product'" in r.json()["message"]
    # alice's default token (the user role: access to the service, no predict scope)
    r = post(chub, PREDICT_PATH, chub.token_for("alice"), SPLIT)
    assert r.status_code == 403, r.text
    assert PREDICT in r.json()["message"]
    # paul's default token: the predict scope comes from his group's role
    r = post(chub, PREDICT_PATH, chub.token_for("paul"), SPLIT)
    assert r.status_code == 200, r.text
    # no token, a garbage token
    assert post(chub, PREDICT_PATH, None, SPLIT).status_code in (401, 403)
    assert post(chub, PREDICT_PATH, "not-a-real-token-123", SPLIT).status_code in (401, 403)
    # a token with the predict scope but without access to the service
    only_predict = chub.scoped_token("paul", [PREDICT])
    assert post(chub, PREDICT_PATH, only_predict, SPLIT).status_code in (401, 403)


def test_bad_inputs_are_4xx_and_the_service_keeps_serving(chub: HubProcess) -> None:
    paul = chub.paul  # type: ignore[attr-defined]
    bad: list[tuple[str, bytes | None, Any]] = [
        ("malformed JSON", b'{"dataframe_split": {"columns": ["x1"', None),
        ("not JSON at all", b"hello", None),
        ("missing column", None, {"dataframe_split": {"columns": ["x1"], "data": [[1.0]]}}),
        (
            "wrong type",
            None,
            {"dataframe_records": [{"x1": "abc", "x2": "def"}]},
        ),
        ("unknown format key", None, {"rows": [[1.0, 2.0]]}),
    ]
    for label, data, body in bad:
        r = post(chub, PREDICT_PATH, paul, body, data=data)
        assert 400 <= r.status_code < 500, (label, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json"), label
        assert r.json()["message"], label
        good = post(chub, PREDICT_PATH, paul, SPLIT)
        assert good.status_code == 200, (label, good.text)
    # over the limit: 413 (and the service still serves)
    rows = [[1.0, 2.0]] * 2000
    big = {"dataframe_split": {"columns": ["x1", "x2"], "data": rows}}
    r = post(chub, PREDICT_PATH, paul, big)
    assert r.status_code == 413, r.text[:300]
    assert str(MAX_BYTES) in r.json()["message"]
    # well over the limit (and over the 4x max_body_size the service passes to its app)
    huge = {"dataframe_split": {"columns": ["x1", "x2"], "data": [[1.0, 2.0]] * 20000}}
    r = post(chub, PREDICT_PATH, paul, huge)
    assert r.status_code == 413, r.text[:300]
    assert post(chub, PREDICT_PATH, paul, SPLIT).status_code == 200
    # 50 MB, through the proxy: the service's own 413 with its JSON reason, on every route
    fifty = b"x" * (50 << 20)
    for path in (PREDICT_PATH, f"api/models/{MODEL}/promotions", "mlflow/ajax-api/2.0/x"):
        r = post(chub, path, paul, data=fifty)
        assert r.status_code == 413, (path, r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/json"), path
        assert (
            "at most" in r.json()["message"] and r.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        )
    assert post(chub, PREDICT_PATH, paul, SPLIT).status_code == 200
    # a version number the registry can never hold is 404, not a crash
    for ref in ("²", "1" * 30, "٣"):
        r = post(chub, f"api/models/{MODEL}/{ref}/predict", paul, SPLIT)
        assert r.status_code == 404, (ref, r.status_code, r.text[:300])


def test_unknown_model_alias_version_404(chub: HubProcess) -> None:
    paul = chub.paul  # type: ignore[attr-defined]
    for path in (
        "api/models/no-such-model/production/predict",
        f"api/models/{MODEL}/no-such-alias/predict",
        f"api/models/{MODEL}/999/predict",
    ):
        r = post(chub, path, paul, SPLIT)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["message"], path
    r = get(chub, f"api/models/{MODEL}/nope/openapi.json", paul)
    assert r.status_code == 404, r.text


def test_models_listing_and_openapi(chub: HubProcess) -> None:
    token = chub.token_for("alice")
    r = get(chub, "api/models", token)
    assert r.status_code == 200, r.text
    models = {m["name"]: m for m in r.json()["models"]}
    m = models[MODEL]
    assert m["owner"] == "alice"
    assert isinstance(m["aliases"]["production"], int)
    assert m["versions"][0]["version"] == 1 and m["latest_version"] >= 1
    v1 = m["versions"][0]
    assert v1["signature"]["inputs"] == [
        {"name": "x1", "type": "double"},
        {"name": "x2", "type": "double"},
    ]
    assert v1["lineage"]["run"] == chub.first["run_id"]  # type: ignore[attr-defined]
    assert v1["run_id"] == chub.first["run_id"]  # type: ignore[attr-defined]

    r = get(chub, f"api/models/{MODEL}/production/openapi.json", token)
    assert r.status_code == 200, r.text
    doc = r.json()
    path = f"/services/catalog/api/models/{MODEL}/production/predict"
    assert path in doc["paths"], list(doc["paths"])
    body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    records = body["schema"]["oneOf"][1]["properties"]["dataframe_records"]["items"]
    assert records["properties"] == {"x1": {"type": "number"}, "x2": {"type": "number"}}
    assert body["example"]["dataframe_split"]["columns"] == ["x1", "x2"]


def test_datasets_follow_groups(chub: HubProcess) -> None:
    def names(token: str) -> list[str]:
        r = get(chub, "api/datasets", token)
        assert r.status_code == 200, r.text
        return sorted(d["name"] for d in r.json()["datasets"])

    assert names(chub.token_for("alice")) == ["churn", "iris"]
    assert names(chub.token_for("paul")) == ["iris"]
    assert names(chub.paul) == ["iris"]  # type: ignore[attr-defined]
    assert get(chub, "api/datasets", None).status_code in (401, 403)


def test_html_page_and_hub_home_link(chub: HubProcess) -> None:
    from .test_hub_spawn import login

    r = get(chub, "", chub.token_for("alice"))
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/html")
    assert MODEL in r.text and "churn" in r.text and "iris" in r.text
    r = get(chub, "", chub.token_for("paul"))
    assert r.status_code == 200 and MODEL in r.text and "churn" not in r.text

    s = login(chub, "paul")
    home = s.get(f"{chub.url}/hub/home")
    assert home.status_code == 200
    assert "/services/catalog/" in home.text
    # and the browser reaches the page through the hub's OAuth
    page = s.get(catalog(chub, ""))
    assert page.status_code == 200, page.text[:500]
    assert MODEL in page.text
    assert '<a href="/services/catalog/mlflow/" class="mlflow-ui">' in page.text
    # inside the hub's page: its navigation bar, styles and a way back home
    assert 'href="/hub/home"' in page.text and "/hub/static/css/style.min.css" in page.text
    assert "Logout" in page.text and "paul" in page.text
    # no input example logged for this model: placeholders, and the page says so
    assert "has no logged input example" in page.text


def test_the_page_shows_the_models_own_input_example(chub: HubProcess) -> None:
    import mlflow

    with chub.mlflow_as("alice"):
        mlflow.set_tracking_uri(chub.mlflow_url)
        mlflow.set_experiment("catalog-example")
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                chub.model,  # type: ignore[attr-defined]
                name="model",
                input_example=FRAME.iloc[[4]],
                registered_model_name="with-example",
            )
    page = get(chub, "", chub.token_for("alice")).text
    block = page[page.index('data-model="with-example"') :]
    assert '{"x1": 1.0, "x2": 2.0}' in block, block[:3000]
    assert '"columns": ["x1", "x2"], "data": [[1.0, 2.0]]' in block
    assert "has no logged input example" not in block.split("data-model=")[1]


def test_mlflow_ui_behind_the_hub_login(chub: HubProcess) -> None:
    """MLflow has no login of its own: the catalog serves its UI to hub users only."""
    from .test_hub_spawn import login

    search = "mlflow/ajax-api/2.0/mlflow/registered-models/search"
    # anonymous: a page view goes to the hub's login, an API call is refused
    html = {"Accept": "text/html,application/xhtml+xml"}
    r = requests.get(catalog(chub, "mlflow/"), headers=html, allow_redirects=False, timeout=60)
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["Location"]
    r = requests.get(catalog(chub, search), timeout=60)
    assert r.status_code == 401 and "Log in to the hub" in r.json()["message"]
    r = post(chub, "mlflow/ajax-api/2.0/mlflow/experiments/create", None, {"name": "x"})
    assert r.status_code == 401

    # a hub token: MLflow's own UI, its assets and its API, all under the prefix
    alice = chub.token_for("alice")
    r = get(chub, "mlflow", alice)
    assert r.status_code == 301 and r.headers["Location"].endswith("/services/catalog/mlflow/")
    page = get(chub, "mlflow/", alice)
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text
    script = re.search(r'src="(static-files/[^"]+\.js)"', page.text)
    assert script, page.text[:500]
    js = get(chub, f"mlflow/{script.group(1)}", alice)
    assert js.status_code == 200 and "javascript" in js.headers["Content-Type"]
    import mlflow.server

    bundle = Path(mlflow.server.__file__).parent / "js" / "build" / script.group(1)[13:]
    assert js.content == bundle.read_bytes()  # megabytes, streamed through whole
    r = get(chub, f"{search}?max_results=50", alice)
    assert r.status_code == 200, r.text
    assert MODEL in [m["name"] for m in r.json()["registered_models"]]
    # MLflow's errors come through as MLflow wrote them
    r = get(chub, "mlflow/ajax-api/2.0/mlflow/registered-models/get?name=nope", alice)
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # and as the user the browser is logged in as: her permissions, not the catalog's
    r = get(chub, "mlflow/ajax-api/2.0/mlflow/users/current", alice)
    assert r.status_code == 200 and r.json()["user"] == {**r.json()["user"], "username": "alice",
                                                         "is_admin": False}  # fmt: skip

    # a browser logged in to the hub (OAuth cookie): pages, and the app's same-origin calls
    s = login(chub, "paul")
    r = s.get(catalog(chub, "mlflow/"), headers=html, timeout=60)
    assert r.status_code == 200 and "<title>MLflow</title>" in r.text, r.url
    same_origin = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
    body = {"name": f"from-the-browser-{time.monotonic_ns()}"}
    create = "mlflow/ajax-api/2.0/mlflow/experiments/create"
    r = s.post(catalog(chub, create), json=body, headers=same_origin, timeout=60)
    assert r.status_code == 200, r.text
    with chub.mlflow_as():
        assert chub_client(chub).get_experiment(r.json()["experiment_id"]).name == body["name"]
    # the same cookie from another site's page (or no fetch metadata) is not a login
    for headers in ({**same_origin, "Sec-Fetch-Site": "cross-site"}, {}):
        r = s.post(catalog(chub, create), json={"name": "csrf"}, headers=headers, timeout=60)
        assert r.status_code == 401, (headers, r.text)
    with chub.mlflow_as():
        assert chub_client(chub).get_experiment_by_name("csrf") is None


def chub_client(hub: HubProcess) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(hub.mlflow_url)


def test_sandbox_reads_the_catalog(chub: HubProcess) -> None:
    from .test_hub_spawn import run_in_kernel

    r = chub.spawn("alice", "", {"profile": "cpu-small"})
    assert r.status_code in (201, 202), r.text
    chub.wait_ready("alice", "", timeout=90)
    try:
        out = run_in_kernel(
            chub,
            "alice",
            "",
            "import os; from server_ext import dsdata; "
            "print(os.environ['DSDATA_MLFLOW_UI_URL']); "
            "print(os.environ['DSDATA_CATALOG_URL']); "
            "print(sorted(d['name'] for d in dsdata.list_datasets()))",
        )
        ui, url, names = out.strip().splitlines()[-3:]
        assert ui == "/services/catalog/mlflow/", out  # the browser's way to MLflow
        assert url.endswith("/services/catalog/api/datasets"), url
        assert names == "['churn', 'iris']", out
    finally:
        chub.stop_server("alice")


def test_moving_the_alias_moves_predictions(chub: HubProcess) -> None:
    paul = chub.paul  # type: ignore[attr-defined]
    before = post(chub, PREDICT_PATH, paul, SPLIT)
    assert before.status_code == 200 and before.headers["X-Model-Version"] == "1"
    flipped = train(flipped=True)
    second = publish(chub, chub.root, flipped, "production")  # type: ignore[attr-defined]
    assert second["version"] == 2
    expected = [int(v) for v in flipped.predict(FRAME)]
    assert expected != before.json()["predictions"]
    deadline = time.monotonic() + 10
    while True:
        r = post(chub, PREDICT_PATH, paul, SPLIT)
        assert r.status_code == 200, r.text
        if r.headers["X-Model-Version"] == "2":
            break
        assert time.monotonic() < deadline, "predictions did not follow the alias in 10 s"
        time.sleep(0.25)
    assert r.json()["predictions"] == expected
    # version 1 stays addressable
    r = post(chub, f"api/models/{MODEL}/1/predict", paul, SPLIT)
    assert r.status_code == 200 and r.json()["predictions"] == [
        int(v)
        for v in chub.model.predict(FRAME)  # type: ignore[attr-defined]
    ]
    models = {m["name"]: m for m in get(chub, "api/models", paul).json()["models"]}
    assert models[MODEL]["aliases"] == {"production": 2}
    assert [v["version"] for v in models[MODEL]["versions"]] == [1, 2]


def test_the_catalogs_refresh_setting_reaches_the_running_service(chub: HubProcess) -> None:
    """c.DatasetCatalog.refresh_seconds = 5 (not the service's own 30 s): a version published
    into the registry is listed within seconds."""
    from hub_ext.datasets.publish import publish_version

    paul = chub.paul  # type: ignore[attr-defined]
    listed = get(chub, "api/datasets", paul).json()["datasets"]
    assert "v9.0.0" not in next(d for d in listed if d["name"] == "iris")["versions"]
    registry = chub.state / "platform" / "registries" / "demo"
    publish_version(registry, "iris", {"iris.csv": b"a,b\n1,2\n"}, "v9.0.0")
    published = time.monotonic()
    while True:
        listed = get(chub, "api/datasets", paul).json()["datasets"]
        if "v9.0.0" in next(d for d in listed if d["name"] == "iris")["versions"]:
            break
        # a 30 s listing would still be the old one; 5 s + one read of the registry is not
        assert time.monotonic() - published < 25, "the catalog did not re-read its registries"
        time.sleep(0.5)
    assert "registries refreshed every 5s" in chub.log_path.read_text()
