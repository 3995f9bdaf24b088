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
