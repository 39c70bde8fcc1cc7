"""The reference memory API (Aionis v0.1.0 wire-compatible), served by `memload api`.

Modules by concern: app (routes, request context, transactions), schema/validation/openapi (one request schema drives
validation and /openapi.json), auth, ratelimit, write, recall + recall_sql + context, embed_cache, text, db, server.
Imports only the shared core `memload`, never the tooling (scripts, seeding, locustfiles, analysis).
"""
