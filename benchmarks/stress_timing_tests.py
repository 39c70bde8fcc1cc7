"""Run the timing-sensitive tests many times in a row under a CPU-hogging neighbour and print failures per test.

A test that passes alone but fails when the machine is busy is a flaky test; this finds them before CI does. The
timing-sensitive tests are found, not listed by hand: every `test_*` function whose body waits, kills, paces, limits
or runs processes side by side (sleep, SIGKILL/SIGTERM, kill, monotonic/perf_counter, deadline, Retry-After, rate
limit, burst, pace, Popen). While they run, one busy-loop process per CPU competes for the cores at the same
priority.

    .venv/bin/python -m benchmarks.stress_timing_tests                   # 20 rounds, every timing-sensitive test
    .venv/bin/python -m benchmarks.stress_timing_tests --rounds 3 --files tests/test_worker.py
    .venv/bin/python -m benchmarks.stress_timing_tests --list            # only show what would run

Each round is one pytest run of the whole selection (JUnit XML per round, read back per test). Output: one line per
test with its failures out of the rounds, then the totals. Exit 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMING_MARKERS = re.compile(
    r"time\.sleep|\bsleep\(|SIGKILL|SIGTERM|send_signal|\.kill\(|killpg|monotonic|perf_counter|deadline|"
    r"retry.after|rate.?limit|ratelimit|_RPS|burst|\bpace|pacing|Popen",
    re.IGNORECASE,
)
HOG = "while True:\n    pass\n"


def timing_tests(files: list[Path]) -> list[str]:
    """pytest node ids (file::function) of the test functions whose source mentions a timing marker."""
    found: list[str] = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for node in ast.parse(text, filename=str(path)).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
                source = ast.get_source_segment(text, node) or ""
                if TIMING_MARKERS.search(source):
                    found.append(f"{path.relative_to(REPO_ROOT)}::{node.name}")
    return found


def start_hogs(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(n)]


def stop_hogs(hogs: list[subprocess.Popen[bytes]]) -> None:
    for p in hogs:
        p.kill()
    for p in hogs:
        p.wait()


def read_junit(path: Path) -> dict[str, str]:
    """{file::function: passed|failed|skipped} of one round; a parametrised test fails if any of its cases did."""
    outcome: dict[str, str] = {}
    if not path.exists():
        return outcome
    rank = {"passed": 0, "skipped": 1, "failed": 2}
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        name = re.sub(r"\[.*\]$", "", case.get("name", ""))
        state = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            state = "failed"
        elif case.find("skipped") is not None:
            state = "skipped"
        key = f"{module}::{name}"
        if rank[state] >= rank[outcome.get(key, "passed")]:
            outcome[key] = state
    return outcome



def failure_messages(path: Path) -> dict[str, str]:
    """{file::test: first line of its failure} of one round, so a failure says why, not only where."""
    if not path.exists():
        return {}
    messages: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            key = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name', '')}"
            messages[key] = (bad.get("message") or "").strip().splitlines()[0][:300] if bad.get("message") else "?"
    return messages

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("STRESS_ROUNDS", "20")),
                    help="times to run the selection [env STRESS_ROUNDS; default 20]")
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 1,
                    help="busy-loop neighbour processes (default: one per CPU)")
    ap.add_argument("--files", nargs="*", default=None, help="test files to search (default: tests/test_*.py)")
    ap.add_argument("-k", dest="keyword", default=None, help="pytest -k expression to narrow the selection")
    ap.add_argument("--timeout", type=int, default=900, help="pytest-timeout per test, seconds (default 900)")
    ap.add_argument("--list", action="store_true", help="print the selected tests and exit")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.hogs < 0:
        ap.error("--rounds must be >= 1 and --hogs >= 0")
    files = [REPO_ROOT / f for f in args.files] if args.files else sorted((REPO_ROOT / "tests").glob("test_*.py"))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        ap.error(f"--files: no such file: {', '.join(missing)}")
    selected = timing_tests(files)
    if args.list or not selected:
        print("\n".join(selected) if selected else "no timing-sensitive tests found")
        return 0

    print(f"{len(selected)} timing-sensitive tests x {args.rounds} rounds, {args.hogs} CPU hog(s)", file=sys.stderr)
    failures: Counter[str] = Counter()
    runs: Counter[str] = Counter()
    hogs = start_hogs(args.hogs)
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="memload_stress_") as tmp:
            for rnd in range(1, args.rounds + 1):
                xml = Path(tmp) / f"round_{rnd}.xml"
                # A base directory of its own: pytest makes its shared default base private again at every session
                # start, which would lock the embedded server's system user out of another session's data dirs.
                cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--timeout={args.timeout}",
                       f"--junitxml={xml}", f"--basetemp={Path(tmp) / f'pytest_{rnd}'}", *selected]
                if args.keyword:
                    cmd += ["-k", args.keyword]
                proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
                outcome = read_junit(xml)
                failed = sorted(k for k, v in outcome.items() if v == "failed")
                for key, state in outcome.items():
                    if state != "skipped":
                        runs[key] += 1
                    if state == "failed":
                        failures[key] += 1
                if not outcome:  # pytest could not even collect: report the round, keep going
                    failures["<collection>"] += 1
                    print(proc.stdout[-2000:] + proc.stderr[-2000:], file=sys.stderr)
                for key, message in failure_messages(xml).items():
                    print(f"  {key}: {message}", file=sys.stderr)
                print(f"round {rnd}/{args.rounds}: {len(outcome)} tests, {len(failed)} failed"
                      + (f" ({', '.join(failed)})" if failed else "")
                      + f" [{time.monotonic() - t0:.0f} s]", file=sys.stderr, flush=True)
    finally:
        stop_hogs(hogs)

    width = max(len(k) for k in [*runs, *failures, "test"])
    print(f"{'test':<{width}}  failed/runs")
    for key in sorted(set(runs) | set(failures)):
        print(f"{key:<{width}}  {failures[key]}/{runs[key]}")
    total_fail = sum(failures.values())
    print(f"total: {total_fail} failures in {sum(runs.values())} test runs ({args.rounds} rounds, {args.hogs} hogs, "
          f"{time.monotonic() - t0:.0f} s)")
    return 0 if total_fail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
