"""The anchor for bench_spawn: a plain JupyterHub with SimpleLocalProcessSpawner.

Everything a stock hub needs and nothing of dsplatform: same proxy command, same
single-user defaults (``/lab``, ``--allow-root`` as we run as root), 127.0.0.1 and free
ports, a shared-password authenticator and an admin service token like tests/hub.py.
bench/bench_spawn.py starts it with these environment variables:

  BENCH_STATE_DIR         state (database, cookie secret, home directories)
  BENCH_PORT, BENCH_HUB_PORT, BENCH_PROXY_API_PORT   ports
  BENCH_ADMIN_TOKEN       api_token of the "test-admin" service
"""

import os
import sys
from pathlib import Path

c = get_config()  # type: ignore[name-defined]  # noqa: F821

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ["BENCH_STATE_DIR"]).resolve()
STATE.mkdir(parents=True, exist_ok=True)
(STATE / "home").mkdir(exist_ok=True)

c.JupyterHub.bind_url = f"http://127.0.0.1:{os.environ['BENCH_PORT']}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["BENCH_HUB_PORT"])
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['BENCH_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.auth_token = "bench-anchor-proxy-token-0123456789"
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
local_chp = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
if local_chp.exists():
    c.ConfigurableHTTPProxy.command = [str(local_chp)]
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")

c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = "bench-anchor-password"
c.Authenticator.allow_all = True

c.JupyterHub.spawner_class = "simple"  # SimpleLocalProcessSpawner
c.SimpleLocalProcessSpawner.home_dir_template = str(STATE / "home" / "{username}")
# the same interpreter the dsplatform spawner uses for a toolchain without local_python
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--allow-root"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60

c.JupyterHub.services = [
    {"name": "test-admin", "api_token": os.environ["BENCH_ADMIN_TOKEN"]},
]
c.JupyterHub.load_roles = [
    {
        "name": "test-admin",
        "services": ["test-admin"],
        "scopes": [
            "admin:users", "admin:servers", "admin:server_state", "tokens",
            "admin:groups", "list:users", "read:users", "read:servers",
        ],
    }
]  # fmt: skip
