"""The results table and summary with known phases and novelty (hand-made records, no DFT)."""

from pathlib import Path

import pytest

from dftscreen.aggregate import build_table
from dftscreen.io import atomic_write_json
from dftscreen.summary import summarize
from dftscreen.table import add_known_columns, chosen_phase_names

CHECK = {"structure_id": "gen", "source_file": "gen.cif", "valid": True, "status": "", "reason": "",
         "reduced_formula": "TiO2", "n_sites": 6, "duplicate_of": None}
DUPLICATE = {**CHECK, "structure_id": "gen_copy", "source_file": "gen_copy.cif", "valid": False,
             "status": "duplicate", "reason": "same crystal as gen", "duplicate_of": "gen"}
RELAX = {"status": "relaxed", "converged": True, "formula": "Ti2O4", "energy_eV": -52.8, "relaxed_cif": "relaxed.cif"}
PROPERTIES = {"status": "done", "energy_eV": -52.8, "energy_per_atom_eV": -8.8}
ELEMENTS = [
    {"element": "Ti", "status": "relaxed", "formula": "Ti", "energy_eV": -7.7,
     "reference_description": "hcp Ti (ASE reference state)"},
    {"element": "O", "status": "relaxed", "formula": "O2", "energy_eV": -9.8,
     "reference_description": "O2 molecule in a 8 Å box"},
]
CHOSEN = {"phases": [
    {"phase_key": "TiO2-aaaa", "entry_id": "mp-2657", "n_sites": 6},
    {"phase_key": "Ti-bbbb", "entry_id": "mp-72", "n_sites": 2},
    {"phase_key": "TiO-cccc", "entry_id": "mp-2664", "n_sites": 2},
]}
PHASES = [
    {"structure_id": "TiO2-aaaa", "status": "relaxed", "formula": "Ti2O4", "energy_eV": -53.0},
    # A lower Ti than the workflow's own reference: it becomes Ti's chemical potential.
    {"structure_id": "Ti-bbbb", "status": "relaxed", "formula": "Ti2", "energy_eV": -15.6},
    {"structure_id": "TiO-cccc", "status": "relaxed", "formula": "Ti1O1", "energy_eV": -17.0},
]


def table(tmp_path: Path):
    atomic_write_json(tmp_path / "dft" / "gen" / "relax.json", RELAX)
    atomic_write_json(tmp_path / "dft" / "gen" / "properties.json", PROPERTIES)
    return build_table([CHECK, DUPLICATE], tmp_path / "dft", element_records=ELEMENTS, phase_records=PHASES,
                       phase_names=chosen_phase_names(CHOSEN))


def test_lowest_elemental_candidate_is_used_and_named(tmp_path: Path):
    row = table(tmp_path).set_index("structure_id").loc["gen"]
    # Ti at -7.8 eV/atom (the known phase), not -7.7 (ASE's hcp): (E - 2 mu_Ti - 4 mu_O) / 6.
    assert row["formation_energy_eV_per_atom"] == pytest.approx((-52.8 - 2 * -7.8 - 4 * -4.9) / 6)
    assert row["elemental_references"] == "O: O2 molecule in a 8 Å box; Ti: phase Ti-bbbb [mp-72]"
    assert row["hull_reference"] == (
        "elements + 2 reference phases (TiO-cccc [mp-2664], TiO2-aaaa [mp-2657])")
    # The known TiO2 is 0.2 eV per 6 atoms lower.
    assert row["e_above_hull_eV_per_atom"] == pytest.approx(0.2 / 6)


def test_novelty_columns_follow_the_representative_and_feed_the_summary(tmp_path: Path):
    novelty = {"known_set": "mp.json.gz (3 entries)", "training_set": None, "structures": {
        "gen": {"smact_valid": True, "novel": True, "matches_known_id": None},
        "gen_copy": {"smact_valid": True},
    }}
    rows = add_known_columns(table(tmp_path), novelty)
    assert "novel_vs_training" not in rows.columns  # no training set given
    by_id = rows.set_index("structure_id")
    assert by_id.loc["gen_copy", "novel"] == True  # noqa: E712  (the representative's)
    assert by_id.loc["gen_copy", "smact_valid"] == True  # noqa: E712
    rows.loc[rows["structure_id"] == "gen", "status"] = "ok"
    summary = summarize(rows, stable_threshold_eV_per_atom=0.1, known_set=novelty["known_set"])
    assert summary["novel"] == {"count": 1, "rate": 0.5, "known_set": "mp.json.gz (3 entries)"}
    # 0.033 eV/atom above the hull: stable at 0.1, unique and novel.
    assert summary["stable_unique_novel"]["count"] == 1
    assert summary["stable_unique_novel"]["hull_column"] == "e_above_hull_eV_per_atom"
    assert summary["smact_valid"]["count"] == 2
    strict = summarize(rows, stable_threshold_eV_per_atom=0.01, known_set=novelty["known_set"])
    assert strict["stable_unique_novel"]["count"] == 0
    assert "novel" not in summarize(rows, stable_threshold_eV_per_atom=0.1)  # without a known set: no novelty rate


def test_two_candidates_of_one_element_each_keep_their_name(tmp_path: Path):
    """β-Sn (ASE's reference state) and α-Sn (Δ-test): the lower one is used and named."""
    from dftscreen.references import delta_test_candidate

    assert "Δ-test" in delta_test_candidate("Sn").description and len(delta_test_candidate("Sn").atoms) == 2
    assert delta_test_candidate("Fe") is None  # the Δ-test's bcc Fe is ASE's reference state
    assert delta_test_candidate("O") is None
    # Carbon: graphite (PBE ground state, 0.117 eV/atom below diamond at the test preset) beside diamond.
    graphite = delta_test_candidate("C")
    assert len(graphite.atoms) == 4 and graphite.atoms.cell.cellpar()[2] > 8.0
    check = {**CHECK, "reduced_formula": "SnO2"}
    atomic_write_json(tmp_path / "dft" / "gen" / "relax.json", {**RELAX, "formula": "Sn2O4", "energy_eV": -40.0})
    atomic_write_json(tmp_path / "dft" / "gen" / "properties.json", PROPERTIES)
    elements = [
        {"element": "Sn", "status": "relaxed", "formula": "Sn2", "energy_eV": -7.6,
         "reference_description": "bct Sn (ASE reference state)"},
        {"element": "Sn", "status": "relaxed", "formula": "Sn2", "energy_eV": -7.7,
         "reference_description": "Sn, Δ-test PBE structure (2-atom primitive cell, ASE dcdft collection)"},
        ELEMENTS[1],
    ]
    row = build_table([check], tmp_path / "dft", element_records=elements).iloc[0]
    assert row["elemental_references"] == (
        "O: O2 molecule in a 8 Å box; Sn: Sn, Δ-test PBE structure (2-atom primitive cell, ASE dcdft collection)")
    assert row["formation_energy_eV_per_atom"] == pytest.approx((-40.0 - 2 * -3.85 - 4 * -4.9) / 6)


def test_partial_table_reads_references_from_the_library(tmp_path: Path):
    """After a failed run, the partial table finds elements and chosen phases in the reference library."""
    from dftscreen.table import table_from_results

    out, library = tmp_path / "out", tmp_path / "library" / "0123456789abcdef"
    atomic_write_json(out / "check" / "checks.json", [CHECK])
    atomic_write_json(out / "dft" / "gen" / "relax.json", RELAX)
    atomic_write_json(out / "dft" / "gen" / "properties.json", PROPERTIES)
    atomic_write_json(out / "known" / "competing_phases.json", CHOSEN)
    atomic_write_json(out / "known" / "novelty.json", {"known_set": "mp", "training_set": None, "structures": {
        "gen": {"smact_valid": True, "novel": False, "matches_known_id": "mp-2657"}}})
    for record in ELEMENTS:
        atomic_write_json(library / "elements" / record["element"] / "auto" / "relax.json", record)
    for record in PHASES:
        atomic_write_json(library / "phases" / record["structure_id"] / "relax.json", record)
    row = table_from_results(out, reference_library=library, stable_threshold_eV_per_atom=0.1).iloc[0]
    assert row["matches_known_id"] == "mp-2657" and not row["novel"]
    assert row["e_above_hull_eV_per_atom"] == pytest.approx(0.2 / 6)
    assert "TiO2-aaaa [mp-2657]" in row["hull_reference"]


def test_partial_table_takes_only_this_runs_element_candidates_from_a_shared_library(tmp_path: Path):
    """Another run's CIF reference for O (lower in energy) sits in the shared library: not ours, not used."""
    from dftscreen.table import table_from_results

    out, library = tmp_path / "out", tmp_path / "library" / "0123456789abcdef"
    atomic_write_json(out / "check" / "checks.json", [CHECK])
    atomic_write_json(out / "dft" / "gen" / "relax.json", RELAX)
    atomic_write_json(out / "dft" / "gen" / "properties.json", PROPERTIES)
    for record in ELEMENTS:
        atomic_write_json(library / "elements" / record["element"] / "auto-1" / "relax.json", record)
    other_run = {"element": "O", "status": "relaxed", "formula": "O2", "energy_eV": -10.8,
                 "reference_description": "O from the supplied CIF O_other.cif"}
    atomic_write_json(library / "elements" / "O" / "cif-2" / "relax.json", other_run)

    def ours(element: str) -> list[str]:
        return ["auto-1"]

    row = table_from_results(
        out, reference_library=library, element_keys=ours, stable_threshold_eV_per_atom=0.1
    ).iloc[0]
    assert row["formation_energy_eV_per_atom"] == pytest.approx((-52.8 - 2 * -7.7 - 4 * -4.9) / 6)
    assert "O_other" not in row["elemental_references"]
    # Without the run's keys every record counts (the behaviour before): the other run's O wins.
    row = table_from_results(out, reference_library=library, stable_threshold_eV_per_atom=0.1).iloc[0]
    assert "O_other" in row["elemental_references"]
