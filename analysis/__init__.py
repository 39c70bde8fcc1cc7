"""Analysis stage: turns a run directory's files into numbers, verdicts, plots and PERFORMANCE_REPORT_V1.md.

Reads files only (no database, no HTTP, no subprocess), so any run can be re-analysed later from its artifacts.
Public entry points: `analysis.report.build_report` and `analysis.compare.compare_dirs`.
"""
