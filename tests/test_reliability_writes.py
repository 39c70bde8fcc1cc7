"""No acknowledged write is lost: `memload bench --verify-writes` under a mixed load.

A write bench (open model, 20 writes/s, auto_embed so each write also enqueues its outbox job) runs while a second
bench sends recalls to the same scope. The tenant write quota is set a little below the offered rate, so some writes
get a 429: those must leave nothing behind. Afterwards the bench's own check must report every 200-acknowledged
write in the database with its commit, and the test re-checks it independently with SQL. A 60 s load is
cut to 20 s (400 writes) to keep the suite within its time budget on 2 cores.

A negative control proves the checker can fail: a deleted acknowledged write, a half-deleted one and a rejected
write that got in anyway are each detected.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from memload.net import free_port
from scripts.verify_writes import read_acks, verify
from tests.support.api import start_api
from tests.support.reliability import bench_result, report, start_bench

WRITES, RATE = 400, 20.0  # 20 s of writes


@pytest.mark.slow
def test_every_acknowledged_write_is_in_the_database(fresh_db_url: str, tmp_path: Path) -> None:
    url = fresh_db_url
    scope = f"rel_w_{uuid.uuid4().hex[:6]}"
    port = free_port()
    api = start_api(url, tmp_path / "api", port=port, tenant_write_rps="17", tenant_write_burst="10",
                    tenant_recall_rps="1000", tenant_recall_burst="1000")
    base = f"http://127.0.0.1:{port}"
    wpre, rpre = tmp_path / "w" / "locust", tmp_path / "r" / "locust"
    try:
        writer = start_bench(base, url, wpre, "--scope", scope, "--mode", "write", "--write-requests", str(WRITES),
                             "--write-concurrency", "8", "--arrival-rate", str(RATE), "--adaptive", "off",
                             "--embed-on-write", "--verify-writes")
        reader = start_bench(base, url, rpre, "--scope", scope, "--mode", "recall", "--recall-requests", str(WRITES),
                             "--recall-concurrency", "4", "--arrival-rate", str(RATE), "--recall-endpoint", "mixed")
        rc, doc, log = bench_result(writer, wpre)
        rrc, rdoc, rlog = bench_result(reader, rpre)
    finally:
        api.stop()
    check = doc["verify_writes"]
    case = doc["cases"][0]
    assert rc == 0, log[-2000:]
    recalls = sum(c["total"] for c in rdoc["cases"])
    assert rrc == 0 and recalls == WRITES and not any(c["errors"]["server_5xx"] for c in rdoc["cases"]), rlog[-2000:]
    assert "verify-writes: writes acknowledged" in log
    assert check["ok"] and check["sent"] == WRITES == case["total"]
    assert check["acknowledged"] == check["found"] == case["by_status"].get("200", 0) > WRITES // 2
    assert check["missing"] == check["half_written"] == check["rejected_4xx_written"] == 0
    assert check["rejected_4xx"] == case["by_status"].get("429", 0) > 0  # the quota bit: those left nothing

    # Independent SQL: the scope holds exactly the acknowledged writes, each with its commit and its outbox job.
    acks = read_acks(Path(f"{wpre}_write_acks.jsonl"))
    acked = {a.client_id: a for a in acks if a.acknowledged}
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT n.client_id, n.id::text, c.id::text, count(o.id) FROM memory_nodes n"
            " JOIN memory_commits c ON c.scope = n.scope AND c.id = n.commit_id"
            " LEFT JOIN memory_outbox o ON o.scope = n.scope AND o.commit_id = c.id AND o.event_type = 'embed_nodes'"
            " WHERE n.scope = %s GROUP BY 1, 2, 3", (scope,)).fetchall()
        commits = conn.execute("SELECT count(*) FROM memory_commits WHERE scope = %s", (scope,)).fetchone()[0]
    assert {r[0]: (r[1], r[2]) for r in rows} == {cid: (a.node_id, a.commit_id) for cid, a in acked.items()}
    assert all(r[3] == 1 for r in rows) and commits == len(acked)

    # Negative control: the checker notices a lost, a half-written and a wrongly-applied write.
    victims = sorted(acked)[:3]
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM memory_outbox WHERE scope = %s AND commit_id = ANY(%s::uuid[])",
                     (scope, [acked[v].commit_id for v in victims[:2]]))
        conn.execute("DELETE FROM memory_nodes WHERE scope = %s AND client_id = ANY(%s)", (scope, victims[:2]))
        conn.execute("DELETE FROM memory_commits WHERE scope = %s AND id = %s", (scope, acked[victims[0]].commit_id))
        acks_doctored = [a if a.client_id != victims[2] else type(a)(a.client_id, 429, "429", None, None)
                         for a in acks]
        bad = verify(conn, scope, acks_doctored)
    assert not bad.ok
    assert bad.missing == victims[:2] and bad.half_written == [victims[1]] and bad.rejected_4xx_written == [victims[2]]
    report("writes_no_loss", duration_s=round(WRITES / RATE), writes_sent=check["sent"],
           acknowledged=check["acknowledged"], found=check["found"], missing=check["missing"],
           rejected_429=check["rejected_4xx"], rejected_written=check["rejected_4xx_written"],
           half_written=check["half_written"], concurrent_recalls=recalls,
           negative_control="detected")
