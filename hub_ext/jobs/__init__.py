"""Notebook jobs: a notebook run by papermill under the same admission ledger as servers.

A job is a JupyterHub named server ``job-<id>`` whose spawner runs
``python -m server_ext.job_runner`` instead of ``jupyterhub-singleuser`` (same account,
workspace, cgroups, devices, preload and sandbox environment); its grant is of kind ``job``
(CPU, memory, GPUs and GPU-hours; not the ``servers`` quota). Records live in the hub's
database (:mod:`.records`); :mod:`.manager` submits, queues (:mod:`.queue`), cancels and
records the end; REST in :mod:`hub_ext.api.jobs`.
"""
