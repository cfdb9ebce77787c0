"""``python -m hub_ext.services.catalog``: run the catalog service (the hub starts it)."""

from hub_ext.services.catalog.app import main

main()
