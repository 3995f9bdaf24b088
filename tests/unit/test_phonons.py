"""Finite-displacement phonons (dftscreen.phonons) with ASE's EMT standing in for the ML potential and GPAW.

EMT gives stable fcc Cu and Al, and an unstable simple cubic Cu (imaginary at M), in
seconds; the DFT job's file-per-displacement reuse runs with an injected force
calculator. Real GPAW: tests/dft/test_phonons_gpaw.py; the ML potential: test_phonons_ml.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from dftscreen import status_codes
from dftscreen.layout import ResultsLayout, phonon_displacement_name
from dftscreen.phonons import (
    PhononSettings,
    build_phonopy,
    compute_phonons,
    displaced_supercells,
    imaginary_mode_counts,
    qpoint_label,
    run_dft_phonons,
    supercell_matrix,
    tiled_unit_cell_forces,
    undisplaced_supercell,
)

from emt_factory import distorted_copper


class EMTForces:
    """A ``force_calculator`` (atoms, index) -> forces with EMT, counting the calls and their indices."""

    def __init__(self, fail_at: int | None = None):
        self.indices: list[int] = []
        self.fail_at = fail_at

    def __call__(self, atoms: Atoms, index: int) -> np.ndarray:
        self.indices.append(index)
        if index == self.fail_at:
            raise RuntimeError("the calculator broke")
        atoms.calc = EMT()
        return atoms.get_forces().copy()


def write_cif(atoms: Atoms, path: Path) -> Path:
    CifWriter(AseAtomsAdaptor.get_structure(atoms)).write_file(path)
    return path


# --- supercells and settings -----------------------------------------------------------------------------


def test_supercell_matrix_reaches_the_length_along_each_perpendicular_width():
    assert supercell_matrix(np.diag([4.0, 5.0, 12.0]), 10.0).tolist() == [[3, 0, 0], [0, 2, 0], [0, 0, 1]]
    assert supercell_matrix(np.diag([4.0, 4.0, 4.0]), 1.0).tolist() == np.eye(3, dtype=int).tolist()
    # Exactly the length is enough (no extra repeat from rounding).
    assert np.diag(supercell_matrix(np.diag([5.0, 5.0, 5.0]), 10.0)).tolist() == [2, 2, 2]
    # fcc primitive cell, a = 3.61 Å: the widths are a/√3 = 2.084 Å, not the 2.55 Å vector lengths.
    cell = np.asarray(bulk("Cu", "fcc", a=3.61).cell)
    assert np.diag(supercell_matrix(cell, 10.0)).tolist() == [5, 5, 5]
    # Hexagonal, a = 3 Å: the in-plane width is a·sin 60° = 2.598 Å, so 3 repeats reach 7.79 Å, not 9 Å.
    hexagonal = np.array([[3.0, 0, 0], [-1.5, 3.0 * np.sqrt(3) / 2, 0], [0, 0, 20.0]])
    assert np.diag(supercell_matrix(hexagonal, 7.7)).tolist() == [3, 3, 1]
    assert np.diag(supercell_matrix(hexagonal, 7.9)).tolist() == [4, 4, 1]


def test_settings_from_the_config_section_ignore_its_switches():
    settings = PhononSettings.from_config({"ml": True, "dft": "candidates", "min_supercell_length_A": 8,
                                           "max_supercell_atoms": 200.0})
    assert settings.min_supercell_length_A == 8.0 and settings.max_supercell_atoms == 200
    assert isinstance(settings.max_supercell_atoms, int)
    assert PhononSettings.from_config(settings.to_dict()) == settings
    assert PhononSettings.from_config({}) == PhononSettings()


def test_phonopy_keeps_the_given_cell_and_displaces_symmetry_reduced():
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    phonon = build_phonopy(atoms, PhononSettings(min_supercell_length_A=8.0))
    # The conventional 4-atom cell stays the unit cell (no primitive search): q in its reciprocal basis.
    assert len(phonon.primitive) == 4
    assert np.allclose(phonon.primitive.cell, atoms.cell)
    cells = displaced_supercells(phonon)
    assert len(cells) == 1 and len(cells[0]) == 32  # fcc: one displacement for all atoms
    moved = np.linalg.norm(cells[0].positions - undisplaced_supercell(phonon).positions, axis=1)
    assert moved.max() == pytest.approx(0.01)


# --- stability --------------------------------------------------------------------------------------------


def emt_phonons(atoms: Atoms, **settings) -> dict:
    return compute_phonons(atoms, PhononSettings(**settings), EMTForces())


def test_fcc_copper_one_atom_cell_is_stable_with_acoustic_zeros_at_gamma():
    record = emt_phonons(bulk("Cu", "fcc", a=3.61))
    assert record["status"] == status_codes.COMPUTED and record["reason"] == ""
    assert record["supercell_matrix"] == [[5, 0, 0], [0, 5, 0], [0, 0, 5]] and record["n_supercell_atoms"] == 125
    assert record["n_displacements"] == 1 and record["n_computed"] == 2 and record["n_reused"] == 0
    assert record["dynamically_stable"] and record["n_imaginary_modes"] == 0
    assert record["gamma_frequencies_THz"] == pytest.approx([0, 0, 0], abs=1e-3)  # sum rule imposed
    assert record["min_frequency_THz"] > -1e-3
    # EMT Cu's highest mode (L or X) is near experiment's 7.3 THz; what matters is a sane scale.
    assert 5.0 < record["max_frequency_THz"] < 10.0
    band = record["band_structure"]
    assert band["labels"][0] == "Γ" and "X" in band["labels"] and "L" in band["labels"]
    assert len(band["distances"]) == len(band["frequencies_THz"]) and len(band["frequencies_THz"][0]) == 3
    assert len(record["dos"]["frequencies_THz"]) == len(record["dos"]["dos"]) > 10
    json.dumps(record, default=lambda x: x.tolist())  # a record is JSON (arrays as lists)


def test_conventional_aluminium_cell_is_stable():
    record = emt_phonons(bulk("Al", "fcc", a=4.05, cubic=True))
    assert record["dynamically_stable"], record["min_frequency_THz"]
    assert len(record["gamma_frequencies_THz"]) == 12  # 4 atoms: X folded onto Γ


def test_simple_cubic_copper_is_unstable_at_the_zone_boundary():
    record = emt_phonons(bulk("Cu", "sc", a=2.4))
    assert not record["dynamically_stable"] and record["n_imaginary_modes"] >= 1
    assert record["min_frequency_THz"] < -1.0
    assert record["min_frequency_qpoint_label"] == "M"
    assert sorted(np.abs(record["min_frequency_qpoint"])) == pytest.approx([0.0, 0.5, 0.5])
    # Each special point's lowest mode, as the band path shows it at that point.
    special = record["special_point_min_frequencies_THz"]
    assert set(special) == {"Γ", "X", "M", "R"}
    assert special["M"] == pytest.approx(record["min_frequency_THz"], abs=1e-6)
    assert special["Γ"] == pytest.approx(0.0, abs=1e-3)
    band = record["band_structure"]
    distances = list(band["label_distances"])
    for label, distance in zip(band["labels"], distances, strict=True):
        if distances.count(distance) > 1:  # a break of the path (X|M): two points at one distance
            continue
        on_path = np.isclose(band["distances"], distance, atol=1e-4)
        assert special[label] == pytest.approx(np.min(np.asarray(band["frequencies_THz"])[on_path]), abs=1e-3)


def test_imaginary_modes_count_outside_the_acoustic_noise_near_gamma():
    settings = PhononSettings(imaginary_tolerance_THz=0.1, acoustic_tolerance_THz=0.5)
    q = np.array([[0, 0, 0], [0.1, 0, 0], [0.1, 0, 0], [0.5, 0, 0], [0, 0, 0]])
    f = np.array([
        [-0.3, 0.0, 0.0, 5.0],   # Γ: acoustic noise within 0.5 THz
        [-0.4, -0.2, 1.0, 5.0],  # near Γ (|q| < 1/n with n = 3): still acoustic noise
        [-0.6, 0.5, 1.0, 5.0],   # near Γ but below the acoustic tolerance: imaginary
        [-0.2, 0.5, 1.0, 5.0],   # zone boundary: the imaginary tolerance applies
        [-0.1, 0.0, 0.0, -2.0],  # Γ: an optical mode below zero (BaTiO3's ferroelectric mode)
    ])
    assert imaginary_mode_counts(q, f, [3, 3, 3], settings).tolist() == [0, 0, 1, 1, 1]
    # With a 1x1x1 supercell every q is inside the first shell: the acoustic tolerance applies at X too.
    assert imaginary_mode_counts(q, f, [1, 1, 1], settings).tolist() == [0, 0, 1, 0, 1]


def test_qpoint_labels_fold_back_into_the_zone():
    special = {"G": [0, 0, 0], "X": [0, 0.5, 0], "M": [0.5, 0.5, 0]}
    assert qpoint_label([0, 0, 0], special) == "Γ"
    assert qpoint_label([0, -0.5, 0], special) == "X"
    assert qpoint_label([-0.5, 0.5, 1.0], special) == "M"
    assert qpoint_label([0.1, 0, 0], special) == ""


def test_too_large_a_supercell_is_a_status_not_an_error():
    record = emt_phonons(bulk("Cu", "fcc", a=3.61), max_supercell_atoms=100)
    assert record["status"] == status_codes.TOO_LARGE
    assert "125 atoms" in record["reason"] and "max_supercell_atoms = 100" in record["reason"]
    assert "min_frequency_THz" not in record


def test_tiled_unit_cell_forces_are_the_supercell_forces():
    """The ML stage takes the undisplaced supercell's forces from the unit cell: the same numbers."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.positions[1] += [0.05, -0.03, 0.02]
    phonon = build_phonopy(atoms, PhononSettings(min_supercell_length_A=7.0))
    supercell = undisplaced_supercell(phonon)
    direct = EMTForces()(supercell, 0)
    unit = atoms.copy()
    tiled = tiled_unit_cell_forces(phonon, EMTForces()(unit, 0))
    assert np.abs(direct).max() > 0.05
    assert tiled == pytest.approx(direct, abs=1e-8)
    via_unit_cell = compute_phonons(atoms, PhononSettings(min_supercell_length_A=7.0), EMTForces(),
                                    reference_from_unit_cell=True)
    full = compute_phonons(atoms, PhononSettings(min_supercell_length_A=7.0), EMTForces())
    assert via_unit_cell["gamma_frequencies_THz"] == pytest.approx(full["gamma_frequencies_THz"], abs=1e-6)


# --- the DFT job's control flow, EMT standing in for GPAW ------------------------------------------------


def dft_job(tmp_path: Path, atoms: Atoms, relax_record: dict, forces: EMTForces, **settings) -> dict:
    cif = write_cif(atoms, tmp_path / "relaxed.cif")
    return run_dft_phonons(
        "x", cif, relax_record, {"preset": "test", "gpaw": {}}, PhononSettings(**settings),
        tmp_path, tmp_path / "phonons.json", force_calculator=forces,
    )


RELAXED = {"status": status_codes.RELAXED, "max_force_eV_per_A": 0.0}


def test_a_rerun_computes_only_the_displacements_that_did_not_finish(tmp_path: Path):
    atoms = distorted_copper()  # low symmetry: many displacements
    first = EMTForces()
    record = dft_job(tmp_path, atoms, RELAXED, first, min_supercell_length_A=5.0)
    assert record["status"] == status_codes.COMPUTED, record["reason"]
    n = record["n_force_calculations"]
    assert n == record["n_displacements"] + 1 >= 3 and record["n_computed"] == n and record["n_reused"] == 0
    assert first.indices == list(range(n))
    assert json.loads((tmp_path / "phonons.json").read_text())["n_computed"] == n
    assert record["core_hours"] > 0 and record["mpi_ranks"] == 1
    files = sorted(p.name for p in (tmp_path / "phonons").glob("displacement-*.json"))
    assert files == [phonon_displacement_name(i) for i in range(n)]
    assert ResultsLayout("out").phonon_displacement_record("x", 1) == "out/dft/x/phonons/displacement-001.json"

    (tmp_path / "phonons" / phonon_displacement_name(1)).unlink()
    second = EMTForces()
    again = dft_job(tmp_path, atoms, RELAXED, second, min_supercell_length_A=5.0)
    assert second.indices == [1]
    assert again["n_computed"] == 1 and again["n_reused"] == n - 1
    assert again["gamma_frequencies_THz"] == pytest.approx(record["gamma_frequencies_THz"], abs=1e-9)

    # A larger displacement makes every displaced supercell's file stale, not the undisplaced one's.
    third = EMTForces()
    other = dft_job(tmp_path, atoms, RELAXED, third, min_supercell_length_A=5.0, displacement_A=0.02)
    assert other["n_reused"] == 1 and third.indices == list(range(1, n))
    # Tolerances only change the analysis: every file is reused.
    fourth = EMTForces()
    retuned = dft_job(tmp_path, atoms, RELAXED, fourth, min_supercell_length_A=5.0, displacement_A=0.02,
                      imaginary_tolerance_THz=0.3)
    assert fourth.indices == [] and retuned["n_reused"] == n


def test_a_failure_mid_way_is_recorded_and_keeps_the_finished_displacements(tmp_path: Path):
    atoms = distorted_copper()
    record = dft_job(tmp_path, atoms, RELAXED, EMTForces(fail_at=2), min_supercell_length_A=5.0)
    assert record["status"] == status_codes.FAILED and "the calculator broke" in record["reason"]
    assert json.loads((tmp_path / "phonons.json").read_text())["status"] == status_codes.FAILED
    resumed = EMTForces()
    record = dft_job(tmp_path, atoms, RELAXED, resumed, min_supercell_length_A=5.0)
    assert record["status"] == status_codes.COMPUTED and resumed.indices[0] == 2 and record["n_reused"] == 2


@pytest.mark.parametrize(
    "relax_record, words",
    [
        ({"status": status_codes.NOT_CONVERGED, "max_force_eV_per_A": 0.4},
         "did not converge: residual forces make phonons meaningless"),
        ({"status": status_codes.FAILED}, "relaxation failed"),
    ],
)
def test_no_phonons_without_a_converged_relaxation(tmp_path: Path, relax_record, words):
    forces = EMTForces()
    record = dft_job(tmp_path, bulk("Cu", "fcc", a=3.61), relax_record, forces)
    assert record["status"] == status_codes.SKIPPED and words in record["reason"]
    assert forces.indices == [] and (tmp_path / "phonons.json").is_file()


def test_dft_too_large_and_one_atom_cells(tmp_path: Path):
    forces = EMTForces()
    record = dft_job(tmp_path, bulk("Cu", "fcc", a=3.61), RELAXED, forces, max_supercell_atoms=50)
    assert record["status"] == status_codes.TOO_LARGE and forces.indices == []
    record = dft_job(tmp_path, bulk("Cu", "fcc", a=3.61), RELAXED, forces, min_supercell_length_A=6.0)
    assert record["status"] == status_codes.COMPUTED and record["n_supercell_atoms"] == 27
    assert record["dynamically_stable"]


def test_an_unreadable_structure_is_a_failed_record(tmp_path: Path):
    (tmp_path / "relaxed.cif").write_text("data_broken\n_cell_length_a 3\n")
    record = run_dft_phonons("x", tmp_path / "relaxed.cif", RELAXED, {"gpaw": {}}, PhononSettings(), tmp_path,
                             tmp_path / "phonons.json", force_calculator=EMTForces())
    assert record["status"] == status_codes.FAILED and record["reason"]
