"""ML phonons (dftscreen.phonons.ml_phonons, run_ml_phonon_batch): the batch with EMT, and SevenNet-0 itself.

Like test_ml.py, these run on the CPU with the SevenNet-0 weights from the installed sevenn
wheel (offline). The time of ML phonons against the ML relaxation: bench/phonon_cost.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from dftscreen import status_codes
from dftscreen.layout import ResultsLayout
from dftscreen.ml import MLSettings
from dftscreen.phonons import PhononSettings, ml_phonons, run_ml_phonon_batch

from emt_factory import distorted_copper

pytest.importorskip("sevenn", reason="the ML stage needs the sevenn package (pyproject dependency)")


def perovskite(a_site: str, b_site: str, a: float) -> Atoms:
    """Cubic ABO3, 5 atoms, lattice constant ``a`` (Å)."""
    return Atoms([a_site, b_site, "O", "O", "O"], cell=[a, a, a], pbc=True,
                 scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def write_cif(atoms: Atoms, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    CifWriter(AseAtomsAdaptor.get_structure(atoms)).write_file(path)
    return str(path)


class EMTFactory:
    """A calculator factory that counts how often the "model" is loaded."""

    def __init__(self) -> None:
        self.loads = 0

    def __call__(self) -> EMT:
        self.loads += 1
        return EMT()


def test_batch_writes_each_record_reuses_it_and_loads_the_model_only_when_needed(tmp_path: Path):
    layout = ResultsLayout.of(tmp_path / "out")
    items = [
        ("cu", write_cif(bulk("Cu", "fcc", a=3.61), tmp_path / "cu.cif")),
        ("broken", str(tmp_path / "missing.cif")),
        ("al", write_cif(bulk("Al", "fcc", a=4.05, cubic=True), tmp_path / "al.cif")),
    ]
    settings = PhononSettings(min_supercell_length_A=6.0, ml_fmax_eV_per_A=0.005)
    factory = EMTFactory()
    summary = run_ml_phonon_batch(items, layout, MLSettings(), settings, factory,
                                  out_json=layout.ml_phonon_batch_record(0))
    assert factory.loads == 1 and summary["computed"] == ["cu", "broken", "al"] and summary["reused"] == []
    assert json.loads(Path(layout.ml_phonon_batch_record(0)).read_text())["structure_ids"] == ["cu", "broken", "al"]
    cu = json.loads(Path(layout.ml_phonon_record("cu")).read_text())
    assert cu["status"] == status_codes.COMPUTED and cu["dynamically_stable"]
    assert cu["relax_converged"] and cu["relax_wall_time_s"] > 0 and cu["phonon_wall_time_s"] > 0
    assert cu["ml_checkpoint_sha256"] and cu["phonon_settings"] == settings.to_dict()
    broken = json.loads(Path(layout.ml_phonon_record("broken")).read_text())
    assert broken["status"] == status_codes.FAILED and broken["reason"].startswith("ML phonons:")
    assert json.loads(Path(layout.ml_phonon_record("al")).read_text())["status"] == status_codes.COMPUTED

    again = run_ml_phonon_batch(items[::2], layout, MLSettings(), settings, factory)
    assert factory.loads == 1 and again["reused"] == ["cu", "al"] and again["computed"] == []
    other = run_ml_phonon_batch(items[:1], layout, MLSettings(), PhononSettings(min_supercell_length_A=7.0), factory)
    assert other["computed"] == ["cu"] and factory.loads == 2


def test_an_unconverged_tight_relaxation_computes_no_phonons():
    record = ml_phonons(distorted_copper(), EMT(), MLSettings(max_steps=2), PhononSettings())
    assert record["status"] == status_codes.SKIPPED
    assert "did not converge in 2 steps" in record["reason"] and "meaningless" in record["reason"]
    assert "min_frequency_THz" not in record


def test_too_large_before_relaxing():
    record = ml_phonons(bulk("Cu", "fcc", a=3.61), EMT(), MLSettings(), PhononSettings(max_supercell_atoms=10))
    assert record["status"] == status_codes.TOO_LARGE and "relax_wall_time_s" not in record


def test_sevennet_finds_cubic_barium_titanates_ferroelectric_mode():
    """SevenNet-0 (trained on PBE) reproduces the soft polar mode of cubic BaTiO3 at Γ; the time is printed."""
    from dftscreen.ml import load_calculator

    start = time.perf_counter()
    calculator = load_calculator("7net-0", threads=1)
    loaded = time.perf_counter() - start
    record = ml_phonons(perovskite("Ba", "Ti", 4.0), calculator, MLSettings(), PhononSettings())
    print(f"model load {loaded:.1f} s, tight relaxation {record['relax_wall_time_s']:.1f} s "
          f"({record['relax_n_steps']} steps), phonons {record['phonon_wall_time_s']:.1f} s "
          f"({record['n_displacements']} displacements of {record['n_supercell_atoms']} atoms), "
          f"min {record['min_frequency_THz']:.2f} THz at {record['min_frequency_qpoint_label']}")
    assert record["status"] == status_codes.COMPUTED, record["reason"]
    assert record["relax_converged"] and record["relax_max_force_eV_per_A"] <= 0.001
    assert record["supercell_matrix"] == [[3, 0, 0], [0, 3, 0], [0, 0, 3]] and record["n_supercell_atoms"] == 135
    assert not record["dynamically_stable"] and record["min_frequency_qpoint_label"] == "Γ"
    assert record["min_frequency_THz"] < -2.0 and record["n_imaginary_modes"] >= 3
