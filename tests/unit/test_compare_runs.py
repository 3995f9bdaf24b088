"""dftscreen compare refuses runs whose numbers are not comparable, naming the difference."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dftscreen.compare_runs import RunNotComparable, combined_table, mismatches, read_fingerprint
from dftscreen.io import atomic_write_json


def finished_run(folder: Path, *, settings: str = "abc", gpaw: str = "26.7.0", cohorts: list | None = None) -> Path:
    """A results folder as a finished run leaves it: summary.json and results.parquet."""
    provenance = {"settings_sha256": settings, "gpaw_version": gpaw, "gpaw_data_version": "1.2.1"}
    novel = {"known_set": "mp.json.gz (12 ComputedStructureEntry objects)"}
    summary = {"provenance": provenance, "stable_threshold_eV_per_atom": 0.1, "novel": novel}
    atomic_write_json(folder / "summary.json", summary)
    table = pd.DataFrame({"structure_id": ["a", "b"], "ml_checkpoint_sha256": ["f00d", "f00d"]})
    if cohorts:
        table["cohort"] = cohorts
    table.to_parquet(folder / "results.parquet")
    return folder


def test_runs_with_the_same_settings_are_comparable(tmp_path: Path):
    runs = {"base": finished_run(tmp_path / "base"), "pi": finished_run(tmp_path / "pi")}
    assert mismatches({name: read_fingerprint(path) for name, path in runs.items()}) == []


def test_a_different_preset_or_gpaw_is_named_with_each_runs_value(tmp_path: Path):
    runs = {"base": finished_run(tmp_path / "base"), "pi": finished_run(tmp_path / "pi", settings="xyz", gpaw="25.7.0")}
    found = mismatches({name: read_fingerprint(path) for name, path in runs.items()})
    assert found == [
        "the runs differ in resolved DFT settings (hash) (base: abc; pi: xyz)",
        "the runs differ in GPAW version (base: 26.7.0; pi: 25.7.0)",
    ]


def test_a_folder_that_is_no_finished_run_is_refused_with_its_name(tmp_path: Path):
    with pytest.raises(RunNotComparable, match="neither a results folder"):
        read_fingerprint(tmp_path)


def test_each_run_is_a_cohort_or_keeps_its_own_cohorts(tmp_path: Path):
    runs = {"base": finished_run(tmp_path / "base"), "pi": finished_run(tmp_path / "pi", cohorts=["gap=1", "gap=2"])}
    table = combined_table(runs)
    assert list(table["cohort"]) == ["base", "base", "pi: gap=1", "pi: gap=2"]
    assert list(table["run"]) == ["base", "base", "pi", "pi"]


def test_compare_refuses_mismatched_runs_in_one_sentence_and_writes_nothing(tmp_path: Path, capsys):
    from dftscreen.cli import main

    base, pi = finished_run(tmp_path / "base"), finished_run(tmp_path / "pi", gpaw="25.7.0")
    assert main(["compare", str(base), str(pi), "--out", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert "GPAW version (base: 26.7.0; pi: 25.7.0)" in message and "Traceback" not in message
    assert not (tmp_path / "out").exists()


def test_compare_writes_the_cohort_table_and_a_page_and_says_when_it_compared_mismatched_runs(tmp_path: Path):
    from dftscreen.cli import main

    base, pi = finished_run(tmp_path / "base"), finished_run(tmp_path / "pi", gpaw="25.7.0")
    for run, statuses in ((base, ["ok", "invalid"]), (pi, ["ok", "ok"])):
        table = pd.read_parquet(run / "results.parquet").assign(status=statuses, dft_ready=[True, statuses[1] == "ok"])
        table.to_parquet(run / "results.parquet")
    out = tmp_path / "out"
    assert main(["compare", str(base), str(pi), "--out", str(out), "--allow-mismatch"]) == 0
    rates = pd.read_csv(out / "cohorts.csv").set_index("cohort")
    assert rates.loc["base", "dft_ready_count"] == 1 and rates.loc["pi", "dft_ready_count"] == 2
    page = (out / "index.html").read_text()
    assert "--allow-mismatch" in page and "GPAW version" in page
