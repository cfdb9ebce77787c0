"""The catalog service (``python -m hub_ext.services.catalog``): datasets, models, the
prediction gateway, per-model OpenAPI and the MLflow UI route, under ``/services/catalog/``."""
