"""Bookkeeping of the results table (records here are hand-made; DFT numbers are tested in test_dft)."""

from pathlib import Path

import pandas as pd
import pytest

from dftscreen.aggregate import build_table, table_row
from dftscreen.columns import COLUMNS, PROVENANCE_COLUMNS
from dftscreen.io import atomic_write_json
from dftscreen.table import write_table

VALID = {
    "structure_id": "a",
    "source_file": "a.cif",
    "valid": True,
    "reason": "",
    "reduced_formula": "NaCl",
    "n_sites": 2,
}
INVALID = {"structure_id": "b", "source_file": "b c.cif", "valid": False, "reason": "pymatgen could not parse\nline 2"}
RELAXED = {
    "status": "relaxed",
    "converged": True,
    "preset": "test",
    "n_ionic_steps": 3,
    "initial_volume_A3": 100.0,
    "final_volume_A3": 90.0,
    "relaxed_cif": "relaxed.cif",
    "mpi_ranks": 2,
}
PROPS = {
    "status": "done",
    "energy_eV": -7.0,
    "energy_per_atom_eV": -3.5,
    "band_gap_eV": 4.0,
    "direct_band_gap_eV": 4.0,
    "gap_is_direct": True,
    "vbm_kpoint": [0, 0, 0],
    "cbm_kpoint": [0, 0, 0.5],
    "magnetic_moment_muB": 0.0,
    "is_magnetic": False,
}


def test_status_of_each_stage_outcome():
    assert table_row(INVALID, None, None)["status"] == "invalid"
    assert table_row(INVALID, None, None)["reason"] == "pymatgen could not parse line 2"
    assert table_row(VALID, None, None)["status"] == "not_finished"
    assert table_row(VALID, RELAXED, None)["status"] == "not_finished"
    failed = table_row(VALID, {"status": "failed", "reason": "SCF did not converge"}, None)
    assert failed["status"] == "failed" and failed["reason"] == "relaxation: SCF did not converge"
    ok = table_row(VALID, RELAXED, PROPS)
    assert ok["status"] == "ok" and ok["reason"] == ""
    assert ok["volume_change_pct"] == pytest.approx(-10.0)
    assert ok["cbm_kpoint_frac"] == "0.0000 0.0000 0.5000"
    unconverged = table_row(VALID, dict(RELAXED, status="not_converged", reason="step limit"), PROPS)
    assert unconverged["status"] == "not_converged" and unconverged["band_gap_eV"] == 4.0
    prop_failed = table_row(VALID, RELAXED, {"status": "failed", "reason": "boom"})
    assert prop_failed["status"] == "failed" and prop_failed["reason"].startswith("properties:")


def test_build_and_write_table_one_row_per_input(tmp_path: Path):
    dft = tmp_path / "dft"
    atomic_write_json(dft / "a" / "relax.json", RELAXED)
    atomic_write_json(dft / "a" / "properties.json", PROPS)
    third = dict(VALID, structure_id="c", source_file="c.cif")  # DFT never ran
    table = build_table([VALID, INVALID, third], dft)
    assert list(table.columns) == COLUMNS
    assert list(table["status"]) == ["ok", "invalid", "not_finished"]
    write_table(table, tmp_path / "r.csv", tmp_path / "r.parquet")
    from_csv = pd.read_csv(tmp_path / "r.csv")
    from_parquet = pd.read_parquet(tmp_path / "r.parquet")
    assert len(from_csv) == len(from_parquet) == 3
    assert from_parquet["n_sites"].dtype.name == "Int64"  # no 2.0 for a site count
    assert from_csv.loc[0, "band_gap_eV"] == 4.0


def test_every_column_with_a_unit_says_so():
    unitless = {
        "cbm_kpoint_frac",
        "decomposition_products",
        "dft_preset",
        "elemental_references",
        "failure_category",
        "gap_is_direct",
        "gllbsc_note",
        "hull_reference",
        "id_note",
        "is_magnetic",
        "magnetic_ordering",
        "mpi_ranks",
        "n_ionic_steps",
        "n_sites",
        "reason",
        "reduced_formula",
        "relax_converged",
        "relax_kpt_density_per_A",
        "relax_n_starts",
        "relax_resumed_from_step",
        "relaxed_cif",
        "relaxed_matches_generated",
        "scf_strategy",
        "source_file",
        "spacegroup_changed",
        "spacegroup_number",
        "spacegroup_number_generated",
        "spacegroup_number_relaxed",
        "spacegroup_symbol",
        "spacegroup_symbol_generated",
        "spacegroup_symbol_relaxed",
        "status",
        "structure_id",
        "structure_matcher_rms_norm",
        "vbm_kpoint_frac",
        "verdict",
        *PROVENANCE_COLUMNS,
    }
    units = ("_eV", "_A", "_A3", "_GPa", "_pct", "_s", "_muB", "_g_cm3", "_eV_per_A", "_eV_per_atom", "_core_hours")
    for column in set(COLUMNS) - unitless:
        assert column.endswith(units), column


def test_stability_note_names_only_the_missing_elements_reasons():
    from dftscreen.aggregate import add_stability

    relaxed = {"status": "relaxed"}
    elements = [
        dict(relaxed, element="Na", formula="Na2", energy_eV=-2.6),
        {"element": "S", "status": "failed", "reason": "stopped at the time limit"},
        {"element": "Se", "status": "failed", "reason": "SCF did not converge"},
    ]
    rows = [{"structure_id": "nase", "_relax": dict(relaxed, formula="Na2Se", energy_eV=-9.0)}]
    add_stability(rows, elements, [])
    (row,) = rows
    assert row["stability_note"] == "no elemental reference energy for Se (Se: SCF did not converge)"
    assert "formation_energy_eV_per_atom" not in row


def test_an_elemental_phase_gives_the_hull_its_element_and_names_no_compound_hull():
    """Fe-S with S from the known set's α-S phase (S's own reference failed): a hull value, not a silent gap."""
    from dftscreen.aggregate import add_stability

    relaxed = {"status": "relaxed"}
    elements = [dict(relaxed, element="Fe", formula="Fe2", energy_eV=-16.6),
                {"element": "S", "status": "failed", "reason": "SCF did not converge"}]
    phases = [dict(relaxed, structure_id="S-abc", formula="S32", energy_eV=-32 * 4.1)]
    rows = [{"structure_id": "fes2", "_relax": dict(relaxed, formula="Fe2S4", energy_eV=-16.6 - 4 * 4.1 - 6 * 0.3)}]
    add_stability(rows, elements, phases, {"S-abc": "S-abc [mp-96]"})
    (row,) = rows
    assert row["formation_energy_eV_per_atom"] == pytest.approx(-0.3)
    # No compound phase: the hull is still one of elements and generated structures, and named so.
    assert row["e_above_hull_vs_generated_only_eV_per_atom"] == pytest.approx(0.0)
    assert "e_above_hull_eV_per_atom" not in row
    assert row["decomposition_products"] == "FeS2 (1.00)"
    assert "S: phase S-abc [mp-96]" in row["elemental_references"]


def test_a_hull_mixing_energies_of_different_smearing_says_so():
    """A structure relaxed on the SCF ladder's wide_smearing rung (0.2 eV) shares a hull with references at 0.05 eV."""
    from dftscreen.aggregate import add_stability
    from dftscreen.settings import PRESETS

    preset = {"preset": "standard", **PRESETS["standard"]}
    relaxed = {"status": "relaxed", "settings": preset, "scf_strategy": "preset"}
    elements = [dict(relaxed, element="Na", formula="Na2", energy_eV=-2.6),
                dict(relaxed, element="Cl", formula="Cl2", energy_eV=-3.6)]
    rows = [{"structure_id": "plain", "_relax": dict(relaxed, formula="NaCl", energy_eV=-7.0)},
            {"structure_id": "smeared", "_relax": dict(relaxed, formula="NaCl", energy_eV=-6.9,
                                                       scf_strategy="wide_smearing")}]
    add_stability(rows, elements, [])
    plain, smeared = rows
    assert "stability_note" not in plain
    assert smeared["stability_note"].startswith("energies of different DFT settings in one hull "
                                                "(this structure: smearing_eV 0.2; Cl reference: smearing_eV 0.05")
    # The values are still given: the note qualifies them.
    assert smeared["formation_energy_eV_per_atom"] == pytest.approx((-6.9 + 1.3 + 1.8) / 2)


def test_volume_change_and_relaxed_density_are_against_the_generated_cell_after_ml_prerelaxation():
    # With ML pre-relaxation relax.json's initial volume is the ML-relaxed cell's (110 Å³),
    # not the generated one's (100 Å³, in the check record).
    check = dict(VALID, volume_generated_A3=100.0, density_generated_g_cm3=2.0)
    relax = dict(RELAXED, initial_volume_A3=110.0, final_volume_A3=95.0,
                 start_cif="results/ml/structures/a/relaxed.cif",
                 compared_with_cif="results/ml/structures/a/generated.cif")
    row = table_row(check, relax, PROPS)
    assert row["volume_change_pct"] == pytest.approx(-5.0)
    assert row["density_relaxed_g_cm3"] == pytest.approx(2.0 * 100.0 / 95.0)
    # Without the generated volume, the ML start's volume does not stand in for it.
    no_volume = table_row(VALID, relax, PROPS)
    assert no_volume.get("volume_change_pct") is None and no_volume.get("density_relaxed_g_cm3") is None


def test_properties_left_from_an_earlier_relaxation_make_the_row_not_finished(tmp_path: Path):
    import os

    dft = tmp_path / "dft"
    # A rerun with another preset relaxed again and stopped before the properties job.
    atomic_write_json(dft / "a" / "properties.json", dict(PROPS, preset="test"))
    atomic_write_json(dft / "a" / "relax.json", dict(RELAXED, preset="standard"))
    row = build_table([VALID], dft).iloc[0]
    assert row["status"] == "not_finished" and pd.isna(row["band_gap_eV"])
    assert "preset test" in row["reason"] and "rerun the workflow" in row["reason"]
    # Same preset (e.g. changed settings), but properties.json older than relax.json, as Snakemake sees it.
    atomic_write_json(dft / "a" / "properties.json", dict(PROPS, preset="standard"))
    relax_time = os.stat(dft / "a" / "relax.json").st_mtime
    os.utime(dft / "a" / "properties.json", (relax_time - 3600, relax_time - 3600))
    row = build_table([VALID], dft).iloc[0]
    assert row["status"] == "not_finished" and "3600 s before relax.json" in row["reason"]
    # Written after its relaxation: the row is whole.
    os.utime(dft / "a" / "properties.json", (relax_time + 60, relax_time + 60))
    row = build_table([VALID], dft).iloc[0]
    assert row["status"] == "ok" and row["band_gap_eV"] == 4.0


def test_a_structure_whose_records_were_deleted_after_its_pack_finished_says_how_to_recompute_it(tmp_path: Path):
    dft = tmp_path / "dft"
    other = dict(VALID, structure_id="d", source_file="d.cif")
    unpacked = dict(VALID, structure_id="e", source_file="e.cif")
    # Pack 0 ran a and d; e was in no pack that finished (still to run).
    atomic_write_json(tmp_path / "packs" / "pack_0.json", {
        "pack": 0, "members": [{"structure_id": "a", "finished": True}, {"structure_id": "d", "finished": True}]})
    atomic_write_json(dft / "d" / "relax.json", RELAXED)
    atomic_write_json(dft / "d" / "properties.json", PROPS)
    table = build_table([VALID, other, unpacked], dft).set_index("structure_id")
    assert table.loc["d", "status"] == "ok"
    assert table.loc["a", "status"] == "not_finished"
    pack_record = str(tmp_path / "packs" / "pack_0.json")
    assert f"delete {pack_record} and rerun" in table.loc["a", "reason"], table.loc["a", "reason"]
    assert table.loc["e", "reason"] == "relaxation has not finished: rerun the workflow"
