"""The relaxation's k-mesh chosen from the start geometry's gap (``gpaw.kpt_density_insulator_per_A``).

EMT stands in for GPAW and a scripted function for the gap on the mesh, so the choice, the switch
back to the dense mesh when the gap closes, and the resume run in seconds. The physics behind the
presets' numbers (energies of gapped compounds converged at 3.0 per Å⁻¹, metals not) is in
bench/README.md, "Converged settings"; tests/dft/test_dft.py runs the choice with GPAW.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cutoff_derivative import CutoffEMTFactory, probes
from test_relax_driver import RESUME, run_relax, write_cif

from dftscreen.dft import CUTOFF_DERIVATIVE_KPT_DENSITY, choose_kpt_density, insulator_mesh_asked
from dftscreen.recovery import CHECKPOINT_NAME
from dftscreen.references import reference_settings
from dftscreen.reflib import settings_key
from dftscreen.settings import PRESETS, check_dft_config, resolve_settings

from emt_factory import Killed

#: The test preset's dense mesh is 2.0 per Å⁻¹; a gapped compound relaxes on 1.0 here.
DENSE, COARSE, THRESHOLD = 2.0, 1.0, 0.5
GAP_MESH = {"gpaw": {"kpt_density_insulator_per_A": COARSE, "insulator_min_gap_eV": THRESHOLD}}


class ScriptedGap:
    """The gap on the mesh: ``start_eV`` for the first call (the start probe), ``end_eV`` afterwards."""

    def __init__(self, start_eV: float, end_eV: float | None = None):
        self.start_eV, self.end_eV = start_eV, start_eV if end_eV is None else end_eV
        self.calls = 0

    def __call__(self, atoms) -> float:
        self.calls += 1
        return self.start_eV if self.calls == 1 else self.end_eV


def relaxation_meshes(factory) -> list[float]:
    return [s["kpt_density_per_A"] for s, txt in factory.attempts if not txt.name.startswith("cutoff_derivative_")]


def test_choice_follows_the_gap_and_the_threshold():
    gpaw = resolve_settings("test", GAP_MESH)["gpaw"]
    assert choose_kpt_density(gpaw, 2.0) == COARSE
    assert choose_kpt_density(gpaw, THRESHOLD) == COARSE
    assert choose_kpt_density(gpaw, 0.49) == DENSE
    assert choose_kpt_density(gpaw, 0.0) == DENSE
    # No insulator mesh, or a raw GPAW kpts (a molecule's Γ point): always the preset's own mesh.
    assert choose_kpt_density(resolve_settings("test")["gpaw"], 5.0) == DENSE
    assert not insulator_mesh_asked(gpaw | {"kpts": {"size": [1, 1, 1]}})
    assert not insulator_mesh_asked(gpaw | {"insulator_min_gap_eV": None})


def test_gapped_start_relaxes_on_the_coarse_mesh_after_one_probe(tmp_path: Path):
    factory, gap = CutoffEMTFactory(), ScriptedGap(2.0)
    record = run_relax(tmp_path / "run", factory, GAP_MESH, mesh_gap=gap)

    assert record["status"] == "relaxed"
    # One SCF on the coarse mesh gives the gap (no derivative asked for: the test preset's "estimate").
    assert [s["kpt_density_per_A"] for s in probes(factory)] == [min(DENSE, CUTOFF_DERIVATIVE_KPT_DENSITY)]
    assert set(relaxation_meshes(factory)) == {COARSE}
    assert record["relax_kpt_density_per_A"] == COARSE
    assert record["start_mesh_gap_eV"] == 2.0 and record["final_mesh_gap_eV"] == 2.0
    assert "gap 2.00 eV" in record["kpt_density_note"] and "1 k-points per Å⁻¹" in record["kpt_density_note"]


def test_metal_start_relaxes_on_the_dense_mesh(tmp_path: Path):
    factory = CutoffEMTFactory()
    record = run_relax(tmp_path / "run", factory, GAP_MESH, mesh_gap=ScriptedGap(0.0))
    assert set(relaxation_meshes(factory)) == {DENSE}
    assert record["relax_kpt_density_per_A"] == DENSE and record["final_mesh_gap_eV"] is None
    assert "0.00 eV" in record["kpt_density_note"]


def test_without_the_setting_no_probe_and_no_choice(tmp_path: Path):
    factory, gap = CutoffEMTFactory(), ScriptedGap(3.0)
    record = run_relax(tmp_path / "run", factory, mesh_gap=gap)
    assert probes(factory) == [] and gap.calls == 0
    assert record["relax_kpt_density_per_A"] is None and set(relaxation_meshes(factory)) == {DENSE}


def test_one_probe_serves_the_gap_and_the_cutoff_derivative(tmp_path: Path):
    factory = CutoffEMTFactory()
    overrides = {"gpaw": GAP_MESH["gpaw"] | {"dedecut": "computed"}}
    record = run_relax(tmp_path / "run", factory, overrides, mesh_gap=ScriptedGap(2.0))
    assert len(probes(factory)) == 2  # E(E_cut) also gives the gap; E(E_cut + 20 eV) the derivative
    assert record["cutoff_derivative_eV_per_eV"] < 0 and record["relax_kpt_density_per_A"] == COARSE
    relaxations = [s for s, txt in factory.attempts if not txt.name.startswith("cutoff_derivative_")]
    assert all(s["dedecut"] == record["cutoff_derivative_eV_per_eV"] for s in relaxations)


def test_gap_that_closes_on_the_way_finishes_on_the_dense_mesh(tmp_path: Path):
    factory = CutoffEMTFactory()
    record = run_relax(tmp_path / "run", factory, GAP_MESH, mesh_gap=ScriptedGap(2.0, 0.1))

    assert record["status"] == "relaxed"
    meshes = relaxation_meshes(factory)
    assert meshes[0] == COARSE and meshes[-1] == DENSE  # went on from the coarse mesh's minimum
    assert record["relax_kpt_density_per_A"] == DENSE and record["final_mesh_gap_eV"] == 0.1
    assert "closed to 0.10 eV" in record["kpt_density_note"]
    # Both parts kept their own optimizer logs (the second attempt number is new).
    assert len({txt.name for s, txt in factory.attempts if not txt.name.startswith("cutoff_derivative_")}) == 2


def test_killed_relaxation_resumes_on_the_chosen_mesh_without_a_new_probe(tmp_path: Path):
    cif = write_cif(tmp_path / "cu.cif")
    overrides = {"relax": RESUME["relax"], "gpaw": GAP_MESH["gpaw"]}
    killed = tmp_path / "killed"
    # Evaluation 1 is the probe, 2 the start geometry: 6 is the geometry after step 4.
    with pytest.raises(Killed):
        run_relax(killed, CutoffEMTFactory(kill_at=6), overrides, cif=cif, mesh_gap=ScriptedGap(2.0))
    checkpoint = json.loads((killed / CHECKPOINT_NAME).read_text())
    assert checkpoint["relax_kpt_density_per_A"] == COARSE and checkpoint["n_ionic_steps"] == 3

    factory, gap = CutoffEMTFactory(), ScriptedGap(2.0)
    resumed = run_relax(killed, factory, overrides, cif=cif, mesh_gap=gap)
    assert resumed["n_starts"] == 2 and resumed["resumed_from_step"] == 3
    assert probes(factory) == [] and set(relaxation_meshes(factory)) == {COARSE}
    assert gap.calls == 1  # the final check only: the start's gap came from the checkpoint
    assert resumed["relax_kpt_density_per_A"] == COARSE and resumed["start_mesh_gap_eV"] == 2.0


def test_elemental_crystals_relax_on_the_dense_mesh_molecules_at_gamma():
    settings = resolve_settings("standard")
    assert insulator_mesh_asked(settings["gpaw"])
    crystal = reference_settings(settings, "crystal")
    assert not insulator_mesh_asked(crystal["gpaw"])
    assert crystal["gpaw"]["kpt_density_per_A"] == settings["gpaw"]["kpt_density_per_A"]
    assert not insulator_mesh_asked(reference_settings(settings, "molecule")["gpaw"])
    assert reference_settings(resolve_settings("test"), "crystal") == resolve_settings("test")


def test_presets_state_both_meshes_and_start_up_refuses_a_bad_one():
    for name in ("fast", "standard"):
        gpaw = PRESETS[name]["gpaw"]
        assert 0 < gpaw["kpt_density_insulator_per_A"] < gpaw["kpt_density_per_A"]
        assert gpaw["dedecut"] == "computed"
    with pytest.raises(ValueError, match="kpt_density_insulator_per_A"):
        check_dft_config({"preset": "fast", "overrides": {"gpaw": {"kpt_density_insulator_per_A": -1}}})
    with pytest.raises(ValueError, match="insulator_min_gap_eV"):
        check_dft_config({"preset": "fast", "overrides": {"gpaw": {"insulator_min_gap_eV": "wide"}}})
    check_dft_config({"preset": "fast", "overrides": {"gpaw": {"kpt_density_insulator_per_A": None}}})


def test_settings_hash_changes_with_a_preset():
    before = settings_key(resolve_settings("standard"))
    assert settings_key(resolve_settings("standard")) == before
    for key, value in (("ecut_eV", 800.0), ("dedecut", "estimate"), ("kpt_density_insulator_per_A", None)):
        assert settings_key(resolve_settings("standard", {"gpaw": {key: value}})) != before


def test_restart_file_is_described_with_the_mesh_it_was_computed_on(tmp_path: Path, monkeypatch):
    """The single point compares the restart file's settings with its own to decide what to reuse
    (dftscreen.properties): a state from the coarse mesh must say so, not claim the preset's mesh."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from dftscreen import relax

    monkeypatch.setattr(relax, "write_gpaw_restart", lambda calc, path: path.write_text("state"))
    atoms = bulk("Cu")
    atoms.calc = EMT()
    settings = resolve_settings("test", GAP_MESH)
    record = {"scf_strategy": "preset", "point_group_symmetry": True, "relax_kpt_density_per_A": COARSE}
    assert relax.write_restart(atoms, settings, record, tmp_path)["gpaw_settings"]["kpt_density_per_A"] == COARSE
    record["relax_kpt_density_per_A"] = None  # no choice made: the preset's own mesh
    assert relax.write_restart(atoms, settings, record, tmp_path)["gpaw_settings"]["kpt_density_per_A"] == DENSE


def test_failed_start_scf_falls_back_to_the_dense_mesh_and_gpaws_estimate(tmp_path: Path):
    """The probes are an economy: when their SCF does not converge (the relaxation's own SCF has the error
    ladder, they do not), the relaxation goes on with the dense mesh and the Pulay estimate, and says why."""
    factory = CutoffEMTFactory(scf_fails_at=(1,))  # evaluation 1: the first probe
    overrides = {"gpaw": GAP_MESH["gpaw"] | {"dedecut": "computed"}}
    record = run_relax(tmp_path / "run", factory, overrides, mesh_gap=ScriptedGap(2.0))
    assert record["status"] == "relaxed"
    assert "start SCF on the coarse mesh failed" in record["start_probe_failure"]
    assert record["relax_kpt_density_per_A"] == DENSE and "dense mesh" in record["kpt_density_note"]
    relaxations = [s for s, txt in factory.attempts if not txt.name.startswith("cutoff_derivative_")]
    assert {s["dedecut"] for s in relaxations} == {"estimate"} and set(relaxation_meshes(factory)) == {DENSE}
    assert record["scf_attempts"] == []  # not a failure of the relaxation's SCF
