"""Operating the platform: Prometheus metrics of the hub and the prediction gateway, input
drift against the training data found from lineage, and the admin usage view's data.

Pure arithmetic (drift statistics, recent-call statistics, bounded input windows) lives in
:mod:`.drift` and :mod:`.window`; :mod:`.gateway_metrics` and :mod:`.hub_metrics` own the
Prometheus collectors; :mod:`.reference` finds a model version's reference data.
"""
