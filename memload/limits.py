"""Rate-limit profiles of a memory API, under the Aionis variable names, and a plain account of what they enforce.

One home for the benchmark profile: `memload matrix` (local stack) and `memload up --limits benchmark` both start
the reference API with it, and any Aionis server given the same variables throttles the same way.

- `contract`: nothing set here; the server's defaults (or your env file) apply.
- `benchmark`: the Aionis kit's benchmark profile (recall 200/400 per client and 400/800 per tenant, write 80/160
  and 120/240) plus recall_text embedding limits well above the recall quota, so a benchmark never measures the
  embedding limiter (a recall_text request passes the recall quota before it reaches the embedding limiter).
- `off`: both layers disabled (RATE_LIMIT_ENABLED=false, TENANT_QUOTA_ENABLED=false): the server's capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

from memload.config import Settings

BENCHMARK_RATE_LIMITS: dict[str, str] = {
    "RECALL_RATE_LIMIT_RPS": "200", "RECALL_RATE_LIMIT_BURST": "400",
    "TENANT_RECALL_RATE_LIMIT_RPS": "400", "TENANT_RECALL_RATE_LIMIT_BURST": "800",
    "WRITE_RATE_LIMIT_RPS": "80", "WRITE_RATE_LIMIT_BURST": "160",
    "TENANT_WRITE_RATE_LIMIT_RPS": "120", "TENANT_WRITE_RATE_LIMIT_BURST": "240",
    "RECALL_TEXT_EMBED_RATE_LIMIT_RPS": "2000", "RECALL_TEXT_EMBED_RATE_LIMIT_BURST": "4000",
    "TENANT_RECALL_TEXT_EMBED_RATE_LIMIT_RPS": "2000", "TENANT_RECALL_TEXT_EMBED_RATE_LIMIT_BURST": "4000",
}

OFF_RATE_LIMITS: dict[str, str] = {"RATE_LIMIT_ENABLED": "false", "TENANT_QUOTA_ENABLED": "false"}

LIMIT_PROFILES: dict[str, dict[str, str]] = {
    "contract": {},
    "benchmark": BENCHMARK_RATE_LIMITS,
    "off": OFF_RATE_LIMITS,
}


@dataclass(frozen=True)
class Layer:
    """One token bucket family: rate (tokens/s), burst, max wait before a 429 (ms), and whether it is on."""

    name: str
    scope: str  # "per tenant" | "per client"
    enabled: bool
    rps: float
    burst: float
    max_wait_ms: int
    loopback_bypassed: bool


def layers(s: Settings) -> list[Layer]:
    """The layers the reference API enforces with settings `s`, in the order a request meets them."""
    client_on, tenant_on = s.rate_limit_enabled, s.tenant_quota_enabled
    bypass = s.rate_limit_bypass_loopback and s.app_env != "prod"
    return [
        Layer("recall", "per tenant", tenant_on, s.tenant_recall_rate_limit_rps, s.tenant_recall_rate_limit_burst,
              0, False),
        Layer("write", "per tenant", tenant_on, s.tenant_write_rate_limit_rps, s.tenant_write_rate_limit_burst,
              s.tenant_write_rate_limit_max_wait_ms, False),
        Layer("recall_text embed", "per tenant", tenant_on, s.tenant_recall_text_embed_rate_limit_rps,
              s.tenant_recall_text_embed_rate_limit_burst, s.tenant_recall_text_embed_rate_limit_max_wait_ms, False),
        Layer("recall", "per client", client_on, s.recall_rate_limit_rps, s.recall_rate_limit_burst, 0, bypass),
        Layer("write", "per client", client_on, s.write_rate_limit_rps, s.write_rate_limit_burst,
              s.write_rate_limit_max_wait_ms, bypass),
        Layer("recall_text embed", "per client", client_on, s.recall_text_embed_rate_limit_rps,
              s.recall_text_embed_rate_limit_burst, s.recall_text_embed_rate_limit_max_wait_ms, False),
    ]


def describe(s: Settings) -> list[str]:
    """One line per layer, e.g. `per tenant  recall             30 req/s, burst 60`."""
    out = []
    for layer in layers(s):
        if not layer.enabled:
            what = "off"
        else:
            what = f"{layer.rps:g} req/s, burst {layer.burst:g}"
            if layer.max_wait_ms:
                what += f", waits up to {layer.max_wait_ms} ms before a 429"
            if layer.loopback_bypassed:
                what += " (not applied to loopback callers: RATE_LIMIT_BYPASS_LOOPBACK)"
        out.append(f"{layer.scope:<10}  {layer.name:<17}  {what}")
    return out
