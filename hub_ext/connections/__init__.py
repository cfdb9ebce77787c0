"""Data from the lake and the warehouse: admin-defined connections, per group, imported as
versioned datasets with lineage, on the platform side (credentials never reach a sandbox).

:mod:`.settings` declares and validates ``c.DataConnections``; :mod:`.sources` reads S3 and
SQL sources (the only code that holds a credential); :mod:`.imports` runs one import in its
own process and publishes it into the platform-managed registry (:mod:`.registry`); the
catalog service's routes are :mod:`hub_ext.services.catalog.connection_handlers`.
"""
