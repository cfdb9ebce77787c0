"""Model serving outside the catalog: each served (model, version) in its own worker process,
unprivileged, without any hub credential (:mod:`.worker`); a bounded pool of them on this
machine (:mod:`.pool`) or in the chart's ``serving`` Deployment (:mod:`.manager`, reached
with :mod:`.remote`). The catalog only downloads a version's files and forwards requests."""
