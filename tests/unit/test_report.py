"""The HTML report, verdicts, cost accounting and provenance, from a hand-made results folder.

The records here are synthetic (bookkeeping only: no DFT number is claimed); the
report of a real test-preset run is checked in tests/workflow/test_workflow.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dftscreen.columns import PROVENANCE_COLUMNS
from dftscreen.cost import failure_kind, projection
from dftscreen.io import atomic_write_json, atomic_write_text
from dftscreen.provenance import run_provenance, settings_hash
from dftscreen.report import SECTIONS, build_report, figure_names
from dftscreen.settings import resolve_settings
from dftscreen.summary import summarize
from dftscreen.table import table_from_results

from conftest import assert_renders_in_chromium, assert_report_complete

#: The stability threshold (eV/atom) every report here is built with: the schema default.
STABLE = {"stable_threshold_eV_per_atom": 0.1}
SETTINGS = resolve_settings("test")
TARGETS = {"file": None, "id_column": "structure_id", "properties": {"band_gap": {"tolerance": 0.5}}}


def _check(sid: str, **extra) -> dict:
    record = {
        "structure_id": sid,
        "source_file": f"{sid}.cif",
        "valid": True,
        "status": "",
        "reason": "",
        "reduced_formula": "NaCl",
        "n_sites": 2,
        "spacegroup_symbol": "P4/nmm",
        "spacegroup_number": 129,
        "dft_ready": True,
        "band_gap": 4.0,
    }
    record.update(extra)
    return record


def _relax(volume: float, energy: float, core_seconds: float | None = 7200.0, **extra) -> dict:
    record = {
        "status": "relaxed",
        "converged": True,
        "preset": "test",
        "settings": SETTINGS,
        "gpaw_version": "26.7.0",
        "formula": "Na2Cl2",
        "energy_eV": energy,
        "initial_volume_A3": 50.0,
        "final_volume_A3": volume,
        "relaxed_cif": "relaxed.cif",
        "mpi_ranks": 2,
        "wall_time_s": 1800.0,
        "n_starts": 2,
        "change": {
            "relaxed_matches_generated": False,
            "spacegroup_changed": True,
            "spacegroup_symbol_relaxed": "Fm-3m",
        },
    }
    if core_seconds is not None:
        record.update(core_seconds_all_starts=core_seconds, wall_time_all_starts_s=core_seconds / 2)
    record.update(extra)
    return record


def _properties(gap: float) -> dict:
    return {
        "status": "done",
        "energy_eV": -7.0,
        "energy_per_atom_eV": -3.5,
        "band_gap_eV": gap,
        "mpi_ranks": 2,
        "wall_time_s": 360.0,
        "magnetic_moment_muB": 0.0,
        "is_magnetic": False,
    }


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder: two relaxed structures, a duplicate, an invalid file, an SCF failure and a killed job."""
    out = tmp_path / "out"
    checks = [
        _check("good"),
        _check("other", band_gap=1.0),
        _check("twin", valid=False, status="duplicate", reason="same crystal as good", duplicate_of="good"),
        _check(
            "broken",
            valid=False,
            status="invalid",
            reason="atoms 1 and 4 are 0.31 Å apart",
            reduced_formula=None,
            n_sites=None,
            dft_ready=False,
        ),
        _check("scf"),
        _check("killed", n_sites=4),
    ]
    atomic_write_json(out / "check" / "checks.json", checks)
    for sid, relax, props in (
        ("good", _relax(45.0, -14.0), _properties(4.2)),
        ("other", _relax(48.0, -13.0, core_seconds=None), _properties(3.0)),
    ):
        atomic_write_json(out / "dft" / sid / "relax.json", relax)
        atomic_write_json(out / "dft" / sid / "properties.json", props)
        atomic_write_text(out / "dft" / sid / "relaxed.cif", "data_x\n")
        atomic_write_text(out / "logs" / "relax" / f"{sid}.log", "ionic step    0  energy -14.0 eV\n")
        atomic_write_text(out / "logs" / "properties" / f"{sid}.log", "done\n")
    atomic_write_json(
        out / "dft" / "scf" / "relax.json",
        {
            "status": "failed",
            "reason": "SCF did not converge after 4 strategies: preset (...)",
            "preset": "test",
            "settings": SETTINGS,
            "mpi_ranks": 2,
            "wall_time_all_starts_s": 100.0,
            "core_seconds_all_starts": 200.0,
        },
    )
    atomic_write_text(
        out / "logs" / "relax" / "killed.log",
        "ionic step 3\nslurmstepd: error: *** STEP 12.0 ON n1 CANCELLED AT 2026-12-02T01:00:00 DUE TO TIME LIMIT ***\n",
    )
    for element, formula, energy in (("Na", "Na", -1.3), ("Cl", "Cl2", -3.6)):
        atomic_write_json(
            out / "references" / "elements" / element / "relax.json",
            {"status": "relaxed", "element": element, "formula": formula, "energy_eV": energy},
        )
    return out


def _table_and_summary(out: Path) -> tuple[pd.DataFrame, dict]:
    table = table_from_results(out, True, TARGETS, run_settings=SETTINGS, stable_threshold_eV_per_atom=0.1)
    summary = summarize(table, stable_threshold_eV_per_atom=0.1, provenance=run_provenance(SETTINGS))
    return table, summary


def test_cost_columns_count_every_start_and_each_dft_job_once(results: Path):
    table, summary = _table_and_summary(results)
    rows = table.set_index("structure_id")
    assert rows.loc["good", "relax_core_hours"] == pytest.approx(2.0)  # 7200 core-s over both starts
    assert rows.loc["other", "relax_core_hours"] == pytest.approx(1800 * 2 / 3600)  # old record: last start only
    assert rows.loc["good", "properties_core_hours"] == pytest.approx(0.2)
    assert rows.loc["good", "total_core_hours"] == pytest.approx(2.2)
    assert pd.isna(rows.loc["twin", "total_core_hours"])  # paid for in good's row
    cost = summary["cost"]
    assert cost["stages"]["relax"]["core_hours"] == pytest.approx(2.0 + 1.0 + 200 / 3600)
    assert cost["failure_taxonomy"] == {"SCF not converged": 1, "time limit": 1, "memory": 0, "other": 0}
    relax = cost["projection"]["stages"]["relax"]
    # Measured: (2 + 1 + 200/3600) core-hours over 2 + 2 + 2 atoms; pending: killed's 4 atoms.
    assert relax["pending_jobs"] == 1 and relax["pending_atoms"] == 4
    assert relax["projected_core_hours"] == pytest.approx((3 + 200 / 3600) / 6 * 4)


def test_failure_kinds_and_projection_without_measurements():
    assert failure_kind("properties: MemoryError: cannot allocate") == "memory"
    assert failure_kind("SLURM OUT_OF_MEMORY: killed by SLURM: out of memory; rerun to retry") == "memory"
    assert failure_kind("SLURM TIMEOUT: killed by SLURM at its time limit") == "time limit"
    assert failure_kind("GPAW could not find a PAW setup") == "other"
    empty = projection({"relax": []}, {"relax": []}, {"relax": [5, 5]})
    assert empty["stages"]["relax"]["projected_core_hours"] is None and empty["pending_core_hours"] is None


def test_verdicts_in_words(results: Path):
    table, _ = _table_and_summary(results)
    verdicts = table.set_index("structure_id")["verdict"]
    assert verdicts["broken"].startswith("invalid: atoms 1 and 4")
    assert verdicts["scf"] == "failed: SCF did not converge"
    assert verdicts["killed"] == "not finished: its job was killed (time limit); rerun the workflow"
    assert verdicts["twin"].startswith("duplicate of good")
    good = verdicts["good"]
    assert "relaxed into a different structure (P4/nmm -> Fm-3m)" in good
    assert "eV/atom above the hull of the generated structures" in good
    assert "band gap on target" in good
    assert "band gap off target (+2.00 eV)" in verdicts["other"]


def test_provenance_in_every_row_and_the_summary(results: Path):
    table, summary = _table_and_summary(results)
    for column in PROVENANCE_COLUMNS:
        assert table[column].notna().all(), column
    assert set(table["settings_sha256"]) == {settings_hash(SETTINGS)}
    assert set(table["gpaw_data_version"]) == {summary["provenance"]["gpaw_data_version"]}
    assert summary["provenance"]["dftscreen_version"].startswith("0.1.0")
    assert summary["provenance"]["xc_functional"] == "PBE" and summary["provenance"]["dft_preset"] == "test"
    # Per-structure overrides change the hash of the rows they apply to only.
    assert settings_hash({**SETTINGS, "gpaw": {**SETTINGS["gpaw"], "maxiter": 3}}) != settings_hash(SETTINGS)


def test_test_preset_says_loudly_that_numbers_are_not_converged(results: Path):
    _, summary = _table_and_summary(results)
    assert summary["numbers_converged"] is False
    assert summary["warning"].startswith("NOT CONVERGED")
    standard = summarize(
        pd.DataFrame({"status": ["ok"], "n_sites": [2]}),
        stable_threshold_eV_per_atom=0.1,
        provenance=run_provenance(resolve_settings("standard")),
    )
    assert standard["warning"] is None and standard["numbers_converged"] is True


def test_funnel_stages_are_nested_and_optional_stages_appear_with_their_columns(results: Path):
    table, summary = _table_and_summary(results)
    stages = [s["stage"] for s in summary["funnel"]]
    assert stages == ["inputs", "parsed", "dft_ready", "unique", "relaxed", "stable", "on target"]
    counts = [s["count"] for s in summary["funnel"]]
    assert counts[:5] == [6, 5, 5, 4, 2] and counts == sorted(counts, reverse=True)
    # The known-materials stage writes `novel`, the ML stage `ml_status` and the screened_out status.
    with_optional = table.assign(novel=True, ml_status="relaxed")
    with_optional.loc[with_optional.index[1], "status"] = "screened_out"
    with_ml = summarize(with_optional, stable_threshold_eV_per_atom=0.1)
    assert [s["stage"] for s in with_ml["funnel"]][4:6] == ["novel", "passed ML screen"]


def test_report_has_every_section_valid_pngs_and_working_links(results: Path):
    table, summary = _table_and_summary(results)
    index = build_report(results, table, summary, run_settings=SETTINGS, targets_config=TARGETS, **STABLE)
    page = assert_report_complete(index, list(SECTIONS))
    for name in figure_names(TARGETS["properties"]):
        assert (index.parent / name).is_file(), name
    # Each relaxed structure links its CIF and both logs; the duplicate links its representative's.
    assert page.links.count("../dft/good/relaxed.cif") == 2
    assert "../logs/relax/other.log" in page.links
    text = index.read_text()
    assert "NOT CONVERGED" in text and 'class="warning"' in text
    assert "failed: SCF did not converge" in text and "time limit" in text
    assert json.dumps(settings_hash(SETTINGS)).strip('"') in text


def test_report_without_targets_or_stability_still_complete(results: Path, tmp_path: Path):
    table = table_from_results(results, False, None, run_settings=SETTINGS, stable_threshold_eV_per_atom=0.1)
    summary = summarize(table, stable_threshold_eV_per_atom=0.1, provenance=run_provenance(SETTINGS))
    index = build_report(results, table, summary, report_dir=tmp_path / "plain", run_settings=SETTINGS, **STABLE)
    page = assert_report_complete(index, [s for s in SECTIONS if s != "parity"])
    assert "parity" not in page.section_ids


def test_structures_table_is_capped_for_huge_runs(results: Path, tmp_path: Path):
    from dftscreen.report import structures_table

    table, _ = _table_and_summary(results)
    html = structures_table(table, results, tmp_path, max_rows=2)
    assert html.count('<tr class="status-') == 2 and "The first 2 of 6 structures" in html


def test_report_renders_in_headless_chromium(results: Path, tmp_path: Path):
    table, summary = _table_and_summary(results)
    index = build_report(results, table, summary, run_settings=SETTINGS, targets_config=TARGETS, **STABLE)
    assert_renders_in_chromium(index, tmp_path)


def test_verdict_of_a_structure_the_ml_screen_kept_from_dft():
    from dftscreen.verdict import verdict

    def words(row):
        return verdict(row, stable_threshold_eV_per_atom=0.1)

    row = {"status": "screened_out", "ml_e_above_hull_eV_per_atom": 0.45, "novel": True}
    assert words(row) == "novel, screened out by ML (0.45 eV/atom above the ML hull)"
    row = {"status": "ok", "matches_known_id": "mp-149", "e_above_hull_eV_per_atom": 0.0}
    assert words(row).startswith("known: matches mp-149, stable (0.00 eV/atom above hull)")
    row = {"status": "ok", "novel": True, "e_above_hull_eV_per_atom": -0.031}
    assert words(row).startswith("novel, stable (0.03 eV/atom below the known hull: a candidate new stable phase)")


def test_verdict_of_a_structure_dft_cannot_afford():
    from dftscreen.verdict import verdict

    row = {"status": "too_large", "reason": "needs about 366 GB per rank, more than the 12000 MB allowed"}
    assert verdict(row, stable_threshold_eV_per_atom=0.1) == (
        "too large for DFT: needs about 366 GB per rank, more than the 12000 MB allowed"
    )


def test_verdict_of_a_duplicate_says_what_became_of_its_representatives_dft():
    from dftscreen.verdict import verdicts

    table = pd.DataFrame([
        {"structure_id": "rep_nc", "status": "not_converged", "reason": "relaxation: step limit", "band_gap_hit": True},
        {"structure_id": "dup_nc", "status": "duplicate", "duplicate_of": "rep_nc", "band_gap_hit": True},
        {"structure_id": "rep_fail", "status": "failed", "reason": "relaxation: SCF did not converge (3 strategies)"},
        {"structure_id": "dup_fail", "status": "duplicate", "duplicate_of": "rep_fail"},
        {"structure_id": "rep_odd", "status": "failed", "reason": "properties: disk full"},
        {"structure_id": "dup_odd", "status": "duplicate", "duplicate_of": "rep_odd"},
        {"structure_id": "rep_ok", "status": "ok", "reason": "", "band_gap_hit": True},
        {"structure_id": "dup_ok", "status": "duplicate", "duplicate_of": "rep_ok", "band_gap_hit": True},
    ])
    by_id = dict(zip(table["structure_id"], verdicts(table, stable_threshold_eV_per_atom=0.1)))
    assert by_id["dup_nc"] == (
        "duplicate of rep_nc, whose relaxation did not converge (values from its last step), band gap on target"
    )
    assert by_id["dup_fail"] == "duplicate of rep_fail, whose DFT failed: SCF did not converge"
    assert by_id["dup_odd"] == "duplicate of rep_odd, whose DFT failed: properties: disk full"
    assert by_id["dup_ok"] == "duplicate of rep_ok, band gap on target"


def test_links_name_the_rows_relaxed_cif_not_a_stale_file(tmp_path: Path):
    from dftscreen.layout import ResultsLayout
    from dftscreen.report import _links

    layout = ResultsLayout.of(tmp_path)
    atomic_write_text(layout.relaxed_cif("x"), "data_left_by_an_earlier_run\n")
    # A failed relaxation: the table's relaxed_cif is empty; the file on disk is an earlier run's.
    failed = {"structure_id": "x", "status": "failed", "relaxed_cif": None, "duplicate_of": None}
    assert "CIF" not in _links(failed, tmp_path, tmp_path / "report")
    ok = dict(failed, status="ok", relaxed_cif=str(layout.relaxed_cif("x")))
    assert _links(ok, tmp_path, tmp_path / "report") == '<a href="../dft/x/relaxed.cif">CIF</a>'
    # A report made in another folder than the workflow's finds the CIF by its name in the DFT folder.
    elsewhere = dict(ok, relaxed_cif="some/other/cwd/dft/x/relaxed.cif")
    assert _links(elsewhere, tmp_path, tmp_path / "report") == '<a href="../dft/x/relaxed.cif">CIF</a>'


def test_a_change_of_space_group_is_named_by_the_groups_the_comparison_found():
    """Issue 30, item 9: spacegroup_changed compares relaxation_change's numbers (its own tolerance); the
    check's symbol (check.symprec_A) may be the relaxed group itself, and "P4/nmm -> P4/nmm" was printed."""
    from dftscreen.report import spacegroup_outcomes, structures_table
    from dftscreen.verdict import verdict

    row = {
        "structure_id": "x", "status": "ok", "spacegroup_symbol": "P4/nmm", "spacegroup_number": 129,
        "spacegroup_symbol_generated": "P4/mmm", "spacegroup_number_generated": 123,
        "spacegroup_symbol_relaxed": "P4/nmm", "spacegroup_number_relaxed": 129, "spacegroup_changed": True,
        "relaxed_matches_generated": False,
    }  # fmt: skip
    # A table from before spacegroup_symbol_generated: the check's symbol is the relaxed one, so unknown.
    old = {k: v for k, v in row.items() if not k.endswith("_generated")} | {"structure_id": "y"}
    kept = row | {"structure_id": "z", "spacegroup_changed": False, "spacegroup_symbol_relaxed": "P4/mmm"}
    table = pd.DataFrame([row, old, kept])
    outcomes, changes = spacegroup_outcomes(table)
    assert outcomes == {"changed": 2, "kept": 1}
    assert changes == {"P4/mmm -> P4/nmm": 1, "not recorded -> P4/nmm": 1}
    assert all(before != after for before, _, after in (c.partition(" -> ") for c in changes))
    cells = structures_table(table, Path("."), Path(".")).split('class="spacegroups">')[1:]
    assert [c.split("<")[0] for c in cells] == ["P4/mmm -&gt; P4/nmm", "not recorded -&gt; P4/nmm", "P4/nmm"]
    assert "(P4/mmm -> P4/nmm)" in verdict(row, **STABLE)
    assert "->" not in verdict(old, **STABLE)  # no made-up group


def test_relaxation_change_records_the_generated_symbol_it_compared():
    from pymatgen.core import Lattice, Structure

    from dftscreen.changes import relaxation_change

    cubic = Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    tetragonal = Structure(Lattice.tetragonal(4.0, 4.6), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    change = relaxation_change(cubic, tetragonal)
    assert (change["spacegroup_symbol_generated"], change["spacegroup_number_generated"]) == ("Pm-3m", 221)
    assert (change["spacegroup_symbol_relaxed"], change["spacegroup_changed"]) == ("P4/mmm", True)


def _two_cohorts(out: Path, tmp_path: Path) -> tuple[pd.DataFrame, dict, dict]:
    """The results folder's table in cohorts model=a (the first three rows) and model=b, with cohorts.json."""
    from dftscreen.cohort_table import write_run_cohorts
    from dftscreen.io import read_json

    table, summary = _table_and_summary(out)
    models = ["a" if i < 3 else "b" for i in range(len(table))]
    table = table.assign(cohort=[f"model={m}" for m in models], cohort_model=models)
    config = {"source": "folders", "folder_levels": ["model"], "baseline": {"model": "a"}}
    summary["cohorts"] = write_run_cohorts(table, config, tmp_path / "cohorts.csv", tmp_path / "cohorts.json")
    return table, summary, read_json(tmp_path / "cohorts.json")


def test_cohorts_section_with_two_cohorts(results: Path, tmp_path: Path):
    table, summary, cohorts = _two_cohorts(results, tmp_path)
    index = build_report(results, table, summary, report_dir=tmp_path / "report", run_settings=SETTINGS,
                         targets_config=TARGETS, cohorts=cohorts, cohort_ordered=[], **STABLE)  # fmt: skip
    assert_report_complete(index, list(SECTIONS))
    for name in figure_names(TARGETS["properties"], cohort_ordered=[]):
        assert (index.parent / name).is_file(), name
    section = index.read_text().split('<section id="cohorts">')[1].split("</section>")[0]
    assert "<h3>Differences from the baseline</h3>" in section and "indistinguishable at this sample size" in section
    assert section.count("<dt>dft_ready</dt>") == 1  # each definition once
    assert "model=b</td><td>model=a</td><td>dft_ready" in section
    assert "cohort_rates.png" in section and "cohort_useful_per_core_hour.png" in section
    assert_renders_in_chromium(index, tmp_path)


def test_cohorts_section_escapes_what_it_shows(tmp_path: Path):
    from dftscreen.cohort_table import DEFINITIONS, cohort_rates
    from dftscreen.report import cohorts_section

    table = pd.DataFrame({"structure_id": ["x", "y"], "status": ["ok", "invalid"], "cohort": ["<b>", "a&b"]})
    rates = cohort_rates(table, stable_threshold_eV_per_atom=0.0, metastable_threshold_eV_per_atom=0.1, alpha=0.05)
    html = cohorts_section(rates, None, None, DEFINITIONS, tmp_path)
    assert "<b>" not in html and "&lt;b&gt;" in html and "a&amp;b" in html
    assert (tmp_path / "cohort_rates.png").is_file() and not (tmp_path / "cohort_e_hull_ecdf.png").exists()


def test_one_cohort_is_one_line(results: Path, tmp_path: Path):
    from dftscreen.cohort_table import write_run_cohorts
    from dftscreen.io import read_json

    table, summary = _table_and_summary(results)
    write_run_cohorts(table, None, tmp_path / "cohorts.csv", tmp_path / "cohorts.json")
    index = build_report(results, table, summary, report_dir=tmp_path / "report", run_settings=SETTINGS,
                         cohorts=read_json(tmp_path / "cohorts.json"), **STABLE)  # fmt: skip
    section = index.read_text().split('<section id="cohorts">')[1].split("</section>")[0]
    assert "One cohort (all): nothing to compare" in section and "<table" not in section
    assert not (index.parent / "cohort_rates.png").exists()  # no config cohorts: no cohort figures declared


def test_cohorts_section_with_an_ordered_factor_has_trends_and_a_response_curve(tmp_path: Path):
    from dftscreen.cohort_table import DEFINITIONS, cohort_report_data
    from dftscreen.report import cohorts_section

    rows = [{"structure_id": f"{m}-{t}-{i}", "cohort": f"model={m}, T={t:g}", "cohort_model": m, "cohort_T": t,
             "status": "ok" if i < (8 - 2 * t if m == "x" else 5) else "invalid"}
            for m in ("x", "y") for t in (1.0, 2.0, 3.0) for i in range(10)]  # fmt: skip
    config = {"source": "regex", "regex": r"(?P<model>[xy])-(?P<T>[\d.]+)-", "ordered": ["T"],
              "baseline": {"model": "y"}}  # fmt: skip
    rates, comparisons, trends = cohort_report_data(pd.DataFrame(rows), config)
    html = cohorts_section(rates, comparisons, trends, DEFINITIONS, tmp_path, ordered=["T"])
    assert "<h3>Trends over ordered factors</h3>" in html and "model=x" in html and "falls" in html
    assert 'src="cohort_response_T.png"' in html and (tmp_path / "cohort_response_T.png").is_file()
    assert html.count("<dt>z</dt>") == 1 and html.count("<dt>verdict</dt>") == 1 and html.count("<dt>holm_p</dt>") == 2
    assert "model=x, T=1</td><td>model=y, T=1</td>" in html  # each T against the baseline model at that T
