"""The cohort figures draw from the per-cohort and the results table, and say so when data is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dftscreen import cohort_figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rates() -> pd.DataFrame:
    """Three cohorts of a temperature sweep, the first the baseline; a rate with its Wilson interval."""
    frame = pd.DataFrame({"cohort": ["T=0.7", "T=1.0", "T=1.3"], "cohort_T": [0.7, 1.0, 1.3]})
    metrics = {"dft_ready": [0.9, 0.8, 0.6], "stable": [0.10, 0.15, 0.05], "novel": [0.2, 0.4, 0.7]}
    for metric, values in metrics.items():
        frame[f"{metric}_rate"] = values
        frame[f"{metric}_low"] = np.array(values) - 0.05
        frame[f"{metric}_high"] = np.array(values) + 0.05
        frame[f"{metric}_count"] = (np.array(values) * 50).astype(int)
    return frame


def results() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({
        "cohort": np.repeat(["T=0.7", "T=1.0"], 20),
        "e_above_hull_eV_per_atom": rng.normal(0.1, 0.1, 40),
        "total_core_hours": rng.uniform(0.5, 1.5, 40),
    })


def drawn(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


@pytest.mark.parametrize("empty", [False, True])
def test_every_cohort_figure_is_a_png_with_or_without_data(tmp_path: Path, empty: bool):
    table, per_cohort = (results(), rates()) if not empty else (results().iloc[:0], rates().iloc[:0])
    useful = table["e_above_hull_eV_per_atom"] <= 0.0
    figures = {
        "forest.png": lambda p: cohort_figures.forest_plot(per_cohort, ["dft_ready", "stable"], p, baseline="T=0.7"),
        "funnels.png": lambda p: cohort_figures.funnels(per_cohort, ["dft_ready", "stable", "novel"], p),
        "ecdf.png": lambda p: cohort_figures.e_hull_ecdf(table, "e_above_hull_eV_per_atom", p),
        "response.png": lambda p: cohort_figures.response_curve(per_cohort, "cohort_T", "novel", p),
        "cumulative.png": lambda p: cohort_figures.cumulative_useful_vs_core_hours(table, useful, p),
        "novelty.png": lambda p: cohort_figures.novelty_vs_stability(per_cohort, p),
    }
    for name, draw in figures.items():
        draw(tmp_path / name)
        assert drawn(tmp_path / name), name


def test_a_missing_column_gives_a_figure_that_says_so(tmp_path: Path):
    cohort_figures.e_hull_ecdf(results(), "ml_e_above_hull_eV_per_atom", tmp_path / "ml.png", label="ML")
    cohort_figures.response_curve(rates(), "cohort_seed", "novel", tmp_path / "none.png")
    assert drawn(tmp_path / "ml.png") and drawn(tmp_path / "none.png")
