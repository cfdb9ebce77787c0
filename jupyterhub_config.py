"""dsplatform's embedded default: a complete local-mode platform, and a worked example.

Run from any directory:  jupyterhub -f /path/to/jupyterhub_config.py
State (hub database, cookie secret, passwords, user workspaces) lives under
$DSPLATFORM_STATE_DIR (default ./.dsplatform). The hub binds 127.0.0.1 only.

Environment:
  DSPLATFORM_STATE_DIR   where state lives (default ./.dsplatform)
  DSPLATFORM_PORT        the public port (default 8000)
  DSPLATFORM_MODE        "local" (default); "kubernetes" selects the KubeSpawner path
  DSPLATFORM_MLFLOW_PORT the local MLflow server's port (default 5000, 127.0.0.1)
  DSPLATFORM_CATALOG_PORT the catalog service's port (default 10101, 127.0.0.1)
  DSPLATFORM_DASK_PORT, DSPLATFORM_DASK_SCHEDULER_PORT, DSPLATFORM_DASK_API_PORT
                         dask-gateway's HTTP, scheduler (TLS) and private API ports
                         (default 10102, 10103, 10104; 127.0.0.1)
  DSPLATFORM_GPUS        local mode without NVIDIA GPUs: how many demo device ids to offer
                         (default 4) so the GPU profile and its quotas can be tried
  DSPLATFORM_EXTRA_CONFIG  a Python config file loaded just before validation, to add to or
                         replace anything here (site profiles, quotas, groups, ports)
  DSPLATFORM_AUTH        "shared-password" (default) or "oauth": GenericOAuthenticator from
                         OAUTH_* variables (see hub_ext/deploy/oauth.py), groups from the IdP
  DSPLATFORM_CHART_VALUES  kubernetes mode: the Helm chart's hub values file (ConfigMap)
  DSPLATFORM_DEMO_REGISTRY  kubernetes mode: "1" builds the demo data registry too (for the
                         Kubernetes-API emulator in tests/, whose pods run on this machine)
"""

import os
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # works from a checkout without `pip install`
    sys.path.insert(0, str(HERE))

from hub_ext.datasets.demo import ensure_demo_registry  # noqa: E402
from hub_ext.deploy.chart import configure_from_chart  # noqa: E402
from hub_ext.deploy.oauth import configure_auth  # noqa: E402
from hub_ext.setup import configure  # noqa: E402
from hub_ext.spawners.gpus import detect_nvidia_gpus  # noqa: E402

c = get_config()  # type: ignore[name-defined]  # noqa: F821

MODE = os.environ.get("DSPLATFORM_MODE", "local")
STATE = Path(os.environ.get("DSPLATFORM_STATE_DIR", ".dsplatform")).resolve()
os.environ["DSPLATFORM_STATE_DIR"] = str(STATE)  # spawners and services see the same dir
STATE.mkdir(parents=True, exist_ok=True)
# Sandboxes run as their own accounts when the hub is root: they may pass through the state
# dir to their workspaces (users/NAME, 0700 each) and read the shared dataset cache, which
# only the catalog service writes; everything else here is the hub's alone.
for path, mode in ((STATE, 0o711), (STATE / "users", 0o711), (STATE / "cache", 0o755)):
    path.mkdir(exist_ok=True)
    if path.stat().st_uid == os.geteuid():
        path.chmod(mode)


def secret(name: str, nbytes: int = 24) -> str:
    """A secret kept in the state dir (created once, readable by the owner only)."""
    path = STATE / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(nbytes))
        path.chmod(0o600)
    return path.read_text().strip()


# --- hub basics -----------------------------------------------------------------------
c.JupyterHub.bind_url = f"http://127.0.0.1:{os.environ.get('DSPLATFORM_PORT', '8000')}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
c.ConfigurableHTTPProxy.auth_token = secret("proxy_token")
local_chp = HERE / "node_modules" / ".bin" / "configurable-http-proxy"
if local_chp.exists():  # installed by `npm install` in the checkout
    c.ConfigurableHTTPProxy.command = [str(local_chp)]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60

# --- authentication: a shared password printed at start-up ------------------------------
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = secret("user_password", 12)
c.SharedPasswordAuthenticator.admin_password = secret("admin_password", 32)
c.Authenticator.admin_users = {"admin"}
c.Authenticator.allow_all = True
# Groups drive profiles and quotas; with OAuth they come from the identity provider.
c.JupyterHub.load_groups = {"ml-research": {"users": ["alice"]}}

# --- toolchains and profiles --------------------------------------------------------------
c.ProfileSpawner.toolchains = {
    "scipy": {
        "image": "quay.io/jupyter/scipy-notebook:2025-10-20",
        "local_python": None,  # local mode: the hub's own Python environment
        "description": "NumPy, pandas, scikit-learn, matplotlib",
    },
    "pytorch": {
        "image": "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20",
        "description": "PyTorch with CUDA 12",
    },
}

detected = detect_nvidia_gpus() if MODE == "local" else {}
if detected:
    GPU_TYPE, DEVICES = next(iter(detected.items()))
    gpu_label = f"{GPU_TYPE} ({len(DEVICES)} on this machine)"
else:
    GPU_TYPE = "nvidia-a100"
    DEVICES = [str(i) for i in range(int(os.environ.get("DSPLATFORM_GPUS", "4")))]
    gpu_label = "demo devices: no NVIDIA GPU detected on this machine"

c.ProfileSpawner.profiles = [
    {
        "slug": "cpu-small",
        "display_name": "CPU · small",
        "description": "Notebooks, pandas, scikit-learn",
        "toolchain": "scipy",
        "cpu": {"default": 1, "min": 0.5, "max": 2},
        "memory": {"default": "2G", "max": "4G"},
        "gpu": 0,
        "groups": ["*"],
        "idle_timeout": 3600,
        "datasets": ["iris@v1"],  # pulled into data/iris before the notebook opens
        "env": {},
    },
    {
        "slug": "gpu",
        "display_name": "GPU · deep learning",
        "description": f"PyTorch, 1-4 GPUs ({gpu_label})",
        "toolchain": "pytorch",
        "gpu_type": GPU_TYPE,
        "gpu": {"default": 1, "min": 1, "max": min(4, max(len(DEVICES), 1))},
        "cpu": {"default": 4, "min": 1, "max": 8},
        "memory": {"default": "16G", "max": "64G"},
        "disk": {"default": "20G", "max": "200G"},
        "groups": ["ml-research"],
        "idle_timeout": 1800,  # idle GPUs are costly: culled sooner
    },
]

# --- quotas -----------------------------------------------------------------------------
c.QuotaPolicy.default = {"servers": 1, "cpu": 2, "memory": "4G", "gpus": 0, "gpu_hours_per_week": 0}
c.QuotaPolicy.groups = {
    "ml-research": {"servers": 2, "cpu": 32, "memory": "128G", "gpus": 4, "gpu_hours_per_week": 40}
}
c.QuotaPolicy.users = {}  # e.g. {"alice": {"gpus": 8}}
c.QuotaPolicy.group_pools = {"ml-research": {"gpus": max(len(DEVICES), 1)}}
c.QuotaPolicy.pools = {GPU_TYPE: len(DEVICES)}

# --- datasets -----------------------------------------------------------------------------
# A demo DVC data registry (iris, churn; two versions each) is created on first start.
if MODE == "local" or os.environ.get("DSPLATFORM_DEMO_REGISTRY"):  # e.g. the kube emulator
    (STATE / "registries").mkdir(exist_ok=True)
    (STATE / "registries").chmod(0o700)  # the catalog service reads it for the sandboxes
    c.DatasetCatalog.registries = [str(ensure_demo_registry(STATE / "registries" / "demo"))]
c.DatasetCatalog.dataset_groups = {"churn": ["ml-research"]}
c.DatasetCatalog.metadata_dir = str(STATE / "hub-registry-metadata")
c.ProfileSpawner.dataset_cache_dir = str(STATE / "cache")  # shared by every sandbox

# --- experiments and models: MLflow server as a hub-managed service (local mode) ----------
c.PlatformMLflow.enabled = MODE == "local"
c.PlatformMLflow.port = int(os.environ.get("DSPLATFORM_MLFLOW_PORT", "5000"))
# experiment outputs, one DVC remote per user (private to their account)
c.ProfileSpawner.dvc_remote = str(STATE / "dvc-remote" / "{username}")

# --- the catalog service: datasets, models, prediction APIs at /services/catalog/ ----------
c.PlatformCatalog.enabled = MODE == "local"
c.PlatformCatalog.port = int(os.environ.get("DSPLATFORM_CATALOG_PORT", "10101"))
c.PlatformCatalog.predict_groups = ["product"]  # tokens with custom:dsplatform:predict
# models: "production" moves only through a reviewed promotion (four eyes)
c.ModelGovernance.protected_aliases = ["production"]
c.ModelGovernance.approver_groups = ["model-reviewers"]
c.JupyterHub.load_groups = {
    **c.JupyterHub.load_groups,
    "product": {"users": ["paul"]},
    "model-reviewers": {"users": ["rita"]},
}

# --- Dask clusters: dask-gateway as a hub-managed service at /services/dask-gateway/ -------
# Gateway().new_cluster() in a sandbox; every worker is admitted by the same quotas, group
# pools and GPU pool as servers and jobs, and runs as the user's account (local mode).
c.DaskClusters.enabled = MODE == "local"
c.DaskClusters.port = int(os.environ.get("DSPLATFORM_DASK_PORT", "10102"))
c.DaskClusters.scheduler_port = int(os.environ.get("DSPLATFORM_DASK_SCHEDULER_PORT", "10103"))
c.DaskClusters.api_port = int(os.environ.get("DSPLATFORM_DASK_API_PORT", "10104"))

# --- authentication: OAuth / OpenID Connect (DSPLATFORM_AUTH=oauth) ------------------------
# GenericOAuthenticator from OAUTH_* variables; the identity provider's groups claim becomes
# the user's hub groups at every login (and replaces the demo groups above).
configure_auth(c, os.environ)

# --- spawner ------------------------------------------------------------------------------
if MODE == "kubernetes":
    c.JupyterHub.spawner_class = "dsplatform-kube"
    c.KubeSpawner.cmd = ["jupyterhub-singleuser"]  # as z2jh: not the image's CMD
    if os.environ.get("DSPLATFORM_CHART_VALUES"):  # installed by the Helm chart
        configure_from_chart(c, os.environ["DSPLATFORM_CHART_VALUES"], os.environ)
else:
    c.JupyterHub.spawner_class = "dsplatform-local"
    c.JupyterHub.allow_named_servers = True
    c.LocalProfileSpawner.gpu_devices = {GPU_TYPE: DEVICES}

# A site file may add to or replace anything above (profiles, quotas, groups, ports).
EXTRA = os.environ.get("DSPLATFORM_EXTRA_CONFIG")
if EXTRA:
    load_subconfig(EXTRA)  # type: ignore[name-defined]  # noqa: F821

# Validate everything above (the hub stops here, naming the key, on a mistake) and wire
# the usage API and the idle culler. Keep this line last.
configure(c)

if (
    c.JupyterHub.authenticator_class == "shared-password"
    and MODE == "local"
    and os.environ.get("DSPLATFORM_BANNER") != "0"  # scripts/start prints it when ready
):
    print(
        "\n  dsplatform (local mode) at "
        f"{c.JupyterHub.bind_url}\n"
        "  log in with any user name and the password: "
        f"{c.SharedPasswordAuthenticator.user_password}\n"
        f"  (user 'admin' uses the admin password in {STATE / 'admin_password'};"
        " 'alice' is in group ml-research)\n",
        file=sys.stderr,
        flush=True,
    )
