"""The seeded vectors: clustered around the fake embeddings of the topic titles, or one copied vector
(the Aionis kit's seeder copies a single vector into every node).

Clustered: topic k's centroid is `fake_embed("perf topic #k")`, exactly what `recall_text` with that title embeds
through the fake provider, so the question lands on its topic and the topic's events. Event k (topic
1+((k-1) mod T)) is its centroid plus isotropic Gaussian noise of expected norm `noise`·‖centroid‖.

Deterministic: the noise comes from one PCG64 stream seeded with `seed`, drawn in fixed chunks of CHUNK events in
event order, so event k's vector depends only on (seed, noise, T, k). Chunks are produced by a background thread
(numpy releases the GIL while filling), overlapping generation with the COPY that consumes them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from memload.embedder import EMBEDDING_DIM, fake_embed_many

CHUNK = 8192  # events per generated block; part of the determinism contract (changing it changes the vectors)
_CENTROID_BATCH = 1024


def topic_title(k: int) -> str:
    return f"perf topic #{k}"


def topic_of_event(k: int, topics: int) -> int:
    """Event k (1-based) belongs to topic 1+((k-1) mod T) (peer topology)."""
    return 1 + (k - 1) % topics


def centroids(topics: int) -> np.ndarray:
    """float32 (T, 1536): row k-1 = fake embedding of topic k's title."""
    out = np.empty((topics, EMBEDDING_DIM), dtype=np.float32)
    for start in range(0, topics, _CENTROID_BATCH):
        stop = min(topics, start + _CENTROID_BATCH)
        out[start:stop] = fake_embed_many([topic_title(k) for k in range(start + 1, stop + 1)])
    return out


@dataclass(frozen=True)
class VectorPlan:
    """How to produce the vector of every seeded node."""

    mode: str  # "clustered" | "copy"
    topics: int
    events: int
    seed: int
    noise: float
    source_vector: np.ndarray  # float32 (1536,): the copied vector (copy mode); unused when clustered

    def topic_vectors(self) -> np.ndarray:
        if self.mode == "copy":
            return np.broadcast_to(self.source_vector, (self.topics, EMBEDDING_DIM))
        return centroids(self.topics)

    def event_chunks(self, topic_vectors: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first event number, float32 (n, 1536) block) in event order, prefetched one block ahead."""
        if self.mode == "copy":
            for start in range(1, self.events + 1, CHUNK):
                n = min(CHUNK, self.events - start + 1)
                yield start, np.broadcast_to(self.source_vector, (n, EMBEDDING_DIM))
            return
        cents = topic_vectors if topic_vectors is not None else centroids(self.topics)
        yield from _prefetch(self._clustered_blocks(cents))

    def _clustered_blocks(self, cents: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        rng = np.random.Generator(np.random.PCG64(self.seed))
        sigma = (self.noise * np.linalg.norm(cents, axis=1) / np.sqrt(EMBEDDING_DIM)).astype(np.float32)
        for start in range(1, self.events + 1, CHUNK):
            n = min(CHUNK, self.events - start + 1)
            topic_idx = (np.arange(start, start + n) - 1) % self.topics
            block = rng.standard_normal((n, EMBEDDING_DIM), dtype=np.float32)
            block *= sigma[topic_idx, None]
            block += cents[topic_idx]
            yield start, block


def _prefetch(blocks: Iterator[tuple[int, np.ndarray]], depth: int = 2) -> Iterator[tuple[int, np.ndarray]]:
    """Run a generator in a daemon thread, `depth` items ahead of the consumer."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in blocks:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # surfaced in the consumer
            put(exc)

    t = threading.Thread(target=work, name="seed-vectors", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
