"""The Aionis kit's perf-seed topology and values, as COPY rows with deterministic ids.

T topics ('perf topic #k', 'synthetic perf topic #k', salience/importance 0.4, confidence 0.9), E events (no title,
'synthetic perf event #k', 0.5/0.5/0.8), all hot, ready, `embedding_model` 'perf:seed', shared lane. Event k belongs
to topic 1+((k-1) mod T): edge `part_of` event→topic (0.75/0.75) and `derived_from` topic→event (1.0/1.0), decay 0.01.

Ids are drawn from a PCG64 stream keyed by (seed, scope key, parent commit hash): the same seed on the same scope
state gives the same ids; a second seed appended without --reset chains to a new parent, so its ids never collide
with the first one's. (Hashing a name per id, as the API's stable_uuid does, cost ~5 s per 3·10^5 ids here.)
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from seeding.vectors import topic_of_event, topic_title

EMBEDDING_MODEL = "perf:seed"
ACTOR = "job:perf_seed"

COMMIT_COLUMNS = ("id", "scope", "parent_id", "input_sha256", "diff_json", "actor", "commit_hash")
NODE_COLUMNS = ("id", "scope", "type", "tier", "title", "text_summary", "embedding", "salience", "importance",
                "confidence", "commit_id", "embedding_status", "embedding_ready_at", "embedding_model", "memory_lane")
# Binary COPY carries no type oids, only each value's binary form: an enum's is its label's text and a uuid's its
# 16 bytes, so enum columns are dumped as text and uuid columns as bytea of the raw 16 bytes (no uuid.UUID objects
# for 3·10^5 ids).
NODE_TYPES = ("bytea", "text", "text", "text", "text", "text", "vector", "float4", "float4", "float4", "bytea", "text",
              "timestamptz", "text", "text")
EDGE_COLUMNS = ("id", "scope", "type", "src_id", "dst_id", "weight", "confidence", "decay_rate", "commit_id")
EDGE_TYPES = ("bytea", "text", "text", "bytea", "bytea", "float4", "float4", "float4", "bytea")

TOPIC_SCORES = (0.4, 0.4, 0.9)  # salience, importance, confidence
EVENT_SCORES = (0.5, 0.5, 0.8)
PART_OF = ("part_of", 0.75, 0.75)  # event -> topic
DERIVED_FROM = ("derived_from", 1.0, 1.0)  # topic -> event
DECAY_RATE = 0.01


class IdScheme:
    """Every id of one run, drawn at once: UUIDv4-shaped 16-byte values from a PCG64 stream keyed by
    (seed, scope key, parent commit hash), in a fixed order: commit, topics 1..T, events 1..E, part_of edges 1..E,
    derived_from edges 1..E."""

    def __init__(self, scope_key: str, seed: int, parent_hash: str, topics: int, events: int) -> None:
        salt = np.frombuffer(hashlib.sha256(f"{scope_key}\0{parent_hash}".encode()).digest()[:16], dtype=np.uint32)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *salt.tolist()])))
        raw = np.frombuffer(rng.bytes(16 * (1 + topics + 3 * events)), dtype=np.uint8).reshape(-1, 16).copy()
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
        self.topics, self.events, self._raw = topics, events, raw

    def _slice(self, start: int, n: int) -> list[bytes]:
        return [r.tobytes() for r in self._raw[start:start + n]]

    def commit(self) -> uuid.UUID:
        return uuid.UUID(bytes=self._raw[0].tobytes())

    def topic_ids(self) -> list[bytes]:
        return self._slice(1, self.topics)

    def event_ids(self) -> list[bytes]:
        return self._slice(1 + self.topics, self.events)

    def edge_ids(self, kind: str) -> list[bytes]:
        offset = 1 + self.topics + (self.events if kind == "part_of" else 2 * self.events)
        return self._slice(offset, self.events)


@dataclass
class RowFactory:
    """Builds the node and edge rows of one seed run."""

    ids: IdScheme
    scope_key: str
    ready_at: datetime

    def __post_init__(self) -> None:
        self.topics, self.events = self.ids.topics, self.ids.events
        self.commit_id = self.ids.commit()
        self._commit = self.commit_id.bytes
        self.topic_ids = self.ids.topic_ids()
        self.event_ids = self.ids.event_ids()  # used twice: nodes, then edges

    def topic_uuids(self) -> list[uuid.UUID]:
        return [uuid.UUID(bytes=b) for b in self.topic_ids]

    def topic_rows(self, vectors: np.ndarray) -> Iterator[tuple]:
        s, i, c = TOPIC_SCORES
        for k in range(1, self.topics + 1):
            yield (self.topic_ids[k - 1], self.scope_key, "topic", "hot", topic_title(k), f"synthetic perf topic #{k}",
                   vectors[k - 1], s, i, c, self._commit, "ready", self.ready_at, EMBEDDING_MODEL, "shared")

    def event_rows(self, start: int, vectors: np.ndarray) -> Iterator[tuple]:
        s, i, c = EVENT_SCORES
        for j in range(vectors.shape[0]):
            k = start + j
            yield (self.event_ids[k - 1], self.scope_key, "event", "hot", None, f"synthetic perf event #{k}",
                   vectors[j], s, i, c, self._commit, "ready", self.ready_at, EMBEDDING_MODEL, "shared")

    def edge_rows(self) -> Iterator[tuple]:
        """2E edges, event order: part_of(event→topic) then derived_from(topic→event) for each event."""
        key, commit = self.scope_key, self._commit
        part_of, derived = self.ids.edge_ids("part_of"), self.ids.edge_ids("derived_from")
        for k in range(1, self.events + 1):
            ev = self.event_ids[k - 1]
            tp = self.topic_ids[topic_of_event(k, self.topics) - 1]
            yield (part_of[k - 1], key, PART_OF[0], ev, tp, PART_OF[1], PART_OF[2], DECAY_RATE, commit)
            yield (derived[k - 1], key, DERIVED_FROM[0], tp, ev, DERIVED_FROM[1], DERIVED_FROM[2], DECAY_RATE, commit)
