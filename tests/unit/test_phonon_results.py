"""Phonons in the run: which structures get DFT phonons, their columns, verdict words, funnel, summary, figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dftscreen.io import atomic_write_json
from dftscreen.layout import ResultsLayout
from dftscreen.phonon_figures import phonon_figure_name, phonon_section
from dftscreen.phonon_results import plan_dft_phonons, select_dft_phonons
from dftscreen.phonons import PhononSettings
from dftscreen.resources import ResourcePolicy
from dftscreen.settings import resolve_settings
from dftscreen.size_gate import GateSettings
from dftscreen.summary import funnel, summarize
from dftscreen.table import add_phonon_columns
from dftscreen.verdict import verdict


def table_of(rows: list[dict]) -> pd.DataFrame:
    base = {"status": "ok", "duplicate_of": None, "relax_converged": True, "n_sites": 2, "dft_ready": True}
    return pd.DataFrame([{**base, **row} for row in rows])


ROWS = [
    {"structure_id": "on_hull", "e_above_hull_eV_per_atom": 0.0, "novel": True},
    {"structure_id": "metastable", "e_above_hull_eV_per_atom": 0.08, "novel": True},
    {"structure_id": "far", "e_above_hull_eV_per_atom": 0.4, "novel": True},
    {"structure_id": "known", "e_above_hull_eV_per_atom": 0.0, "novel": False},
    {"structure_id": "dup", "status": "duplicate", "duplicate_of": "on_hull", "e_above_hull_eV_per_atom": 0.0},
    {"structure_id": "unconverged", "status": "not_converged", "e_above_hull_eV_per_atom": 0.0, "novel": True},
]


def test_candidates_are_the_unique_novel_structures_near_the_hull():
    reasons = select_dft_phonons(table_of(ROWS), mode="candidates", stable_threshold_eV_per_atom=0.1)
    chosen = [sid for sid, why in zip(table_of(ROWS)["structure_id"], reasons) if not why]
    assert chosen == ["on_hull", "metastable"]
    by_id = dict(zip(table_of(ROWS)["structure_id"], reasons))
    assert "above the hull" in by_id["far"] and "known material" in by_id["known"]
    assert "no converged DFT relaxation" in by_id["dup"] and "no converged DFT relaxation" in by_id["unconverged"]


def test_the_default_mode_depends_on_the_preset():
    from dftscreen.config import with_defaults
    from dftscreen.phonon_results import dft_phonon_mode

    phonons = with_defaults({})["phonons"]
    assert [dft_phonon_mode(phonons, p) for p in ("test", "fast", "standard", "mine")] == [
        "none", "candidates", "candidates", "candidates"]
    assert dft_phonon_mode({**phonons, "dft": "all"}, "test") == "all"


def test_all_and_none_modes_and_a_bad_mode():
    table = table_of(ROWS)
    all_reasons = select_dft_phonons(table, mode="all", stable_threshold_eV_per_atom=0.1)
    assert [sid for sid, why in zip(table["structure_id"], all_reasons) if not why] == [
        "on_hull", "metastable", "far", "known"]
    assert all(select_dft_phonons(table, mode="none", stable_threshold_eV_per_atom=0.1))
    with pytest.raises(ValueError, match="phonons.dft must be one of"):
        select_dft_phonons(table, mode="some", stable_threshold_eV_per_atom=0.1)


def _gate(max_runtime_min: int = 2880) -> GateSettings:
    settings = resolve_settings("test")
    resources = {**ResourcePolicy().__dict__, "max_runtime_min": max_runtime_min}
    return GateSettings.from_dft_settings(settings, resources)


def _write_si(path: Path, a: float = 5.47) -> Path:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    CifWriter(si).write_file(path)
    return path


def test_the_plan_sizes_each_supercell_and_refuses_too_large_ones(tmp_path: Path):
    cif = _write_si(tmp_path / "si.cif")
    table = table_of([{"structure_id": "si", "e_above_hull_eV_per_atom": 0.0}, {"structure_id": "broken",
                      "e_above_hull_eV_per_atom": 0.0}])
    settings = PhononSettings.from_config({"min_supercell_length_A": 10.0})
    plan = plan_dft_phonons(table, {"si": str(cif), "broken": str(tmp_path / "missing.cif")}, mode="all",
                            stable_threshold_eV_per_atom=0.1, settings=settings, gate=_gate())
    job = plan["jobs"]["si"]
    assert job["supercell"] == [4, 4, 4] and job["n_supercell_atoms"] == 128  # fcc primitive: widths a/sqrt(3) = 3.16 A
    assert job["n_displacements"] == 1 and job["too_large"] == "" and job["tasks"] >= 1 and job["runtime_min"] > 0
    assert plan["runnable"] == ["si"]
    assert plan["not_selected"]["broken"].startswith("phonon set-up failed")  # one bad file, the others go on
    small = PhononSettings.from_config({"min_supercell_length_A": 10.0, "max_supercell_atoms": 20})
    plan = plan_dft_phonons(table.iloc[:1], {"si": str(cif)}, mode="all", stable_threshold_eV_per_atom=0.1,
                            settings=small, gate=_gate())
    assert plan["runnable"] == [] and "128 atoms > phonons.max_supercell_atoms 20" in plan["jobs"]["si"]["too_large"]
    plan = plan_dft_phonons(table.iloc[:1], {"si": str(cif)}, mode="all", stable_threshold_eV_per_atom=0.1,
                            settings=settings, gate=_gate(max_runtime_min=1))
    assert plan["runnable"] == [] and "phonon supercell too large for DFT" in plan["jobs"]["si"]["too_large"]


def _record(stable: bool, label: str = "Γ", low: float = -4.2) -> dict:
    band = {"distances": [0.0, 0.5, 1.0], "frequencies_THz": [[low, 1.0, 8.0], [2.0, 3.0, 9.0], [low, 1.0, 8.0]],
            "labels": ["Γ", "X", "Γ"], "label_distances": [0.0, 0.5, 1.0]}
    return {"status": "computed", "reason": "", "min_frequency_THz": low if not stable else 0.0,
            "min_frequency_qpoint": [0.0, 0.0, 0.0], "min_frequency_qpoint_label": label,
            "n_imaginary_modes": 0 if stable else 3, "dynamically_stable": stable, "supercell_matrix": [[1, 0, 0],
            [0, 1, 0], [0, 0, 1]], "n_displacements": 4, "core_hours": 0.25, "phonon_wall_time_s": 3.0,
            "band_structure": band, "dos": {"frequencies_THz": [-5.0, 0.0, 10.0], "dos": [0.1, 0.0, 0.3]}}


@pytest.fixture
def phonon_run(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    layout = ResultsLayout.of(tmp_path)
    atomic_write_json(layout.phonon_record("on_hull"), _record(False))
    atomic_write_json(layout.ml_phonon_record("on_hull"), _record(False, low=-3.0))
    atomic_write_json(layout.phonon_record("metastable"), _record(True))
    atomic_write_json(layout.phonon_candidates, {
        "mode": "candidates", "runnable": ["on_hull", "metastable", "waiting"],
        "jobs": {"on_hull": {}, "metastable": {}, "waiting": {}, "huge": {"too_large": "supercell of 900 atoms"}},
        "not_selected": {"far": "not a candidate: more than 0.1 eV/atom above the hull"}})
    rows = [*ROWS, {"structure_id": "waiting", "e_above_hull_eV_per_atom": 0.0},
            {"structure_id": "huge", "e_above_hull_eV_per_atom": 0.0}]
    return tmp_path, add_phonon_columns(table_of(rows), tmp_path)


def test_columns_from_records_and_the_plan(phonon_run):
    _, table = phonon_run
    rows = table.set_index("structure_id")
    assert rows.loc["on_hull", "dynamically_stable"] == False  # noqa: E712
    assert rows.loc["on_hull", "min_phonon_frequency_THz"] == -4.2
    assert rows.loc["on_hull", "phonon_supercell"] == "1x1x1"
    assert rows.loc["on_hull", "ml_min_phonon_frequency_THz"] == -3.0
    assert rows.loc["on_hull", "min_phonon_qpoint"] == "0 0 0" and rows.loc["on_hull", "phonon_core_hours"] == 0.25
    assert rows.loc["dup", "dynamically_stable"] == False  # noqa: E712  (its representative's)
    assert rows.loc["metastable", "dynamically_stable"] == True  # noqa: E712
    assert rows.loc["waiting", "phonon_status"] == "not_finished"
    assert rows.loc["huge", "phonon_status"] == "too_large" and "900 atoms" in rows.loc["huge", "phonon_reason"]
    assert rows.loc["far", "phonon_status"] == "not_selected" and "above the hull" in rows.loc["far", "phonon_reason"]


def test_a_run_without_phonons_gets_no_columns(tmp_path: Path):
    table = table_of(ROWS)
    assert list(add_phonon_columns(table, tmp_path).columns) == list(table.columns)


def test_verdict_funnel_and_summary_count_dynamical_stability(phonon_run):
    _, table = phonon_run
    row = table.set_index("structure_id").loc["on_hull"].to_dict() | {"structure_id": "on_hull"}
    words = verdict(row, stable_threshold_eV_per_atom=0.1)
    assert "stable (0.00 eV/atom above hull), but dynamically unstable (imaginary mode at Γ, -4.2 THz)" in words
    stages = [stage["stage"] for stage in funnel(table, stable_threshold_eV_per_atom=0.1)]
    assert stages[stages.index("stable") + 1] == "dynamically stable"
    counts = {stage["stage"]: stage["count"] for stage in funnel(table, stable_threshold_eV_per_atom=0.1)}
    assert counts["dynamically stable"] == 1  # metastable only: on_hull has an imaginary mode
    summary = summarize(table, stable_threshold_eV_per_atom=0.1, known_set="test set")
    assert summary["dynamically_stable"]["count"] == 1 and summary["dynamically_stable"]["n_checked"] == 3
    assert summary["stable_unique_novel"]["count"] > summary["stable_unique_novel_dynamically_stable"]["count"] == 1
    assert summary["cost"]["stages"]["phonons"] == {"core_hours": 0.5, "jobs": 2}


def test_the_report_draws_a_figure_per_structure_with_dft_phonons(phonon_run, tmp_path: Path):
    out, table = phonon_run
    report = tmp_path / "report"
    report.mkdir()
    section = phonon_section(table, out, report)
    assert section is not None and 'id="phonons"' in section
    for sid in ("on_hull", "metastable"):
        assert (report / phonon_figure_name(sid)).stat().st_size > 5000
        assert phonon_figure_name(sid) in section
    assert not (report / phonon_figure_name("dup")).exists()
    assert phonon_section(table_of(ROWS), out, report) is None


def test_status_counts_phonon_jobs_and_projects_their_cost(tmp_path: Path):
    from types import SimpleNamespace

    from dftscreen.status import RunStatus, StageStatus, _phonon_lines, count_jobs, phonon_status

    layout = ResultsLayout.of(tmp_path)
    plan = SimpleNamespace(config={"phonons": {"dft": "candidates"}, "dft": {"preset": "test"}})

    def count(name, jobs):
        return count_jobs(name, jobs, {}, set())

    assert phonon_status(plan, layout, "out", count)[1].startswith("not planned until every DFT job has finished")
    by_preset = {"dft": "by_preset", "dft_by_preset": {"test": "none", "fast": "candidates"}}
    off = SimpleNamespace(config={"phonons": by_preset, "dft": {"preset": "test"}})
    assert phonon_status(off, layout, "out", count)[1].startswith("off")
    atomic_write_json(layout.phonon_candidates, {
        "runnable": ["a", "b"], "not_selected": {},
        "jobs": {"a": {"tasks": 2, "runtime_min": 30.0}, "b": {"tasks": 4, "runtime_min": 90.0},
                 "c": {"too_large": "supercell of 900 atoms"}}})
    atomic_write_json(layout.phonon_record("a"), _record(True))
    stage, note, projected = phonon_status(plan, layout, "out", count)
    assert (stage.done, stage.pending, stage.total) == (1, 1, 2)
    assert projected == pytest.approx(6.0)  # b: 90 min on 4 ranks
    assert note == "1 supercell(s) too large for DFT phonons"
    status = RunStatus(tmp_path, 2, 2, {}, {}, {}, "none", phonons=stage, phonon_note=note,
                       phonon_projected_core_hours=projected)
    text = "\n".join(_phonon_lines(status, 1, 5))
    assert "phonons     1 done, 0 failed, 0 running, 1 pending  (of 2)" in text and "6.0 core-hours" in text
    assert isinstance(stage, StageStatus)
