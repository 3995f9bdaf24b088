"""A finished run's cohort table, and what the comparison added to the run's time (issue 30, real runs).

    PYTHONPATH=src .venv/bin/python bench/cohort_run.py --config RUN_CONFIG.yaml --snakemake-log RUN.log \
        [--figures /tmp/cohort_figures]

Reads the run's ``results.parquet`` (the aggregate job's table, cohort columns included; with
``--partial``, a run stopped before DFT, the table ``write_partial_table`` builds from its
records, DFT rows ``not_finished``), prints per cohort the counts and rates with 95 % Wilson
intervals that ``cohorts.csv`` holds (n, dft_ready, unique, novel, passed the ML screen, DFT done / not sampled, stable,
metastable, S.U.N., and the weighted rates where the screen audit or the DFT budget made
the DFT rates estimates from a sample), then times the comparison itself on this table:
:func:`dftscreen.cohort_table.write_run_cohorts` (rates, comparisons with the baseline,
trends, overlap, conditioning) and :func:`dftscreen.report.draw_cohort_figures`, each the
median of 5 runs, against the run's wall time from its Snakemake log (first job start to the
last job's end) and its DFT core-hours (``summary.json``). Not a test.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from dftscreen.cohort_table import write_run_cohorts
from dftscreen.config import read_run_config
from dftscreen.layout import ResultsLayout
from dftscreen.plan import RunPlan
from dftscreen.report import draw_cohort_figures
from dftscreen.table import table_from_results

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
#: Why a cohort has no weighted rate (dftscreen.cohort_table.AUDIT_DEFINITIONS).
NO_ESTIMATE = "none (screened-out crystals of which none was audited, or DFT of the sample still pending)"
SHOWN = ("dft_ready", "unique_in_cohort", "novel", "passed_ml_screen", "dft_done", "dft_not_sampled", "stable",
         "metastable", "sun")  # fmt: skip


def run_wall_seconds(log: Path) -> float | None:
    """From the first to the last time stamp of a Snakemake log (its jobs' starts and ends)."""
    stamps = [
        datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        for line in log.read_text(errors="replace").splitlines()
        if (m := STAMP.match(line.strip()))
    ]
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else None


def cell(row: pd.Series, metric: str) -> str:
    count = row.get(f"{metric}_count")
    if count is None or pd.isna(count):
        return "-"
    return f"{int(count)} ({row[f'{metric}_low']:.2f}-{row[f'{metric}_high']:.2f})"


def partial_table(config: dict) -> pd.DataFrame:
    """The results table as ``write_partial_table`` (workflow/rules/common.smk) builds it."""
    plan = RunPlan(config)
    stability, ml = config["stability"], config["ml"]
    return table_from_results(
        config["output_dir"],
        stability["elemental_references"],
        config["targets"],
        run_settings=plan.settings,
        stable_threshold_eV_per_atom=stability["stable_threshold_eV_per_atom"],
        reference_library=plan.library.folder,
        element_keys=plan.element_keys,
        ml_prerelax=(ml["prerelax"] if ml["enabled"] else None),
        cohorts=config["cohorts"],
        dft_budget=config["dft"],
    )


def median_seconds(function, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--snakemake-log", type=Path, default=None)
    parser.add_argument("--figures", type=Path, default=None)
    parser.add_argument("--partial", action="store_true", help="a run stopped before DFT: build its table")
    args = parser.parse_args()
    config = read_run_config(args.config)
    layout = ResultsLayout.of(config["output_dir"])
    if args.partial:
        table = partial_table(config)
        scratch = Path(tempfile.mkdtemp())
        write_run_cohorts(table, config["cohorts"], scratch / "c.csv", scratch / "c.json",
                          audit_fraction=config["ml"]["audit_fraction"], dft_budget=config["dft"])  # fmt: skip
        rates = pd.read_csv(scratch / "c.csv")
    else:
        table = pd.read_parquet(layout.results_parquet)
        rates = pd.read_csv(layout.cohorts_csv)
    print(f"{len(table)} inputs in {len(rates)} cohorts; count (95 % Wilson interval of the rate)")
    print("cohort".ljust(34) + " n   " + "".join(m[:16].ljust(18) for m in SHOWN))
    for _, row in rates.iterrows():
        cells = "".join(cell(row, m).ljust(18) for m in SHOWN)
        print(str(row["cohort"])[:33].ljust(34) + f"{int(row['n']):<4}" + cells)
    weighted = [c for c in rates.columns if c.endswith("_weighted_rate")]
    if weighted:
        print("weighted (estimates for every input from the DFT sample):")
        for _, row in rates.iterrows():
            values = ", ".join(f"{c[:-14]} {row[c]:.2f}" for c in weighted if pd.notna(row[c]))
            print(f"  {row['cohort']}: {values or NO_ESTIMATE}")
    if args.partial:
        return
    summary = json.loads(Path(layout.summary).read_text())
    cohorts_config, audit = config["cohorts"], config["ml"]["audit_fraction"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        stats = median_seconds(lambda: write_run_cohorts(
            table, cohorts_config, out / "c.csv", out / "c.json", audit_fraction=audit,
            dft_budget=config["dft"], targets_config=config["targets"]))  # fmt: skip
        written = pd.read_csv(out / "c.csv")
        figures_dir = args.figures or out / "figures"
        figures = median_seconds(lambda: draw_cohort_figures(written, figures_dir, table=table), repeats=3)
    print(f"comparison: statistics {stats:.2f} s, figures {figures:.2f} s (medians)")
    if args.snakemake_log and (wall := run_wall_seconds(args.snakemake_log)):
        print(f"run wall time {wall / 60:.1f} min: the comparison adds {(stats + figures) / wall:.2%} of it")
    cost = summary.get("cost", {})
    if cost:
        print(f"DFT core-hours of the run (summary.json cost): {json.dumps(cost)[:200]}")


if __name__ == "__main__":
    main()
