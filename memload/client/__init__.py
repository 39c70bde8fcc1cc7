"""How the kit talks to a memory API: the routes, the auth headers, the request bodies and a small JSON client.

Every tool that sends requests to the target takes these from here, so they send the same credentials and the same
bytes: the Locust users (headers, bodies and routes only: their own transport times the load), the matrix, the
worker benchmark's backlog writes and the developer benchmarks. The routes themselves live in `memload.contract`.
"""

from memload.client.api import ApiClient, Reply, RequestFailed
from memload.client.auth import AUTH_ENV_VARS, api_key, auth_headers, json_headers
from memload.client.bodies import recall_body, recall_text_body, write_body, write_client_id
from memload.contract import HEALTH, RECALL, RECALL_TEXT, WRITE

__all__ = [
    "AUTH_ENV_VARS", "HEALTH", "RECALL", "RECALL_TEXT", "WRITE", "ApiClient", "Reply", "RequestFailed", "api_key",
    "auth_headers", "json_headers", "recall_body", "recall_text_body", "write_body", "write_client_id",
]
