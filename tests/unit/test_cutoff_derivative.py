"""``gpaw.dedecut: computed``: the cell's own dE/dE_cut, computed once per relaxation and given to GPAW.

EMT stands in for GPAW (seconds, no MPI); its energy gets a cutoff-dependent term so the forward
difference has something to find. The physics (the computed derivative against the preset mesh's,
and the Pulay stress it gives) is in bench/README.md, "Converged settings".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from ase.build import bulk
from ase.calculators.calculator import all_changes
from test_relax_driver import RESUME, run_relax, write_cif

from dftscreen import relax
from dftscreen.dft import (
    COMPUTED_DEDECUT,
    CUTOFF_DERIVATIVE_KPT_DENSITY,
    CUTOFF_DERIVATIVE_STEP_EV,
    cutoff_derivative,
    gpaw_calculator_kwargs,
)
from dftscreen.recovery import CHECKPOINT_NAME
from dftscreen.settings import check_dft_config, resolve_settings

from emt_factory import EMTFactory, Killed, _FailingEMT

#: Basis-set error of the stand-in (eV per atom at zero cutoff) and its decay length (eV).
AMPLITUDE_EV, DECAY_EV = 3.0, 120.0


def basis_error_eV(n_atoms: int, ecut_eV: float) -> float:
    """The stand-in's energy above the complete-basis value: positive, falling with the cutoff."""
    return n_atoms * AMPLITUDE_EV * math.exp(-ecut_eV / DECAY_EV)


def expected_derivative(n_atoms: int, ecut_eV: float) -> float:
    return (basis_error_eV(n_atoms, ecut_eV + CUTOFF_DERIVATIVE_STEP_EV) - basis_error_eV(n_atoms, ecut_eV)) / (
        CUTOFF_DERIVATIVE_STEP_EV
    )


class _CutoffEMT(_FailingEMT):
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        shift = basis_error_eV(len(self.atoms), float(self.gpaw_settings["ecut_eV"]))
        self.results["energy"] += shift
        self.results["free_energy"] = self.results.get("free_energy", self.results["energy"] - shift) + shift


class CutoffEMTFactory(EMTFactory):
    """EMT whose energy converges with ``ecut_eV`` like a plane-wave basis (forces and stress unchanged)."""

    def __call__(self, atoms, gpaw_settings: dict[str, Any], txt: Path):
        super().__call__(atoms, gpaw_settings, txt)
        atoms.calc = _CutoffEMT(self, gpaw_settings, Path(txt))
        return atoms.calc


def probes(factory: EMTFactory) -> list[dict[str, Any]]:
    return [settings for settings, txt in factory.attempts if txt.name.startswith("cutoff_derivative_")]


def test_cutoff_derivative_is_the_forward_difference_on_a_coarse_mesh(tmp_path: Path):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    before = atoms.copy()
    factory = CutoffEMTFactory()
    gpaw = resolve_settings("standard")["gpaw"] | {"dedecut": COMPUTED_DEDECUT}

    derivative = cutoff_derivative(atoms, gpaw, tmp_path, factory)

    ecut = gpaw["ecut_eV"]
    assert derivative == pytest.approx(expected_derivative(4, ecut), rel=1e-9)
    assert derivative < 0
    cutoffs = [settings["ecut_eV"] for settings in probes(factory)]
    assert cutoffs == [ecut, ecut + CUTOFF_DERIVATIVE_STEP_EV]
    for settings in probes(factory):
        assert settings["kpt_density_per_A"] == CUTOFF_DERIVATIVE_KPT_DENSITY < gpaw["kpt_density_per_A"]
        assert settings["dedecut"] is None  # an energy difference: no correction, no legacy switch needed
    assert atoms.calc is None and atoms == before  # probes run on copies


def test_relaxation_gives_gpaw_the_computed_number_and_records_it(tmp_path: Path):
    factory = CutoffEMTFactory()
    record = run_relax(tmp_path / "run", factory, {"gpaw": {"dedecut": COMPUTED_DEDECUT}})

    assert record["status"] == "relaxed"
    expected = expected_derivative(4, 400.0)  # the test preset's cutoff; distorted Cu has 4 atoms
    assert record["cutoff_derivative_eV_per_eV"] == pytest.approx(expected, rel=1e-9)
    relaxations = [s for s, txt in factory.attempts if not txt.name.startswith("cutoff_derivative_")]
    assert relaxations and all(s["dedecut"] == record["cutoff_derivative_eV_per_eV"] for s in relaxations)
    assert len(probes(factory)) == 2


def test_without_computed_no_probe_runs(tmp_path: Path):
    factory = CutoffEMTFactory()
    record = run_relax(tmp_path / "run", factory)
    assert probes(factory) == []
    assert record["cutoff_derivative_eV_per_eV"] is None
    assert {s["dedecut"] for s, _ in factory.attempts} == {"estimate"}


def test_positions_only_relaxation_computes_no_derivative(tmp_path: Path):
    factory = CutoffEMTFactory()
    overrides = {"gpaw": {"dedecut": COMPUTED_DEDECUT}, "relax": {"relax_cell": False}}
    record = run_relax(tmp_path / "run", factory, overrides)
    assert probes(factory) == [] and record["cutoff_derivative_eV_per_eV"] is None


def test_killed_relaxation_resumes_with_the_same_derivative_and_no_new_probes(tmp_path: Path):
    cif = write_cif(tmp_path / "cu.cif")
    overrides = RESUME | {"gpaw": {"dedecut": COMPUTED_DEDECUT}}
    killed = tmp_path / "killed"
    # Evaluations 1-2 are the probes; 3 is the start geometry, so 7 is the geometry after step 4.
    with pytest.raises(Killed):
        run_relax(killed, CutoffEMTFactory(kill_at=7), overrides, cif=cif)
    checkpoint = json.loads((killed / CHECKPOINT_NAME).read_text())
    assert checkpoint["n_ionic_steps"] == 3
    saved = checkpoint["cutoff_derivative_eV_per_eV"]
    assert saved == pytest.approx(expected_derivative(4, 400.0), rel=1e-9)

    factory = CutoffEMTFactory()
    resumed = run_relax(killed, factory, overrides, cif=cif)
    assert resumed["n_starts"] == 2 and resumed["resumed_from_step"] == 3
    assert probes(factory) == []
    assert resumed["cutoff_derivative_eV_per_eV"] == saved
    assert all(s["dedecut"] == saved for s, _ in factory.attempts)


def test_computed_translates_to_the_legacy_calculator_without_a_correction():
    from gpaw import PW

    kwargs = gpaw_calculator_kwargs({"ecut_eV": 500.0, "dedecut": COMPUTED_DEDECUT, "kpt_density_per_A": 2.0,
                                     "smearing_eV": 0.1})
    assert isinstance(kwargs["mode"], PW)
    assert kwargs["mode"].todict().get("dedecut") is None
    assert kwargs.get("legacy_gpaw", True) is True  # the code that applies a number once relax gives one


def test_config_accepts_computed_and_refuses_a_misspelling():
    check_dft_config({"preset": "fast", "overrides": {"gpaw": {"dedecut": "computed"}}})
    with pytest.raises(ValueError, match="'computed'"):
        check_dft_config({"preset": "fast", "overrides": {"gpaw": {"dedecut": "compute"}}})


def test_relax_module_uses_the_same_name():
    assert relax.COMPUTED_DEDECUT == COMPUTED_DEDECUT == "computed"
