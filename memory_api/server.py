"""Run the API under uvicorn (uvloop + httptools): the process `memload api` and `memload up` start.

Why this stack: Starlette is a thin ASGI layer (routing only, no per-request validation magic), uvicorn with uvloop
and httptools is the fastest conventional Python HTTP server, psycopg 3's AsyncConnectionPool gives non-blocking
PostgreSQL access with server-side binding and binary vectors, and orjson serialises responses ~5x faster than json.
"""

from __future__ import annotations

import logging
import os
import sys

from memload.config import Settings


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("memory_api")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def app_from_env():  # -> ASGIApp; uvicorn factory for API_WORKERS > 1 (each worker reads the environment)
    from memory_api.app import create_asgi

    configure_logging(os.environ.get("MEMLOAD_API_LOG_LEVEL", "INFO"))
    settings = Settings.from_env()
    assert settings.database_url, "DATABASE_URL must be set for worker processes"
    return create_asgi(settings, settings.database_url)


def serve(settings: Settings, database_url: str, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn shuts down gracefully and closes the pool)."""
    import uvicorn

    from memory_api.app import create_asgi

    configure_logging(os.environ.get("MEMLOAD_API_LOG_LEVEL", "INFO"))
    # Built before binding the port, so configuration errors (auth keys, limits, prod safety) fail as one line.
    app = create_asgi(settings, database_url)
    common = dict(host=host, port=port, loop="uvloop", http="httptools", lifespan="on", log_level="warning",
                  access_log=False, proxy_headers=False, server_header=False, date_header=False,
                  timeout_graceful_shutdown=5)
    if settings.api_workers <= 1:
        uvicorn.run(app, **common)  # type: ignore[arg-type]
        return
    os.environ["DATABASE_URL"] = database_url
    uvicorn.run("memory_api.server:app_from_env", factory=True, workers=settings.api_workers,
                **common)  # type: ignore[arg-type]
