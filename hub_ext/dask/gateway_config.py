"""dask-gateway-server's config file for the hub-managed ``dask-gateway`` service.

The hub runs ``python -m dask_gateway_server -f <this file>`` with the values of
``c.DaskClusters`` in ``DSPLATFORM_DASK_*`` (:func:`hub_ext.dask.settings.gateway_service`)
and its own ``JUPYTERHUB_*`` service variables. ``c`` is dask-gateway-server's config.
"""

import os

c = get_config()  # type: ignore[name-defined]  # noqa: F821 (traitlets config file)

env = os.environ
c.DaskGateway.backend_class = "hub_ext.dask.backend.PlatformBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.DaskGateway.address = env["DSPLATFORM_DASK_API_ADDRESS"]  # the private API, behind the proxy
c.Proxy.address = env["DSPLATFORM_DASK_ADDRESS"]
c.Proxy.tcp_address = env["DSPLATFORM_DASK_TCP_ADDRESS"]
c.Proxy.prefix = env["DSPLATFORM_DASK_PREFIX"]
# users need access:services!service=dask-gateway (every user's role and sandbox token)
c.JupyterHubAuthenticator.jupyterhub_service_name = env.get(
    "JUPYTERHUB_SERVICE_NAME", "dask-gateway"
)
c.PlatformBackend.clusters_directory = env["DSPLATFORM_DASK_DIR"]
c.PlatformBackend.cluster_heartbeat_period = int(env["DSPLATFORM_DASK_HEARTBEAT"])
c.PlatformBackend.check_timeouts_period = float(env["DSPLATFORM_DASK_HEARTBEAT"])
c.PlatformBackend.stop_clusters_on_shutdown = True  # their workers' grants go back
c.PlatformClusterConfig.cluster_max_workers = int(env["DSPLATFORM_DASK_MAX_WORKERS"])
c.PlatformClusterConfig.idle_timeout = float(env["DSPLATFORM_DASK_IDLE_TIMEOUT"])
