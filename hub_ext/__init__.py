"""dsplatform, JupyterHub side: profiles, quotas, spawners, usage API, idle culling.

Admins call :func:`hub_ext.setup.configure` at the end of ``jupyterhub_config.py``;
it validates profiles and quotas (the hub refuses to start on a mistake) and wires
the usage API, the spawn form and the idle culler into the hub.
"""

__version__ = "0.1.0"
