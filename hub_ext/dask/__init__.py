"""Dask clusters on the governed pool: dask-gateway as a hub service (:mod:`.settings`), its
backend that admits every worker through the hub's ledger (:mod:`.backend`, in the
gateway's process) and the workers' grants in the hub (:mod:`.grants`)."""
