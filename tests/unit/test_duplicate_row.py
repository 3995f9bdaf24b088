"""A duplicate's row shows its representative's DFT values and status ``duplicate`` (no DFT run here).

The DFT records are hand-made JSON written where the workflow writes them
(``<dft>/<structure_id>/{relax,properties}.json``); only the representative has any.
"""

from pathlib import Path

import pytest

from dftscreen.aggregate import build_table
from dftscreen.io import atomic_write_json

REPRESENTATIVE = {
    "structure_id": "TiO2__rank01", "source_file": "TiO2/rank01.cif", "valid": True, "status": "",
    "reason": "", "reduced_formula": "TiO2", "n_sites": 6, "duplicate_of": None,
}
DUPLICATE = {
    "structure_id": "TiO2__rank02", "source_file": "TiO2/rank02.cif", "valid": False, "status": "duplicate",
    "reason": "same crystal as TiO2__rank01 (pymatgen StructureMatcher); DFT is run once, on TiO2__rank01",
    "reduced_formula": "TiO2", "n_sites": 6, "duplicate_of": "TiO2__rank01",
}
RELAX = {
    "status": "relaxed", "converged": True, "preset": "test", "n_ionic_steps": 4, "formula": "Ti2O4",
    "energy_eV": -52.8, "initial_volume_A3": 62.4, "final_volume_A3": 64.9, "relaxed_cif": "relaxed.cif",
    "mpi_ranks": 2, "max_force_eV_per_A": 0.03, "max_stress_GPa": 0.1, "wall_time_s": 41.0,
}
PROPERTIES = {
    "status": "done", "energy_eV": -52.9, "energy_per_atom_eV": -8.8167, "band_gap_eV": 1.77,
    "direct_band_gap_eV": 1.80, "gap_is_direct": False, "vbm_kpoint": [0.5, 0.5, 0.0],
    "cbm_kpoint": [0.0, 0.0, 0.0], "magnetic_moment_muB": 0.0, "is_magnetic": False, "wall_time_s": 12.0,
}
DFT_COLUMNS = ["energy_eV", "energy_per_atom_eV", "band_gap_eV", "direct_band_gap_eV", "volume_relaxed_A3",
               "n_ionic_steps", "dft_preset", "relaxed_cif", "cbm_kpoint_frac"]


def test_duplicate_row_shows_representative_dft_values(tmp_path: Path):
    dft = tmp_path / "dft"
    atomic_write_json(dft / "TiO2__rank01" / "relax.json", RELAX)
    atomic_write_json(dft / "TiO2__rank01" / "properties.json", PROPERTIES)
    table = build_table([REPRESENTATIVE, DUPLICATE], dft).set_index("structure_id")
    representative, duplicate = table.loc["TiO2__rank01"], table.loc["TiO2__rank02"]
    assert representative["status"] == "ok"
    assert duplicate["status"] == "duplicate"
    assert duplicate["duplicate_of"] == "TiO2__rank01"
    assert "DFT status of TiO2__rank01: ok" in duplicate["reason"]
    for column in DFT_COLUMNS:
        assert duplicate[column] == representative[column], column
    assert duplicate["band_gap_eV"] == pytest.approx(1.77)
    assert duplicate["volume_change_pct"] == pytest.approx(100 * (64.9 - 62.4) / 62.4)
    # The relaxed CIF named is the representative's: the duplicate has no DFT folder of its own.
    assert duplicate["relaxed_cif"] == str(dft / "TiO2__rank01" / "relaxed.cif")
    assert not (dft / "TiO2__rank02").exists()


def test_duplicate_of_an_unfinished_representative_says_so(tmp_path: Path):
    table = build_table([REPRESENTATIVE, DUPLICATE], tmp_path / "dft").set_index("structure_id")
    duplicate = table.loc["TiO2__rank02"]
    assert duplicate["status"] == "duplicate"
    assert "DFT status of TiO2__rank01: not_finished" in duplicate["reason"]
    assert duplicate["energy_eV"] is None or duplicate["energy_eV"] != duplicate["energy_eV"]  # None or NaN


def test_duplicate_shares_representative_formation_energy(tmp_path: Path):
    dft = tmp_path / "dft"
    atomic_write_json(dft / "TiO2__rank01" / "relax.json", RELAX)
    atomic_write_json(dft / "TiO2__rank01" / "properties.json", PROPERTIES)
    elements = [
        {"element": "Ti", "status": "relaxed", "formula": "Ti2", "energy_eV": -15.5},
        {"element": "O", "status": "relaxed", "formula": "O2", "energy_eV": -9.8},
    ]
    table = build_table([REPRESENTATIVE, DUPLICATE], dft, element_records=elements).set_index("structure_id")
    formation = table["formation_energy_eV_per_atom"]
    assert formation["TiO2__rank02"] == pytest.approx(formation["TiO2__rank01"])
    # Ti2O4 cell: (E - 2 E(Ti) - 4 E(O)) / 6 atoms, with E per atom of the elemental records.
    expected = (-52.8 - 2 * (-15.5 / 2) - 4 * (-9.8 / 2)) / 6
    assert formation["TiO2__rank01"] == pytest.approx(expected, abs=1e-6)


def test_duplicate_with_another_cell_shows_one_crystal_its_representatives(tmp_path: Path):
    # The representative is a 2-atom primitive cell; the duplicate the 8-atom conventional cell,
    # 15 % larger. Its DFT columns, per-cell ones included, and the volume change and relaxed
    # density derived from them are the representative's; its own cell's check columns stay its own.
    dft = tmp_path / "dft"
    representative = dict(REPRESENTATIVE, structure_id="NaCl_prim", reduced_formula="NaCl", n_sites=2,
                          volume_generated_A3=44.85, density_generated_g_cm3=2.164)
    duplicate = dict(DUPLICATE, structure_id="NaCl_conv", reduced_formula="NaCl", n_sites=8,
                     volume_generated_A3=206.32, density_generated_g_cm3=1.882, duplicate_of="NaCl_prim",
                     reason="same crystal as NaCl_prim")
    atomic_write_json(dft / "NaCl_prim" / "relax.json", dict(
        RELAX, formula="ClNa", energy_eV=-6.8, initial_volume_A3=44.85, final_volume_A3=1.02 * 44.85))
    atomic_write_json(dft / "NaCl_prim" / "properties.json", dict(
        PROPERTIES, energy_eV=-6.8, energy_per_atom_eV=-3.4, magnetic_moment_muB=0.0))
    table = build_table([representative, duplicate], dft).set_index("structure_id")
    rep, dup = table.loc["NaCl_prim"], table.loc["NaCl_conv"]
    assert rep["volume_change_pct"] == pytest.approx(2.0)
    assert rep["density_relaxed_g_cm3"] == pytest.approx(2.164 / 1.02)
    for column in [*DFT_COLUMNS, "volume_change_pct", "density_relaxed_g_cm3", "magnetic_moment_muB",
                   "max_force_eV_per_A", "relax_converged"]:
        assert dup[column] == rep[column], column
    # Per atom, the energy is the same crystal's whichever cell the row's own columns describe.
    assert dup["energy_per_atom_eV"] == pytest.approx(rep["energy_eV"] / rep["n_sites"])
    assert (dup["n_sites"], dup["volume_generated_A3"], dup["density_generated_g_cm3"]) == (8, 206.32, 1.882)
    assert dup["status"] == "duplicate" and "DFT status of NaCl_prim: ok" in dup["reason"]
