"""The Starlette application: routes, request context (x-request-id, Server-Timing), body parsing, error mapping.

Check order per route (as an Aionis server):
- write:       body -> auth (401) -> identity (403) -> client limit -> tenant quota (429) -> validation (400) -> DB
- recall:      body -> auth -> identity -> validation -> client limit -> tenant quota -> DB
- recall_text: body -> provider (400 no_embedding_provider) -> auth -> identity -> validation -> recall limits ->
               recall_text embedding limits (client, then tenant; each may wait, then 429) -> embed (cache) -> DB

Every response carries `x-memload-api: <version>` and GET /health names the server, so tools can tell the reference
API from any other target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
import psycopg
from psycopg import errors as pge
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memload import contract as C
from memload.config import Settings
from memload.embedder import PROVIDER_NAME
from memload.identity import js_vector_literal, sha256_hex
from memload.version import MEMLOAD_VERSION, REFERENCE_SERVER_NAME
from memory_api import db
from memory_api.auth import Authenticator, apply_identity
from memory_api.embed_cache import QueryEmbedder
from memory_api.errors import INTERNAL_BODY, ApiError
from memory_api.openapi import build_openapi
from memory_api.ratelimit import EMBED_KIND, RateLimits, check_prod_safety, is_loopback
from memory_api.recall import RecallQuery, run_recall
from memory_api.schema import RECALL_REQUEST, RECALL_TEXT_REQUEST, WRITE_REQUEST
from memory_api.text import normalize_text, redact_pii
from memory_api.validation import validate
from memory_api.write import apply_write, prepare_write, resolve_tenancy

log = logging.getLogger("memory_api")

API_HEADER = (b"x-memload-api", MEMLOAD_VERSION.encode())
HEALTH_BODY = {"ok": True, "server": REFERENCE_SERVER_NAME, "version": MEMLOAD_VERSION}
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # oversized bodies up to this size are read and discarded before the 413
MAX_TX_ATTEMPTS = 3  # deadlock / serialization failures are retried (concurrent upserts of the same edges)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


class ApiState:
    """Everything a handler needs, built once per process."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        check_prod_safety(settings)
        self.settings = settings
        self.pool: AsyncConnectionPool = db.make_pool(database_url, settings)
        self.auth = Authenticator(settings.memory_auth_mode, settings.memory_api_keys_json,
                                  settings.memory_jwt_hs256_secret)
        self.limits = RateLimits(settings)
        provider = settings.embedding_provider.strip().lower()
        if provider not in ("fake", "none"):
            from memload.errors import ConfigError

            raise ConfigError(f"EMBEDDING_PROVIDER: only 'fake' and 'none' are available, got {provider!r}")
        self.has_provider = provider == "fake"
        self.embedder = QueryEmbedder(settings.recall_text_embed_cache_size, settings.recall_text_embed_cache_ttl_ms,
                                      PROVIDER_NAME)
        self.openapi = orjson.dumps(build_openapi())
        self.delay_s = max(0.0, settings.memload_inject_delay_ms) / 1000.0


# ------------------------------------------------------------------------------------------------ request context


class RequestContext:
    """Pure ASGI middleware: request id, Server-Timing and x-memload-api on every response, 500 envelope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1").strip()
                break
        rid = rid or str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = rid
        acc = db.start_timer()
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                total = (time.perf_counter() - t0) * 1000.0
                headers = [(k, v) for k, v in message.get("headers", []) if k not in (b"x-request-id",
                                                                                        b"server-timing")]
                headers.append(API_HEADER)
                headers.append((b"x-request-id", rid.encode("latin-1", "replace")))
                headers.append((b"server-timing", f"total;dur={total:.3f}, db;dur={acc[0]:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if started:
                return  # Starlette's ServerErrorMiddleware already answered 500 and _internal_error logged it
            log.exception("unhandled error request_id=%s %s %s", rid, scope.get("method"), scope.get("path"))
            resp = JSONResponse(INTERNAL_BODY, status_code=500)
            await resp(scope, receive, send_wrapper)


# ------------------------------------------------------------------------------------------------------ body parsing


async def read_json(request: Request) -> Any:
    """The JSON body: 415 unless application/json, 413 above 5 MiB, 400 invalid_json when empty/unparseable."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, C.E_UNSUPPORTED_MEDIA_TYPE,
                       f"Content-Type must be application/json (got {ctype or 'none'!r})")
    limit = C.BODY_LIMIT_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_LIMIT_BYTES:
        raise _too_large()  # too big to drain: the client sees the connection close
    chunks: list[bytes] = []
    size = 0
    too_large = False
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            # Keep reading (bounded) and discard, so the client can read the 413 instead of a connection reset.
            too_large = True
            if size > DRAIN_LIMIT_BYTES:
                break
            continue
        chunks.append(chunk)
    if too_large:
        raise _too_large()
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, C.E_INVALID_JSON, "request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, C.E_INVALID_JSON, f"body is not valid JSON: {exc}") from None


def _too_large() -> ApiError:
    return ApiError(413, C.E_PAYLOAD_TOO_LARGE, f"request body exceeds {C.BODY_LIMIT_BYTES} bytes")


# ------------------------------------------------------------------------------------------------------ DB errors


def map_db_error(exc: psycopg.Error) -> ApiError | None:
    """A client-caused database error as a 4xx (or 503 when the database is unavailable); None = a real fault."""
    diag = getattr(exc, "diag", None)
    constraint = getattr(diag, "constraint_name", None) or ""
    if isinstance(exc, pge.UniqueViolation):
        what = "a node with this client_id already exists with another id" if "client_id" in constraint \
            else "an edge or node with this id already exists with other content" if "pkey" in constraint \
            else "a unique key is already taken"
        return ApiError(409, C.E_CONFLICT, f"{_field_of(constraint)}: {what}", details={"constraint": constraint})
    if isinstance(exc, pge.ForeignKeyViolation):
        code = C.E_PARENT_COMMIT_NOT_FOUND if "parent" in constraint else C.E_EDGE_ENDPOINT_NOT_FOUND
        return ApiError(400, code, f"{_field_of(constraint)}: referenced row does not exist in this scope",
                        details={"constraint": constraint})
    if isinstance(exc, pge.CheckViolation):
        return ApiError(400, C.E_INVALID_REQUEST, f"{_field_of(constraint)}: violates {constraint}",
                        details={"constraint": constraint})
    if isinstance(exc, pge.DataError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ApiError(400, C.E_INVALID_REQUEST, f"(body): value rejected by the database: {first}")
    if isinstance(exc, pge.ProgramLimitExceeded):
        # An OperationalError subclass, but caused by the request: e.g. a scope or client_id too big for its index.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ApiError(400, C.E_INVALID_REQUEST, f"(body): value too large for the database: {first}")
    if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, pge.QueryCanceled):
        return ApiError(503, C.E_SERVICE_UNAVAILABLE, "database unavailable; retry later",
                        headers={"retry-after": "1"})
    return None


def _field_of(constraint: str) -> str:
    if constraint.startswith("memory_edges"):
        return "edges"
    if constraint.startswith("memory_nodes"):
        return "nodes"
    if constraint.startswith("memory_commits"):
        return "parent_commit_id"
    return "(body)"


async def in_transaction(pool: AsyncConnectionPool, fn: Callable[[psycopg.AsyncConnection], Awaitable[Any]],
                         *, best_effort_commit: bool = False) -> Any:
    """Run fn in one transaction on a pooled connection; retry deadlocks; map DB errors to 4xx/503.

    Pool wait, queries and COMMIT count as database time. best_effort_commit (recall: the transaction only writes
    its audit row, best effort, as Aionis): an error surfacing at COMMIT is logged and fn's result returned.
    """
    for attempt in range(1, MAX_TX_ATTEMPTS + 1):
        try:
            async with db.timed():
                conn = await pool.getconn()
        except PoolTimeout:
            raise ApiError(503, C.E_SERVICE_UNAVAILABLE, "database pool exhausted; retry later",
                           headers={"retry-after": "1"}) from None
        try:
            # Pipeline mode: BEGIN travels with the first statement and COMMIT with the last one's results,
            # saving two round trips per request (each one a context switch on a busy 2-core box).
            async with conn.pipeline():
                out = await fn(conn)
                try:
                    async with db.timed():
                        await conn.commit()
                except psycopg.Error as exc:
                    if not best_effort_commit:
                        raise
                    log.warning("recall audit insert failed: %s", str(exc).strip().splitlines()[0])
            return out
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await conn.rollback()
            if isinstance(exc, pge.DeadlockDetected | pge.SerializationFailure) and attempt < MAX_TX_ATTEMPTS:
                await asyncio.sleep(0.005 * attempt)
                continue
            if isinstance(exc, psycopg.Error) and not isinstance(exc, pge.DeadlockDetected | pge.SerializationFailure):
                mapped = map_db_error(exc)
                if mapped is not None:
                    raise mapped from None
            raise
        finally:
            await pool.putconn(conn)
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------------ handlers


def _state(request: Request) -> ApiState:
    return request.app.state.api


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _tenant_from_body(body: Any, default: str) -> str:
    if isinstance(body, dict) and isinstance(body.get("tenant_id"), str) and body["tenant_id"].strip():
        return body["tenant_id"].strip()
    return default


async def health(request: Request) -> Response:
    return JSONResponse(HEALTH_BODY)


async def openapi(request: Request) -> Response:
    return Response(_state(request).openapi, media_type="application/json")


async def write(request: Request) -> Response:
    st = _state(request)
    s = st.settings
    if st.delay_s:
        await asyncio.sleep(st.delay_s)
    body = await read_json(request)
    principal = st.auth.require(request.headers)
    body = apply_identity(body, request.headers, principal, "write")
    await st.limits.enforce_client("write", _client_ip(request), request.headers.get("x-admin-token"))
    await st.limits.enforce_tenant("write", _tenant_from_body(body, s.memory_tenant_id))
    clean = validate(WRITE_REQUEST, body)
    prepared = prepare_write(clean, s, st.has_provider)

    async def run(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        return await apply_write(conn, prepared, s)

    return JSONResponse(await in_transaction(st.pool, run))


def _debug_checks(request: Request, st: ApiState, clean: dict[str, Any]) -> bool:
    """include_embeddings needs return_debug, an admin token (or loopback, no ADMIN_TOKEN, not prod), limit <= 20."""
    if not clean["include_embeddings"]:
        return False
    if not clean["return_debug"]:
        raise ApiError(400, C.E_DEBUG_REQUIRES_RETURN_DEBUG, "include_embeddings requires return_debug=true")
    s = st.settings
    token = request.headers.get("x-admin-token", "")
    allowed = bool(s.admin_token and token and token == s.admin_token) or (
        not s.admin_token and s.app_env != "prod" and is_loopback(_client_ip(request)))
    if not allowed:
        raise ApiError(400, C.E_DEBUG_NOT_ALLOWED, "include_embeddings requires X-Admin-Token (or localhost in dev)")
    if clean["limit"] > C.DEBUG_EMBEDDINGS_MAX_LIMIT:
        raise ApiError(400, C.E_DEBUG_LIMIT_TOO_HIGH,
                       f"limit: debug embeddings mode requires limit <= {C.DEBUG_EMBEDDINGS_MAX_LIMIT}")
    return True


async def _recall_common(request: Request, st: ApiState, clean: dict[str, Any]) -> tuple[str, str, str, bool]:
    tenant, scope_public, key = resolve_tenancy(clean, st.settings)
    want_debug = _debug_checks(request, st, clean)
    ip, admin = _client_ip(request), request.headers.get("x-admin-token")
    await st.limits.enforce_client("recall", ip, admin)
    await st.limits.enforce_tenant("recall", tenant)
    if want_debug:
        await st.limits.enforce_client("debug_embeddings", ip, admin)
        await st.limits.enforce_tenant("debug_embeddings", tenant)
    return tenant, scope_public, key, want_debug


def _consumer(clean: dict[str, Any], key: str) -> str | None:
    v = clean.get(key)
    return v.strip() or None if isinstance(v, str) else None


async def _run_recall(st: ApiState, q: RecallQuery, endpoint: str) -> dict[str, Any]:
    """A recall on a pooled connection in autocommit: its statements are reads plus the audit row (best effort), so a
    transaction around them bought nothing (each statement of a READ COMMITTED transaction has its own snapshot)
    and cost BEGIN, COMMIT and the pipeline's flushes. Pool wait and queries count as database time."""
    try:
        async with db.timed():
            conn = await st.pool.getconn()
    except PoolTimeout:
        raise ApiError(503, C.E_SERVICE_UNAVAILABLE, "database pool exhausted; retry later",
                       headers={"retry-after": "1"}) from None
    try:
        await conn.set_autocommit(True)
        return await run_recall(conn, q, st.settings, endpoint)
    except psycopg.Error as exc:
        mapped = map_db_error(exc)
        if mapped is not None:
            raise mapped from None
        raise
    finally:
        with contextlib.suppress(Exception):
            await conn.set_autocommit(False)
        await st.pool.putconn(conn)


async def recall(request: Request) -> Response:
    st = _state(request)
    if st.delay_s:
        await asyncio.sleep(st.delay_s)
    body = await read_json(request)
    principal = st.auth.require(request.headers)
    body = apply_identity(body, request.headers, principal, "recall")
    clean = validate(RECALL_REQUEST, body)
    tenant, scope_public, key, _ = await _recall_common(request, st, clean)
    values = clean["query_embedding"]
    q = RecallQuery(tenant, scope_public, key, _consumer(clean, "consumer_agent_id"),
                    _consumer(clean, "consumer_team_id"), np.asarray(values, dtype=np.float32),
                    sha256_hex(js_vector_literal(values)), clean)
    return JSONResponse(await _run_recall(st, q, "recall"))


async def recall_text(request: Request) -> Response:
    st = _state(request)
    s = st.settings
    if st.delay_s:
        await asyncio.sleep(st.delay_s)
    body = await read_json(request)
    if not st.has_provider:
        raise ApiError(400, C.E_NO_PROVIDER, "Configure EMBEDDING_PROVIDER to use recall_text.")
    principal = st.auth.require(request.headers)
    body = apply_identity(body, request.headers, principal, "recall")
    clean = validate(RECALL_TEXT_REQUEST, body)
    tenant, scope_public, key, _ = await _recall_common(request, st, clean)
    # Every recall_text costs an embedding token, cache hit or not (an Aionis server checks before its cache).
    await st.limits.enforce_client(EMBED_KIND, _client_ip(request), request.headers.get("x-admin-token"))
    await st.limits.enforce_tenant(EMBED_KIND, tenant)
    text = normalize_text(clean["query_text"], s.max_text_len)
    if s.pii_redaction:
        text = redact_pii(text)
    try:
        qv, _hit = await st.embedder.embed(text)
    except Exception as exc:  # the fake provider cannot fail; a real one maps to Aionis's upstream codes
        log.warning("recall_text embedding failed request_id=%s: %s", request.scope["state"]["request_id"], exc)
        raise ApiError(503, C.E_UPSTREAM_UNAVAILABLE, "embedding provider unavailable; retry later",
                       headers={"retry-after": "1"}) from None
    q = RecallQuery(tenant, scope_public, key, _consumer(clean, "consumer_agent_id"),
                    _consumer(clean, "consumer_team_id"), qv.vector, qv.query_sha256, clean)
    out = await _run_recall(st, q, "recall_text")
    out["query"] = {"text": text, "embedding_provider": st.embedder.provider_name}
    return JSONResponse(out)


# ------------------------------------------------------------------------------------------------------ app


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status >= 500:
        log.warning("%s %s -> %d %s request_id=%s", request.method, request.url.path, exc.status, exc.code,
                    request.scope["state"].get("request_id"))
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err = ApiError(404, C.E_NOT_FOUND, f"route {request.method} {request.url.path} not found")
    elif exc.status_code == 405:
        err = ApiError(405, C.E_METHOD_NOT_ALLOWED, f"method {request.method} not allowed on {request.url.path}",
                       headers=dict(exc.headers or {}))
    else:
        err = ApiError(exc.status_code, "http_error", str(exc.detail))
    return error_response(err)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error request_id=%s %s %s", request.scope.get("state", {}).get("request_id"),
              request.method, request.url.path, exc_info=exc)
    return JSONResponse(INTERNAL_BODY, status_code=500)


def create_app(settings: Settings, database_url: str) -> Starlette:
    """The ASGI app; the pool opens in the lifespan (fails startup when the database is unreachable)."""
    state = ApiState(settings, database_url)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.pool.open(wait=True, timeout=15)
        log.info("memory api ready: auth=%s provider=%s pool_max=%d ef_search=%d iterative_scan=%s scope_path=%s",
                 settings.memory_auth_mode, "fake" if state.has_provider else "none", settings.db_pool_max,
                 settings.hnsw_ef_search, settings.hnsw_iterative_scan, settings.recall_scope_path)
        try:
            yield
        finally:
            await state.pool.close()

    app = Starlette(
        routes=[
            Route(C.HEALTH, health, methods=["GET"]),
            Route(C.OPENAPI, openapi, methods=["GET"]),
            Route(C.WRITE, write, methods=["POST"]),
            Route(C.RECALL, recall, methods=["POST"]),
            Route(C.RECALL_TEXT, recall_text, methods=["POST"]),
        ],
        # Exception: the 500 body Starlette's ServerErrorMiddleware sends (RequestContext logs it with the request id).
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.api = state
    return app


def create_asgi(settings: Settings, database_url: str) -> ASGIApp:
    """The app wrapped in RequestContext (outermost, so even Starlette's own errors get the headers)."""
    return RequestContext(create_app(settings, database_url))
