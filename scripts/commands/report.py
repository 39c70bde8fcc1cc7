"""`memload report` (the Aionis kit's perf-report) and `memload compare` (baseline vs candidate run directories).

Registration is cheap; pandas/matplotlib load inside the handlers. This layer may gather what the files cannot say
(git commit, host CPU/RAM) and passes it to the analysis, which reads files only; manifest.json wins when present.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memload.config import REPO_ROOT
from memload.errors import ConfigError, ExitCode
from scripts.common import log, print_json
from scripts.options import add_option, add_switch, bounded_float, bounded_int

GATE_FAILED_EXIT = int(ExitCode.GATE_FAILED)  # SLO FAIL with --fail-on-slo, or a regression in `memload compare`
PARTIAL_EXIT = int(ExitCode.ERROR)  # a stage did not run (PARTIAL verdict) with --fail-on-partial


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="turn a run directory into PERFORMANCE_REPORT_V1.md + plots",
                       description="Reads Locust CSVs, exact latencies, seed/benchmark/adapt/ann_check JSON, explain "
                                   "text and worker_baseline.json from --dir; writes the report and plots/*.png; "
                                   f"prints a JSON summary. Exit {GATE_FAILED_EXIT} on SLO FAIL with --fail-on-slo; "
                                   f"exit {PARTIAL_EXIT} on a PARTIAL verdict (a stage NOT MEASURED) with "
                                   "--fail-on-partial.")
    add_option(p, "--dir", env="REPORT_DIR", help="run directory to analyse (e.g. artifacts/perf/<tag>)")
    add_option(p, "--output", env="REPORT_OUTPUT", help="report path; plots go to plots/ beside it "
                                                        "(default: <dir>/PERFORMANCE_REPORT_V1.md)")
    add_option(p, "--template", env="REPORT_TEMPLATE", help="Markdown template with {{ field }} placeholders",
               default=str(Path("docs") / "PERFORMANCE_REPORT_V1_TEMPLATE.md"))
    _slo_options(p)
    add_switch(p, "--plots", env="REPORT_PLOTS", help="draw the PNG plots", default=True)
    add_switch(p, "--fail-on-slo", env="REPORT_FAIL_ON_SLO",
               help=f"exit {GATE_FAILED_EXIT} when the SLO verdict is FAIL", default=False)
    add_switch(p, "--fail-on-partial", env="REPORT_FAIL_ON_PARTIAL",
               help=f"exit {PARTIAL_EXIT} when the verdict is PARTIAL (a stage did not run or failed)", default=False)
    p.set_defaults(func=run_report)

    c = sub.add_parser("compare", help="compare two run directories: confidence intervals and a regression verdict",
                       description="Per scale and case: p50/p95/p99, req/s and error rate (and worker jobs/s), each "
                                   "with a bootstrap confidence interval of the difference (over the per-request "
                                   "records when both runs have them, else over the REPEAT runs) and a noise floor. "
                                   "A change counts only when significant and above the floor. Table on stderr and "
                                   "in --output, JSON on stdout. "
                                   f"Exit {int(ExitCode.GATE_FAILED)} on a significant regression.")
    c.add_argument("baseline", help="baseline run directory")
    c.add_argument("candidate", help="candidate run directory")
    add_option(c, "--threshold-pct", env="COMPARE_THRESHOLD_PCT", type=bounded_float(0.0, 1000.0), default=10.0,
               help="minimum effect: relative change (%%) of latency/throughput below which a change is noise")
    add_option(c, "--latency-floor-ms", env="COMPARE_LATENCY_FLOOR_MS", type=bounded_float(0.0, 1e6), default=1.0,
               help="minimum effect: absolute latency change (ms) below which a change is noise")
    add_option(c, "--error-rate-pp", env="COMPARE_ERROR_RATE_PP", type=bounded_float(0.0, 100.0), default=0.5,
               help="minimum effect: error-rate change in percentage points below which a change is noise")
    add_option(c, "--confidence", env="COMPARE_CONFIDENCE", type=bounded_float(0.5, 0.999), default=0.95,
               help="family-wise confidence: all intervals of the comparison together (each interval is at "
                    "1 - (1 - confidence)/m for m compared metrics)")
    add_option(c, "--resamples", env="COMPARE_RESAMPLES", type=bounded_int(100, 1_000_000), default=10_000,
               help="bootstrap resamples per metric")
    add_option(c, "--seed", env="COMPARE_SEED", type=bounded_int(0, 2**32 - 1), default=1,
               help="random seed of the bootstrap (same inputs and seed, same intervals)")
    add_option(c, "--output", env="COMPARE_OUTPUT", help="Markdown output (default: <candidate>/COMPARE.md; "
                                                         "'-' = stderr only)")
    add_option(c, "--json-output", env="COMPARE_JSON_OUTPUT", help="also write the JSON result to this file")
    c.set_defaults(func=run_compare)


def _slo_options(p: argparse.ArgumentParser) -> None:
    add_option(p, "--slo-recall-p95-ms", env="SLO_RECALL_P95_MS", type=bounded_float(0.001, 1e7), default=300.0,
               help="recall p95 target (ms); pass = p95 strictly below it")
    add_option(p, "--slo-write-p95-ms", env="SLO_WRITE_P95_MS", type=bounded_float(0.001, 1e7), default=500.0,
               help="write p95 target (ms); pass = p95 strictly below it")
    add_option(p, "--slo-max-error-rate", env="SLO_MAX_ERROR_RATE", type=bounded_float(0.0, 1.0), default=0.0,
               help="maximum error rate (fraction 0..1); pass = error rate at or below it")
    add_option(p, "--slo-worker-min-jobs-per-sec", env="SLO_WORKER_MIN_JOBS_PER_SEC",
               type=bounded_float(0.0, 1e9), default=50.0,
               help="worker throughput target (jobs/s); pass = strictly above it")
    add_option(p, "--slo-min-recall", env="SLO_MIN_RECALL", type=bounded_float(0.0, 1.0), default=0.95,
               help="minimum recall@k of the recall path (fraction 0..1; ties counted when ann_check_<scale>.json "
                    "has recall_at_k_distance; at the hnsw.ef_search the benchmark ran with); pass = recall at or "
                    "above it")


def _run_dir(value: str | None, flag: str) -> Path:
    if not value:
        raise ConfigError(f"{flag}: a run directory is required")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{flag}: not a directory: {value}")
    return path.resolve()


def host_meta():  # -> analysis.render.HostMeta
    """Git commit and host CPU/RAM of this machine (used only when the run's manifest.json lacks them)."""
    from analysis.render import HostMeta
    from scripts.hostinfo import host_info

    h = host_info()
    return HostMeta(git_commit=h["git_commit"], git_branch=h["git_branch"], cpu_model=h["cpu_model"],
                    cpu_cores=h["cpu_cores"], mem_gib=h["mem_gib"])


def run_report(args: argparse.Namespace) -> int:
    from analysis.report import build_report
    from analysis.rules import SloTargets

    directory = _run_dir(args.dir, "--dir")
    template = Path(args.template)
    if not template.is_absolute() and not template.is_file():
        template = REPO_ROOT / template
    if not template.is_file():
        raise ConfigError(f"--template: no such file: {args.template}")
    output = Path(args.output).expanduser().resolve() if args.output else None
    slo = SloTargets(args.slo_recall_p95_ms, args.slo_write_p95_ms, args.slo_max_error_rate,
                     args.slo_worker_min_jobs_per_sec, args.slo_min_recall)
    result = build_report(directory, output=output, slo=slo, host=host_meta(), template=template,
                          plots=args.plots)
    summary = result.summary()
    log(f"wrote {result.output} ({len(summary['plots'])} plots) in {result.timings_s['total_s']:.2f} s; "
        f"SLO {result.verdict.status}; primary bottleneck: {result.diagnosis.primary.bottleneck}", prefix="report")
    if summary["missing"] or any(s["missing"] for s in summary["scales"]):
        log("some inputs are missing; the report lists them under 'Inputs'", prefix="report")
    status = result.verdict.status
    if result.run.not_measured:
        log("NOT MEASURED: " + "; ".join(f"{n.stage} ({n.reason})" for n in result.run.not_measured),
            prefix="report")
    code = 0
    if args.fail_on_slo and status == "FAIL":
        code = GATE_FAILED_EXIT
    elif args.fail_on_partial and status in ("PARTIAL", "NOT MEASURED"):
        code = PARTIAL_EXIT
    summary["ok"] = code == 0
    print_json(summary)
    return code


def run_compare(args: argparse.Namespace) -> int:
    import json

    from analysis.compare import Thresholds, compare_dirs

    baseline = _run_dir(args.baseline, "baseline")
    candidate = _run_dir(args.candidate, "candidate")
    thresholds = Thresholds(args.threshold_pct, args.latency_floor_ms, args.error_rate_pp, args.confidence,
                            args.resamples, args.seed)
    result = compare_dirs(baseline, candidate, thresholds)
    markdown = result.to_markdown()
    payload = result.to_json()
    sys.stderr.write(markdown)
    if args.output != "-":
        md_path = Path(args.output).expanduser() if args.output else candidate / "COMPARE.md"
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(markdown, encoding="utf-8")
        payload["markdown"] = str(md_path)
    if args.json_output:
        Path(args.json_output).expanduser().write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    for warning in result.warnings:
        log(f"warning: {warning}", prefix="compare")
    log(f"{result.verdict}: {len(result.regressions)} regressions, {len(result.improvements)} improvements",
        prefix="compare")
    print_json(payload)
    return int(ExitCode.GATE_FAILED) if result.regressions else int(ExitCode.OK)
