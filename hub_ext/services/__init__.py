"""Hub-managed services: the catalog (datasets, models, predictions, the MLflow UI route),
the MLflow tracking server and the per-profile idle culler, each with its configuration
class and the ``wire(c)`` that adds it to the hub."""
