"""EXPLAIN (ANALYZE, BUFFERS) of the recall queries: the Aionis kit's planner baseline, made checkable.

Two sources of SQL:
  * the target's own psql script (`--sql FILE`, e.g. an Aionis server's `sql/explain_baseline.sql`), run through
    psql with the Aionis kit's variables (`-v scope=… -v lim=… [-v force_index=1]`); its EXPLAIN output is captured
    and judged. This is what measures the target's planner on the target's queries;
  * memload's reference SQL (the default): the statements of memload's own reference API, below. They say nothing
    about another server's queries, and the output's first line says so.

Both are judged by the same checks: stage 1 must use an HNSW index on a large-enough scope, and stage 2 must read the
seeds' neighbourhood, not every edge of a scope larger than its edge budget.

The reference statements come from `memory_api.recall_sql` (the strings the API executes), so the plans are those
of memload's recall traffic; `sql/explain_baseline.sql` embeds the same text for psql users, and a test keeps the
two equal.
They run as PREPAREd statements with the API's per-connection knobs (hnsw.ef_search, hnsw.iterative_scan,
hnsw.max_scan_tuples, via memory_api.db.session_settings).

Plan cache mode: `auto` by default, after warm-up executions, i.e. the plan a warmed API connection uses (psycopg
prepares a statement after five executions; PostgreSQL then keeps custom plans while they are cheaper than the
generic one). The Aionis kit forces generic plans to keep the vector literal out of the output; for the API's statement
a generic plan guesses LIMIT = 10% of the rows and picks Seq Scan + Sort (measured on 10^4 vectors: 69 ms, against
5.5 ms for the custom plan's HNSW scan), a plan the API never runs. Long vector literals are shortened to '[…]'.

"Large enough for HNSW": a scope with at least `DEFAULT_MIN_VECTORS` (5,000) ready hot/warm vectors. Below that an
exact scan is legitimately cheaper: measured here on a scope partition with 1536-d vectors and lim=30, a custom plan
took Seq Scan + top-N sort at 2,000 vectors (18 ms, against 6.5 ms on the HNSW path) and the HNSW index from 5,000
up. On a large-enough scope a stage-1 plan without an HNSW index scan is a failure (a missing or invalid index, or
a query shape the partial index does not cover), reported with the plan's first scan line.
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memload import contract, precision
from memload.config import SQL_DIR, Settings
from memload.errors import ExitCode, MemloadError
from memload.identity import scope_key as make_scope_key

if TYPE_CHECKING:  # psycopg is imported by the functions that run queries: `memload --help` stays light
    import psycopg
    from psycopg import sql

DEFAULT_MIN_VECTORS = 5000
PLAN_CACHE_MODES = ("auto", "force_custom_plan", "force_generic_plan")
# PostgreSQL's plan cache compares generic and custom plans after five custom executions; `auto` mode runs each
# statement this many times before the EXPLAIN, so the plan is the one a warmed API connection would use.
AUTO_WARMUP_EXECUTIONS = 6
STAGE1_NAME = "memload_explain_stage1"
STAGE2_NAME = "memload_explain_stage2"
PSQL_SCRIPT = SQL_DIR / "explain_baseline.sql"
# PREPAREd statement of sql/explain_baseline.sql -> the memory_api.recall_sql constant it must equal
PSQL_STATEMENTS = {"memload_stage1": "STAGE1_SQL", "memload_stage2": "STAGE2_HOP2_SQL"}
_PREPARE_RE = re.compile(r"^PREPARE (?P<name>\w+) AS\b.*?;[ \t]*$", re.S | re.M)

_NAMED_PARAM_RE = re.compile(r"%\((\w+)\)s")
_INDEX_SCAN_RE = re.compile(r"(?:Index|Index Only) Scan(?: Backward)? using (?P<index>\S+) on (?P<rel>\S+)")
_SEQ_SCAN_RE = re.compile(r"(?:Parallel )?Seq Scan on (?P<rel>\S+)")
_SCAN_LINE_RE = re.compile(r"\b(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan|Bitmap Index Scan)\b")
_ROWS_RE = re.compile(r"actual time=[\d.]+\.\.[\d.]+ rows=(?P<rows>[\d.]+)")
_EXEC_RE = re.compile(r"Execution Time: (?P<ms>[\d.]+) ms")
_LOOPS_RE = re.compile(r"actual time=[\d.]+\.\.[\d.]+ rows=(?P<rows>[\d.]+) loops=(?P<loops>\d+)")
_REMOVED_RE = re.compile(r"Rows Removed by (?:Filter|Index Recheck|Join Filter): (?P<rows>[\d.]+)")
_EDGE_SCAN_RE = re.compile(r"\b(?:Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan)\b.* on (?:\S+\.)?\"?"
                           r"memory_edges")
_PLAN_RE = re.compile(r"Planning Time: (?P<ms>[\d.]+) ms")
_VECTOR_LITERAL_RE = re.compile(r"'\[[-0-9.e,+ ]{200,}\]'")


class PlanCheckFailed(MemloadError):
    """A planner check failed: stage 1 without HNSW on a large-enough scope, or stage 2 over its edge budget."""

    exit_code = ExitCode.GATE_FAILED


@dataclass(frozen=True)
class ExplainOptions:
    scope: str = "perf"
    tenant_id: str | None = None  # None = MEMORY_TENANT_ID (the default tenant)
    lim: int = 30
    force_index: bool = False
    plan_cache_mode: str = "auto"
    min_vectors: int = DEFAULT_MIN_VECTORS
    sql_file: Path | None = None  # the target's psql script; None = memload's reference SQL
    max_edge_rows: int | None = None  # scopes with more edges must not be read whole; None = the recall budgets


@dataclass
class IndexUse:
    index: str
    relation: str
    method: str | None  # access method (hnsw, btree, ...); None if the catalog does not know the name
    parent_index: str | None  # the partitioned index this partition index belongs to


@dataclass
class StageReport:
    name: str
    title: str
    statement: str
    plan: list[str]
    execution_ms: float | None = None
    planning_ms: float | None = None
    rows: float | None = None
    buffers: str | None = None
    index_scans: list[IndexUse] = field(default_factory=list)
    seq_scans: list[str] = field(default_factory=list)
    edge_rows_read: int = 0  # rows the plan's memory_edges scans produced or filtered away, over all loops
    edge_rows_one_scan: int = 0  # the most any single memory_edges scan node read

    @property
    def uses_hnsw(self) -> bool:
        return any(u.method == "hnsw" for u in self.index_scans)

    @property
    def first_scan(self) -> str | None:
        return self.first_scan_on("")

    def first_scan_on(self, relation_prefix: str) -> str | None:
        """The first scan node (without costs) whose line mentions `relation_prefix`."""
        for line in self.plan:
            if _SCAN_LINE_RE.search(line) and relation_prefix in line:
                return re.sub(r"\s*\(cost=.*$", "", line.strip().removeprefix("->").strip())
        return None


@dataclass
class ExplainReport:
    scope: str
    tenant_id: str
    scope_key: str
    lim: int
    oversample: int
    ready_vectors: int
    min_vectors: int
    settings: dict[str, str]
    server: dict[str, str]
    budgets: dict[str, int]
    stages: list[StageReport] = field(default_factory=list)
    verdict: str = ""
    ok: bool = True
    sql_source: str = "reference"  # "target" (--sql FILE) | "reference" (memload's own statements)
    sql_file: str | None = None
    scope_edges: int = 0
    max_edge_rows: int = 0
    stage2_verdict: str = ""

    @property
    def enforced(self) -> bool:
        return self.ready_vectors >= self.min_vectors

    def stage(self, name: str) -> StageReport | None:
        return next((s for s in self.stages if s.name == name), None)


# ------------------------------------------------------------------ statements


def recall_statements(settings: Settings) -> tuple[str, str, str, str]:
    """(stage-1 SQL, its constant's name, stage-2 SQL, its constant's name), exactly as the API runs recall."""
    from memory_api import recall_sql

    if settings.recall_scope_path:
        s1, s1_name = recall_sql.STAGE1_SQL, "STAGE1_SQL"
    else:
        s1, s1_name = recall_sql.STAGE1_UNSCOPED_SQL, "STAGE1_UNSCOPED_SQL"
    return s1, f"memory_api.recall_sql.{s1_name}", recall_sql.STAGE2_HOP2_SQL, "memory_api.recall_sql.STAGE2_HOP2_SQL"


def to_positional(statement: str) -> tuple[str, list[str]]:
    """psycopg `%(name)s` placeholders -> PREPARE's `$n` (one number per distinct name, in order of appearance)."""
    names: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m[1] not in names:
            names.append(m[1])
        return f"${names.index(m[1]) + 1}"

    return _NAMED_PARAM_RE.sub(sub, statement), names


oversample = contract.ann_candidates


def edge_budgets(max_edges: int | None = None) -> dict[str, int]:
    """Stage-2 budgets for the recall defaults (the API contract): 500 / 500 / 500 with max_edges = 100."""
    max_edges = contract.RECALL_INT_BOUNDS["max_edges"][0] if max_edges is None else max_edges
    edge = min(contract.EDGE_FETCH_BUDGET_MAX, max(contract.EDGE_FETCH_MULT * max_edges, max_edges))
    hop = max(contract.HOP_BUDGET_MIN, min(contract.HOP_BUDGET_MAX, edge))
    return {"hop1_budget": hop, "hop2_budget": hop, "edge_budget": edge}


# ------------------------------------------------------------------ running


def _set(conn: psycopg.Connection, name: str, value: str) -> None:
    conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def _session(conn: psycopg.Connection, settings: Settings, opts: ExplainOptions) -> dict[str, str]:
    """Apply the API's per-connection knobs plus this run's planner switches; return what is in force."""
    from memory_api.db import session_settings

    for name, value in session_settings(settings):
        if name.startswith("hnsw."):
            _set(conn, name, value)
    _set(conn, "plan_cache_mode", opts.plan_cache_mode)
    if opts.force_index:
        _set(conn, "enable_seqscan", "off")
        _set(conn, "enable_bitmapscan", "off")
    names = ("plan_cache_mode", "hnsw.ef_search", "hnsw.iterative_scan", "hnsw.max_scan_tuples",
             "enable_seqscan", "enable_bitmapscan", "work_mem", "random_page_cost")
    row = conn.execute("SELECT " + ", ".join(f"current_setting('{n}')" for n in names)).fetchone()
    assert row is not None
    used = dict(zip(names, (str(v) for v in row), strict=True))
    used["recall_scope_path"] = "true" if settings.recall_scope_path else "false"
    return used


def _server(conn: psycopg.Connection) -> dict[str, str]:
    row = conn.execute(
        "SELECT current_setting('server_version'),"
        " (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
    ).fetchone()
    assert row is not None
    return {"postgres": str(row[0]), "pgvector": str(row[1] or "not installed")}


def _execute_sql(name: str, args: list[Any]) -> sql.Composed:
    from psycopg import sql

    return sql.SQL("EXECUTE {}({})").format(sql.Identifier(name), sql.SQL(", ").join(sql.Literal(a) for a in args))


def _explain(conn: psycopg.Connection, name: str, args: list[Any], warmup: int) -> list[str]:
    from psycopg import sql

    execute = _execute_sql(name, args)
    for _ in range(warmup):
        conn.execute(execute, prepare=False).fetchall()
    rows = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + execute, prepare=False).fetchall()
    return [_VECTOR_LITERAL_RE.sub("'[…]'", r[0]) for r in rows]


def _index_uses(conn: psycopg.Connection, plan: list[str]) -> list[IndexUse]:
    scans = [(m["index"].strip('"'), m["rel"].strip('"')) for line in plan if (m := _INDEX_SCAN_RE.search(line))]
    if not scans:
        return []
    rows = conn.execute(
        "SELECT c.relname, am.amname, p.relname FROM pg_class c JOIN pg_am am ON am.oid = c.relam"
        " LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent"
        " WHERE c.relkind IN ('i', 'I') AND c.relname = ANY(%s)",
        ([s[0] for s in scans],),
    ).fetchall()
    known = {r[0]: (r[1], r[2]) for r in rows}
    out: list[IndexUse] = []
    for index, rel in scans:
        method, parent = known.get(index, (None, None))
        if not any(u.index == index for u in out):
            out.append(IndexUse(index, rel, method, parent))
    return out


def _stage(conn: psycopg.Connection, name: str, title: str, statement: str, plan: list[str]) -> StageReport:
    report = StageReport(name=name, title=title, statement=statement, plan=plan)
    for line in plan:
        if report.rows is None and (m := _ROWS_RE.search(line)):
            report.rows = float(m["rows"])
        if report.buffers is None and line.strip().startswith("Buffers:"):
            report.buffers = line.strip().removeprefix("Buffers:").strip()
        if m := _EXEC_RE.search(line):
            report.execution_ms = float(m["ms"])
        if m := _PLAN_RE.search(line):
            report.planning_ms = float(m["ms"])
        if m := _SEQ_SCAN_RE.search(line):
            report.seq_scans.append(m["rel"])
    report.edge_rows_read, report.edge_rows_one_scan = edge_rows_read(plan)
    report.index_scans = _index_uses(conn, plan)
    return report


def edge_rows_read(plan: list[str]) -> tuple[int, int]:
    """(all, the largest single scan): rows the plan's scans of memory_edges returned plus those their filters
    dropped, times their loops, i.e. what the query read from the edge table (per-loop figures are averages)."""
    per_node: list[float] = []
    for i, line in enumerate(plan):
        if not _EDGE_SCAN_RE.search(line) or not (m := _LOOPS_RE.search(line)):
            continue
        rows, loops = float(m["rows"]), int(m["loops"])
        indent = len(line) - len(line.lstrip())
        removed = 0.0
        for detail in plan[i + 1:]:
            stripped = detail.strip()
            if stripped.startswith("->") or (stripped and len(detail) - len(detail.lstrip()) <= indent):
                break
            if r := _REMOVED_RE.search(detail):
                removed += float(r["rows"])
        per_node.append((rows + removed) * loops)
    return round(sum(per_node)), round(max(per_node, default=0.0))


def resolve_scope_key(settings: Settings, opts: ExplainOptions) -> tuple[str, str]:
    tenant = opts.tenant_id or settings.memory_tenant_id
    return tenant, make_scope_key(opts.scope, tenant, settings.memory_tenant_id)


def _scope_facts(conn: psycopg.Connection, key: str) -> tuple[int, str | None, int]:
    """(ready hot/warm vectors, one of them as text, edges) of a scope."""
    ready, qvec = conn.execute(
        "SELECT count(*), (SELECT embedding::text FROM memory_nodes WHERE scope = %(k)s AND tier IN ('hot', 'warm')"
        "   AND embedding_status = 'ready' AND embedding IS NOT NULL ORDER BY id LIMIT 1)"
        " FROM memory_nodes WHERE scope = %(k)s AND tier IN ('hot', 'warm') AND embedding_status = 'ready'"
        "   AND embedding IS NOT NULL",
        {"k": key},
    ).fetchone() or (0, None)
    edges = conn.execute("SELECT count(*) FROM memory_edges WHERE scope = %s", (key,)).fetchone()
    return int(ready), qvec, int(edges[0]) if edges else 0


def max_edge_rows(opts: ExplainOptions) -> int:
    if opts.max_edge_rows is not None:
        return opts.max_edge_rows
    return sum(edge_budgets().values())


def run_explain(url: str, settings: Settings, opts: ExplainOptions) -> ExplainReport:
    """Explain stage 1 and stage 2 for `opts.scope` (the target's script with `opts.sql_file`, else memload's
    reference SQL); the report says whether stage 1 used HNSW where it must and stage 2 kept to its budget."""
    if opts.sql_file is not None:
        return run_target_sql(url, settings, opts)
    from memload.db import connection

    tenant, key = resolve_scope_key(settings, opts)
    s1_sql, s1_name, s2_sql, s2_name = recall_statements(settings)
    budgets = edge_budgets()
    with connection(url, autocommit=True) as conn:
        used = _session(conn, settings, opts)
        ready, qvec, edges = _scope_facts(conn, key)
        # The API orders stage 1 by the expression of the scope's own index (a halfvec index needs its cast).
        prec = precision.scope_precision(conn, key) if settings.recall_scope_path else precision.VECTOR
        used["index_precision"] = prec
        if prec != precision.VECTOR:
            s1_sql, s1_name = precision.follow(s1_sql, prec), f"{s1_name} (ORDER BY for a {prec} index)"
        report = ExplainReport(
            scope=opts.scope, tenant_id=tenant, scope_key=key, lim=opts.lim, oversample=oversample(opts.lim),
            ready_vectors=ready, min_vectors=opts.min_vectors, settings=used, server=_server(conn),
            budgets=budgets, scope_edges=edges, max_edge_rows=max_edge_rows(opts),
        )
        if qvec is None:
            report.verdict = f"no READY hot/warm embedding in scope {key!r}: nothing to explain"
            return report
        warmup = AUTO_WARMUP_EXECUTIONS if opts.plan_cache_mode == "auto" else 0

        s1_pos, s1_params = to_positional(s1_sql)
        conn.execute(f"PREPARE {STAGE1_NAME} AS {s1_pos}")
        s1_values = {"q": qvec, "scope": key, "oversample": report.oversample, "limit": opts.lim,
                     "agent": None, "team": None}
        s1_args = _arguments(s1_name, s1_params, s1_values)
        plan1 = _explain(conn, STAGE1_NAME, s1_args, warmup)
        report.stages.append(_stage(conn, "stage1", f"ANN seeds, LIMIT {report.oversample} -> {opts.lim}", s1_name,
                                    plan1))
        seeds = [r[0] for r in conn.execute(_execute_sql(STAGE1_NAME, s1_args), prepare=False).fetchall()]

        s2_pos, s2_params = to_positional(s2_sql)
        conn.execute(f"PREPARE {STAGE2_NAME} AS {s2_pos}")
        s2_values = {"seed_ids": "{" + ",".join(seeds) + "}", "scope": key, "min_w": 0.0, "min_c": 0.0, **budgets}
        plan2 = _explain(conn, STAGE2_NAME, _arguments(s2_name, s2_params, s2_values), warmup)
        report.stages.append(_stage(
            conn, "stage2",
            f"2-hop edges of {len(seeds)} seeds, budgets hop1={budgets['hop1_budget']} hop2={budgets['hop2_budget']}"
            f" edges={budgets['edge_budget']}",
            s2_name, plan2,
        ))
    _judge(report)
    return report


def psql_argv(url: str, sql_file: Path, scope_key: str, lim: int, force_index: bool) -> list[str]:
    """psql with the Aionis kit's variables: `-v scope=… -v lim=… [-v force_index=1]` (force_index only when asked:
    a script may test whether the variable is set at all). A psql on PATH, else the embedded server's own."""
    from scripts.embedded_db import psql_command

    args = ["-X", "-v", "ON_ERROR_STOP=1", "-v", f"scope={scope_key}", "-v", f"lim={lim}"]
    if force_index:
        args += ["-v", "force_index=1"]
    return psql_command(url, *args, "-f", str(sql_file))


def plan_blocks(output: str) -> list[tuple[str, list[str]]]:
    """(title, plan lines) of each `QUERY PLAN` table in psql's output, in order; the title is the last non-empty
    line printed before the table (e.g. a script's `\\echo`), or ''."""
    lines = output.splitlines()
    blocks: list[tuple[str, list[str]]] = []
    i, last_text = 0, ""
    while i < len(lines):
        line = lines[i]
        if line.strip() == "QUERY PLAN" and i + 1 < len(lines) and set(lines[i + 1].strip()) <= {"-", "+"}:
            plan: list[str] = []
            i += 2
            while i < len(lines) and not re.fullmatch(r"\(\d+ rows?\)", lines[i].strip()):
                plan.append(lines[i][1:] if lines[i].startswith(" ") else lines[i])
                i += 1
            blocks.append((last_text, plan))
            last_text = ""
        elif line.strip():
            last_text = line.strip()
        i += 1
    return blocks


def run_target_sql(url: str, settings: Settings, opts: ExplainOptions) -> ExplainReport:
    """Run the target's own psql script and judge its EXPLAIN output: the first plan is stage 1, the second
    stage 2 (the Aionis kit's order). The script's own settings are its business; memload sets none."""
    import subprocess

    from memload.db import connection

    assert opts.sql_file is not None
    tenant, key = resolve_scope_key(settings, opts)
    argv = psql_argv(url, opts.sql_file, key, opts.lim, opts.force_index)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError:
        raise MemloadError(f"--sql: psql not found ({argv[0]}); put a psql on PATH") from None
    except subprocess.TimeoutExpired:
        raise MemloadError(f"--sql: psql -f {opts.sql_file} ran longer than 30 minutes") from None
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["(no message)"]
        first_error = next((ln.strip() for ln in lines if "ERROR:" in ln or "FATAL:" in ln), lines[-1].strip())
        raise MemloadError(f"--sql: psql -f {opts.sql_file} exited {proc.returncode}: {first_error}")
    blocks = plan_blocks(proc.stdout)
    with connection(url, autocommit=True) as conn:
        ready, _qvec, edges = _scope_facts(conn, key)
        report = ExplainReport(
            scope=opts.scope, tenant_id=tenant, scope_key=key, lim=opts.lim, oversample=oversample(opts.lim),
            ready_vectors=ready, min_vectors=opts.min_vectors,
            settings={"force_index": "1" if opts.force_index else "unset"}, server=_server(conn),
            budgets=edge_budgets(), sql_source="target", sql_file=str(opts.sql_file), scope_edges=edges,
            max_edge_rows=max_edge_rows(opts),
        )
        for n, (title, plan) in enumerate(blocks[:2], start=1):
            plan = [_VECTOR_LITERAL_RE.sub("'[…]'", line) for line in plan]
            report.stages.append(_stage(conn, f"stage{n}", title or f"plan {n} of the script",
                                        f"{opts.sql_file.name}, plan {n}", plan))
    if not blocks:
        said = (proc.stdout.strip().splitlines() or ["nothing"])[-1]
        report.verdict = f"the script printed no plan ({said})"
        if ready > 0:
            report.ok = False
            report.verdict += f" although scope {key!r} has {ready} ready vectors"
        return report
    _judge(report)
    if len(blocks) > 2:
        report.verdict += f" ({len(blocks) - 2} further plan(s) of the script not judged)"
    return report


def _arguments(statement: str, params: list[str], values: dict[str, Any]) -> list[Any]:
    unknown = [p for p in params if p not in values]
    if unknown:
        raise MemloadError(f"{statement} has parameters memload explain does not know how to fill: {unknown}")
    return [values[p] for p in params]


def _judge(report: ExplainReport) -> None:
    """Both planner checks; a failed one comes first in the verdict (the one line the CLI prints)."""
    s1_ok, s1_text = _judge_stage1(report)
    s2_ok, s2_text = _judge_stage2(report)
    report.stage2_verdict = s2_text
    report.ok = s1_ok and s2_ok
    parts = [s2_text, s1_text] if s1_ok and not s2_ok else [s1_text, s2_text]
    report.verdict = "; ".join(p for p in parts if p)


def _judge_stage1(report: ExplainReport) -> tuple[bool, str]:
    s1 = report.stage("stage1")
    if s1 is None:
        return False, "no stage-1 plan in the output"
    hnsw = [u for u in s1.index_scans if u.method == "hnsw"]
    if hnsw:
        u = hnsw[0]
        return True, f"stage 1 uses HNSW index {u.index}" + (f" (of {u.parent_index})" if u.parent_index else "")
    scan = s1.first_scan_on("memory_nodes") or s1.first_scan or "no scan node"
    if report.enforced:
        return False, (
            f"stage 1 did not use an HNSW index ({scan}) although scope {report.scope_key!r} has "
            f"{report.ready_vectors} ready vectors (>= {report.min_vectors}); check `memload check-indexes`"
        )
    return True, (
        f"stage 1 did not use an HNSW index ({scan}); not enforced: {report.ready_vectors} ready vectors "
        f"< {report.min_vectors}, where an exact scan can be cheaper"
    )


def _judge_stage2(report: ExplainReport) -> tuple[bool, str]:
    """Stage 2 reads the seeds' neighbourhood, one index probe per node: a plan with an edge scan that reads every
    edge of the scope (a hop query with an OR over src/dst, no usable index) fails once the scope holds more edges
    than the recall budgets let stage 2 return (small scopes are exempt: there, reading all edges is cheap)."""
    s2 = report.stage("stage2")
    if s2 is None:
        return True, ""
    one, edges, budget = s2.edge_rows_one_scan, report.scope_edges, report.max_edge_rows
    read = f"stage 2 read {s2.edge_rows_read} edge rows"
    if edges <= budget or one < edges:
        return True, f"{read} (largest scan {one}; the scope has {edges} edges)"
    scan = s2.first_scan_on("memory_edges") or "an edge scan"
    return False, (f"{read}, every edge of the scope ({edges}, more than the budget of {budget}) in one scan "
                   f"({scan}): it scans the scope's edges instead of the seeds' neighbourhood")


# ------------------------------------------------------------------ output


def psql_table(lines: list[str]) -> list[str]:
    """EXPLAIN rows in psql's aligned format (header, rule, rows, row count), as `psql -f` prints them."""
    width = max([len("QUERY PLAN"), *(len(line) for line in lines)])
    return ["QUERY PLAN".center(width + 2).rstrip(), "-" * (width + 2), *(" " + line for line in lines),
            f"({len(lines)} row{'' if len(lines) == 1 else 's'})"]


def render_text(report: ExplainReport) -> str:
    """The `explain_<scale>.txt` artifact: a commented header, then `-- stage1` / `-- stage2` sections."""
    st = report.settings
    what = (f"target SQL {report.sql_file}" if report.sql_source == "target"
            else "memload reference SQL (not the target's own queries)")
    out = [
        f"-- memload explain: {what}",
        f"-- scope: {report.scope} tenant_id={report.tenant_id} scope_key={report.scope_key} "
        f"lim={report.lim} oversample={report.oversample}",
        "-- settings: " + " ".join(f"{k}={v}" for k, v in st.items()),
        f"-- server: PostgreSQL {report.server['postgres']}, pgvector {report.server['pgvector']}",
        f"-- ready hot/warm vectors: {report.ready_vectors} (HNSW required from {report.min_vectors})",
        f"-- scope edges: {report.scope_edges} (stage 2 must not read them whole above {report.max_edge_rows})",
        f"-- check: {'ok' if report.ok else 'FAILED'}: {report.verdict}",
    ]
    for stage in report.stages:
        out += ["", f"-- {stage.name}: {stage.title} ({stage.statement})", *psql_table(stage.plan)]
    return "\n".join(out) + "\n"


def key_lines(report: ExplainReport) -> list[str]:
    """The few lines a human reads: index, rows, buffers and time per stage, then the verdict."""
    st = report.settings
    source = (f"target SQL {report.sql_file}" if report.sql_source == "target"
              else "memload reference SQL (not the target's own queries)")
    out = [f"explaining {source}",
           f"scope {report.scope_key!r}: {report.ready_vectors} ready hot/warm vectors, {report.scope_edges} edges; "
           f"ef_search={st.get('hnsw.ef_search')} iterative_scan={st.get('hnsw.iterative_scan')} "
           f"plan_cache_mode={st.get('plan_cache_mode')}"]
    for s in report.stages:
        idx = ", ".join(f"{u.index} [{u.method}]" for u in s.index_scans) or "none"
        edges = f"; edge rows read {s.edge_rows_read}" if s.name == "stage2" else ""
        out.append(f"{s.name}: index {idx}; seq scans {', '.join(s.seq_scans) or 'none'}; rows {_num(s.rows)}; "
                   f"buffers {s.buffers or '-'}; planning {_num(s.planning_ms)} ms; "
                   f"execution {_num(s.execution_ms)} ms{edges}")
    out.append(("ok: " if report.ok else "FAILED: ") + report.verdict)
    return out


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def summary(report: ExplainReport) -> dict[str, Any]:
    """JSON summary (stdout of `memload explain`)."""
    stages = {}
    for s in report.stages:
        d = asdict(s)
        d.pop("plan")
        d.pop("name")
        d["uses_hnsw"] = s.uses_hnsw
        d["first_scan"] = s.first_scan
        stages[s.name] = d
    return {
        "ok": report.ok, "scope": report.scope, "tenant_id": report.tenant_id, "scope_key": report.scope_key,
        "lim": report.lim, "oversample": report.oversample, "ready_vectors": report.ready_vectors,
        "min_vectors": report.min_vectors, "enforced": report.enforced, "settings": report.settings,
        "server": report.server, "budgets": report.budgets, "stages": stages, "verdict": report.verdict,
        "sql_source": report.sql_source, "sql_file": report.sql_file, "scope_edges": report.scope_edges,
        "max_edge_rows": report.max_edge_rows, "stage2_verdict": report.stage2_verdict,
    }


# ------------------------------------------------------------------ the psql twin


def sync_psql_script(path: Path = PSQL_SCRIPT) -> bool:
    """Rewrite the PREPARE statements of sql/explain_baseline.sql from memory_api.recall_sql; True if it changed.

    Run `python -m scripts.explain_runner` after editing the recall SQL (tests/test_explain.py fails until then). The
    parameter order of the script's EXECUTE calls is documented next to each PREPARE; check it when names change.
    """
    from memory_api import recall_sql

    text = path.read_text(encoding="utf-8")

    def sub(m: re.Match[str]) -> str:
        constant = PSQL_STATEMENTS.get(m["name"])
        if constant is None:
            return m[0]
        body, _ = to_positional(getattr(recall_sql, constant))
        return f"PREPARE {m['name']} AS\n{body.strip()};"

    new = _PREPARE_RE.sub(sub, text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    changed = sync_psql_script()
    print(f"{PSQL_SCRIPT}: {'updated' if changed else 'already in sync'}", file=sys.stderr)
