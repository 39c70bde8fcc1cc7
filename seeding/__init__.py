"""Seeding: the Aionis kit's perf dataset built fast and atomically (`memload seed`), scope purge
(`memload purge`) and the ANN quality check (`memload ann-check`).

Modules by concern: `params` (flags, bounds, validation), `vectors` (clustered / copied vectors), `rows` (topology,
ids, COPY rows), `schema` (SQLAlchemy Core tables, partition catalog), `partitions` (load-then-index-then-attach),
`purge`, `seed` (the orchestration and its one transaction), `query_set`, `ann_check`, `progress` (stderr).
Vectors come from memload.embedder, the fake provider the API uses, so `recall_text` with a topic title lands on
that topic's cluster.
"""
