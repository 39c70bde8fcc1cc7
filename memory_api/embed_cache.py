"""Query embeddings for recall_text: the shared fake embedder behind an LRU+TTL cache with single-flight.

Key = `<provider>:<sha256(text)>` (as Aionis). Concurrent misses for one key share one computation. An entry also
keeps what every recall needs and is costly in Python: the float32 array bound to the query and the sha256 of the
Aionis-formatted vector literal (recorded in memory_recall_audit.query_sha256).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from memload.embedder import PROVIDER_NAME, fake_embed_many
from memload.identity import js_vector_literal, sha256_hex


@dataclass(frozen=True)
class QueryVector:
    vector: np.ndarray  # float32, shape (dim,)
    query_sha256: str  # sha256 of the JS-formatted literal of the float64 vector

    @classmethod
    def from_values(cls, values: list[float] | np.ndarray) -> QueryVector:
        arr = np.asarray(values, dtype=np.float64)
        return cls(arr.astype(np.float32), sha256_hex(js_vector_literal(arr.tolist())))


class LruTtlCache:
    """A bounded mapping whose entries expire `ttl_s` after insertion; least recently used evicted first."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self.max_entries = max(1, max_entries)
        self.ttl_s = ttl_s
        self._data: OrderedDict[str, tuple[float, QueryVector]] = OrderedDict()

    def get(self, key: str) -> QueryVector | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def set(self, key: str, value: QueryVector) -> None:
        self._data[key] = (time.monotonic() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class QueryEmbedder:
    """embed(text) -> (QueryVector, cache_hit); `compute` is the provider call (fake embedder by default)."""

    def __init__(
        self,
        max_entries: int,
        ttl_ms: int,
        provider_name: str = PROVIDER_NAME,
        compute: Callable[[str], Awaitable[list[float] | np.ndarray]] | None = None,
    ) -> None:
        self.provider_name = provider_name
        self.cache = LruTtlCache(max_entries, ttl_ms / 1000.0)
        self._inflight: dict[str, asyncio.Future[QueryVector]] = {}
        self._compute = compute or self._fake
        self.computations = 0  # provider calls made (tests check single-flight with it)

    @staticmethod
    async def _fake(text: str) -> np.ndarray:
        return fake_embed_many([text])[0]

    async def embed(self, text: str) -> tuple[QueryVector, bool]:
        key = f"{self.provider_name}:{sha256_hex(text)}"
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending), False
        fut: asyncio.Future[QueryVector] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            self.computations += 1
            values = await self._compute(text)
            qv = QueryVector.from_values(values)
            if qv.vector.shape != (1536,):
                raise ValueError(f"invalid query embedding: expected dim=1536, got {qv.vector.shape}")
            self.cache.set(key, qv)
            fut.set_result(qv)
            return qv, False
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: joiners re-raise it, nobody else must
            raise
        finally:
            del self._inflight[key]
