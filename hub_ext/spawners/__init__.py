"""Spawners: turn an admitted grant into a sandbox.

``base`` (:class:`ProfileSpawner`: admission, state, sandbox environment, the options
form), ``local`` (``dsplatform-local``: processes on this machine, with ``os_limits`` and
``gpus``) and ``kube`` (``dsplatform-kube``: KubeSpawner pods from ``kube_pod``, failing fast
through ``kube_failures``).
"""
