"""Locust workload for Aionis-compatible memory APIs: recall and write users (the Aionis kit's perf-benchmark cases).

    locust -f locustfiles/memory_users.py --host http://127.0.0.1:3001            # web UI
    locust -f locustfiles/memory_users.py --host ... --headless -u 16 -r 16 -t 1m --csv out/locust

Speaks only HTTP (no import of the reference API): any Aionis-compatible server can be measured. Options of the
suite (`--scope`, `--tenant-id`, `--duration-s`, `--allow-empty-scope`, `--pace-ms`, `--adaptive`, `--query-set`,
`--recall-requests`, `--arrival-rate`, ...; see `locust -f locustfiles/memory_users.py --help`, group "memload suite
options") all have MEMLOAD_* env twins; Locust's own `--profile` picks the Aionis kit's profile. Auth headers and
bodies come from memload.client: PERF_API_KEY (else the first key of MEMORY_API_KEYS_JSON) as x-api-key,
PERF_AUTH_BEARER as a bearer token. Before any user starts, a preflight checks `GET /health` and that
the scope has recallable memories (see locustfiles/preflight.py). `memload bench` drives this file headless.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust import events, tag, task

from locustfiles import runtime
from locustfiles.base_user import SuiteUser
from locustfiles.write_ack import default_log
from memload.client import recall_body, recall_text_body, write_body, write_client_id
from memload.contract import RECALL, RECALL_TEXT, WRITE

runtime.install(events)


class RecallUser(SuiteUser):
    """recall_text with the scope's query set (or the Aionis kit's constant query); optionally /recall with vectors."""

    endpoint_class = "recall"
    weight = 3

    _flip = 0

    @tag("recall")
    @task
    def recall(self) -> None:
        self.check_running()
        suite = self.suite
        cfg = suite.cfg
        assert cfg is not None
        text, expected = suite.next_query()
        use_vectors = cfg.recall_endpoint == "recall" or (cfg.recall_endpoint == "mixed" and self._flip % 2 == 1)
        self._flip += 1
        if use_vectors:
            self.send("recall", "POST", RECALL, recall_body(cfg.tenant_id, cfg.scope, text, cfg.recall_limit),
                      expected_min_seeds=expected)
        else:
            self.send("recall_text", "POST", RECALL_TEXT,
                      recall_text_body(cfg.tenant_id, cfg.scope, text, cfg.recall_limit), expected_min_seeds=expected)


class WriteUser(SuiteUser):
    """The Aionis kit's write: one event node, unique input_text and client_id per request, shared lane."""

    endpoint_class = "write"
    weight = 1

    @tag("write")
    @task
    def write(self) -> None:
        self.check_running()
        suite = self.suite
        cfg = suite.cfg
        assert cfg is not None
        i = suite.next_write_index()
        body = write_body(cfg.tenant_id, cfg.scope, suite.run_tag, i, cfg.embed_on_write)
        ack = write_client_id(suite.run_tag, i) if default_log().enabled else None  # --verify-writes
        self.send("write", "POST", WRITE, body, expected_nodes=1, ack_client_id=ack)
