"""The relaxation driver's control flow with ASE's EMT in place of GPAW (seconds, no MPI).

SCF error ladder, resume from the checkpoint (with the optimizer's state), the
stress gate and the step limit of :mod:`dftscreen.relax`; the calculator comes
from :class:`emt_factory.EMTFactory`. Real GPAW runs of the same entry point are
in test_dft.py and test_resume.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.io import read
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from dftscreen import properties, relax
from dftscreen.recovery import CHECKPOINT_NAME, OPTIMIZER_STATE_NAME
from dftscreen.settings import resolve_settings

from emt_factory import EMTFactory, Killed, distorted_copper

#: Tight enough for a dozen steps, so a relaxation can be killed partway.
RESUME = {"relax": {"fmax_eV_per_A": 0.03, "max_steps": 40}}


@pytest.fixture(autouse=True)
def one_blas_thread():
    """As in the GPAW entry points: several BLAS threads on 3x3 matrices only wait for each other."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def write_cif(path: Path, atoms=None) -> Path:
    CifWriter(AseAtomsAdaptor.get_structure(atoms if atoms is not None else distorted_copper())).write_file(path)
    return path


def run_relax(
    workdir: Path,
    factory: EMTFactory,
    overrides: dict | None = None,
    ladder: list | None = None,
    cif: Path | None = None,
    ml_calculator=None,
    mesh_gap=None,
) -> dict:
    """``relax.run`` on distorted Cu with the test preset, as the CLI would, but with ``factory``'s calculators
    (and ``ml_calculator`` for BFGS-MLHessian's initial Hessian, ``mesh_gap`` for the gap on a mesh)."""
    workdir.mkdir(exist_ok=True)
    cif = cif or write_cif(workdir.parent / f"{workdir.name}_input.cif")
    record = relax.run(
        cif=cif,
        structure_id="cu",
        settings=resolve_settings("test", overrides, scf_ladder=ladder),
        out_json=workdir / "relax.json",
        out_cif=workdir / "relaxed.cif",
        workdir=workdir,
        attach_calculator=factory,
        ml_calculator=ml_calculator,
        **({"mesh_gap": mesh_gap} if mesh_gap else {}),
    )
    assert json.loads((workdir / "relax.json").read_text()) == json.loads(json.dumps(record))
    return record


# --- SCF error ladder -------------------------------------------------------------------------------


def test_scf_failure_walks_the_ladder_and_is_recorded_not_raised(tmp_path: Path):
    # Every rung keeps maxiter tiny, so every rung must fail and be named.
    ladder = [
        {
            "name": "gentle_mixer",
            "description": "mixer beta 0.02",
            "gpaw": {"maxiter": 3, "mixer": {"beta": 0.02, "nmaxold": 5, "weight": 100.0}},
        },
        {"name": "wide_smearing", "description": "smearing 0.2 eV", "gpaw": {"maxiter": 3, "smearing_eV": 0.2}},
    ]
    factory = EMTFactory()
    record = run_relax(tmp_path / "run", factory, {"gpaw": {"maxiter": 2}}, ladder)
    assert record["status"] == "failed"
    assert record["reason"].startswith("SCF did not converge after 3 strategies: preset")
    assert "gentle_mixer (mixer beta 0.02)" in record["reason"] and "wide_smearing" in record["reason"]
    assert [a["strategy"] for a in record["scf_attempts"]] == ["preset", "gentle_mixer", "wide_smearing"]
    assert record["scf_attempts"][0]["error"] == "SCF did not converge (Did not converge!  See text output for help.)"
    # Each attempt attached its own calculator, with its own text output ...
    assert [txt.name for _, txt in factory.attempts] == [f"relax_gpaw_attempt{i}.txt" for i in (1, 2, 3)]
    # ... and each rung's settings merged over the preset, not over the rung before.
    settings = [gpaw for gpaw, _ in factory.attempts]
    assert [s["maxiter"] for s in settings] == [2, 3, 3]
    assert "mixer" in settings[1] and "mixer" not in settings[2]
    assert settings[2]["smearing_eV"] == 0.2 and settings[1]["smearing_eV"] == 0.1
    assert not (tmp_path / "run" / "relaxed.cif").exists()
    props = properties.run(
        tmp_path / "run" / "relax.json",
        "cu",
        resolve_settings("test"),
        tmp_path / "run" / "properties.json",
        tmp_path / "run",
    )
    assert props["status"] == "skipped"


def test_ladder_rescues_an_scf_that_the_preset_cannot_converge(tmp_path: Path):
    record = run_relax(
        tmp_path / "run",
        EMTFactory(),
        {"gpaw": {"maxiter": 2}},
        [{"name": "more_iterations", "description": "maxiter 200", "gpaw": {"maxiter": 200}}],
    )
    assert record["status"] == "relaxed"
    assert record["scf_strategy"] == "more_iterations"
    assert [a["strategy"] for a in record["scf_attempts"]] == ["preset"]


def test_scf_failure_mid_relaxation_goes_on_from_the_last_completed_step(tmp_path: Path):
    """Evaluation 4 is the geometry after ionic step 3; its SCF fails, so the next rung starts at step 2's geometry."""
    factory = EMTFactory(scf_fails_at=(4,))
    atoms, record = relax.relax_atoms(distorted_copper(), resolve_settings("test", RESUME), tmp_path, factory)
    assert record["converged"] and record["scf_strategy"] == "gentle_mixer"
    assert [(a["strategy"], a["at_ionic_step"]) for a in record["scf_attempts"]] == [("preset", 2)]
    first, second = (read(tmp_path / f"relax_attempt{i}.traj", index=":") for i in (1, 2))
    assert len(first) == 3  # steps 0, 1, 2
    np.testing.assert_allclose(second[0].positions, first[2].positions, atol=1e-12)
    np.testing.assert_allclose(second[0].cell[:], first[2].cell[:], atol=1e-12)
    # Steps count on from the checkpoint: 2 before the failure, the rest after.
    assert record["n_ionic_steps"] == 2 + len(second) - 1


def test_broken_symmetry_retries_without_point_group_symmetry(tmp_path: Path):
    factory = EMTFactory(breaks_symmetry=True)
    record = run_relax(tmp_path / "run", factory)
    assert record["status"] == "relaxed"
    assert record["point_group_symmetry"] is False
    assert record["scf_strategy"] == "preset"  # not an SCF failure: the ladder did not move
    assert [a["error"] for a in record["scf_attempts"]] == [
        "symmetry broke during relaxation; retrying without point-group symmetry"
    ]
    assert [gpaw.get("symmetry") for gpaw, _ in factory.attempts] == [None, {"point_group": False}]


def test_other_calculator_errors_are_recorded_not_raised(tmp_path: Path):
    class Exploding(EMTFactory):
        def __call__(self, atoms, gpaw_settings, txt):
            raise MemoryError("out of memory")

    record = run_relax(tmp_path / "run", Exploding())
    assert record["status"] == "failed" and record["reason"] == "GPAW/ASE error MemoryError: out of memory"
    assert not (tmp_path / "run" / "relaxed.cif").exists()


# --- Convergence criteria ---------------------------------------------------------------------------


def test_relaxed_record_has_the_final_values(tmp_path: Path):
    record = run_relax(tmp_path / "run", EMTFactory())
    assert record["status"] == "relaxed" and record["reason"] == ""
    assert record["converged"] and record["max_force_eV_per_A"] <= 0.1
    assert record["max_stress_GPa"] <= 2.0
    relaxed = read(tmp_path / "run" / "relax_attempt1.traj", index=-1)
    relaxed.calc = EMT()
    assert record["energy_eV"] == pytest.approx(relaxed.get_potential_energy(), abs=1e-9)
    assert record["final_volume_A3"] == pytest.approx(relaxed.get_volume())
    assert record["n_starts"] == 1 and record["resumed_from_step"] == 0
    assert record["change"]["relaxed_matches_generated"] is True
    assert (tmp_path / "run" / "relaxed.cif").is_file()


def test_stress_threshold_is_a_convergence_criterion(tmp_path: Path):
    # A loose fmax lets the cell stop early; an impossible stress limit must then flag it.
    record = run_relax(tmp_path / "run", EMTFactory(), {"relax": {"fmax_eV_per_A": 0.5, "stress_threshold_GPa": 1e-4}})
    assert record["status"] == "not_converged"
    assert "largest stress component" in record["reason"] and "threshold 0.0001 GPa" in record["reason"]
    assert record["max_stress_GPa"] > 1e-4
    assert (tmp_path / "run" / "relaxed.cif").is_file()


def test_stress_gate_is_off_without_cell_relaxation(tmp_path: Path):
    record = run_relax(
        tmp_path / "run",
        EMTFactory(),
        {"relax": {"fmax_eV_per_A": 0.5, "stress_threshold_GPa": 1e-4, "relax_cell": False}},
    )
    assert record["status"] == "relaxed"
    assert record["max_stress_GPa"] > 1e-4
    assert record["final_volume_A3"] == pytest.approx(record["initial_volume_A3"])


def test_step_limit_gives_not_converged_with_last_values(tmp_path: Path):
    # Cubic cell, isotropically compressed: forces vanish by symmetry; the stress is what is not yet relaxed.
    from ase.build import bulk

    cif = write_cif(tmp_path / "cu.cif", bulk("Cu", "fcc", a=3.50, cubic=True))
    record = run_relax(tmp_path / "run", EMTFactory(), {"relax": {"max_steps": 1}}, cif=cif)
    assert record["status"] == "not_converged"
    assert "step limit (1 steps)" in record["reason"]
    assert record["n_ionic_steps"] == 1
    assert len(record["stress_GPa"]) == 6
    assert record["max_stress_GPa"] > 0.1
    # The last values are those of the geometry after the one step.
    last = read(tmp_path / "run" / "relax_attempt1.traj", index=-1)
    last.calc = EMT()
    assert record["energy_eV"] == pytest.approx(last.get_potential_energy(), abs=1e-9)
    assert record["max_force_eV_per_A"] < 1e-6


# --- Resume -----------------------------------------------------------------------------------------


def straight_run(tmp_path: Path, cif: Path) -> tuple[list, dict]:
    """The uninterrupted relaxation of ``cif``: its trajectory and its record."""
    record = run_relax(tmp_path / "straight", EMTFactory(), RESUME, cif=cif)
    assert record["status"] == "relaxed" and record["n_ionic_steps"] >= 8, record
    return read(tmp_path / "straight" / "relax_attempt1.traj", index=":"), record


def assert_resume_continues_the_uninterrupted_run(
    workdir: Path, resumed: dict, uninterrupted: list, reference: dict
) -> None:
    """The BFGS Hessian came back with the geometry.

    So the steps after the resume are those of the uninterrupted run.
    """
    assert resumed["converged"]
    assert resumed["resumed_with_optimizer_state"] is True
    k = resumed["resumed_from_step"]
    after_resume = read(workdir / "relax_attempt2.traj", index=":")
    assert k + len(after_resume) - 1 == len(uninterrupted) - 1 == resumed["n_ionic_steps"] == reference["n_ionic_steps"]
    # EMT is deterministic: the resumed steps are the uninterrupted ones to rounding (a fresh
    # Hessian instead moves the atoms of this relaxation by 2e-3 to 2e-2 Å).
    for resumed_frame, straight_frame in zip(after_resume, uninterrupted[k:], strict=True):
        np.testing.assert_allclose(resumed_frame.cell[:], straight_frame.cell[:], atol=1e-9)
        np.testing.assert_allclose(resumed_frame.positions, straight_frame.positions, atol=1e-9)
    # Same minimum as the uninterrupted run.
    assert resumed["energy_per_atom_eV"] == pytest.approx(reference["energy_per_atom_eV"], abs=1e-9)


@pytest.mark.parametrize("steps_done", [2, 5])
def test_killed_relaxation_resumes_from_last_step(tmp_path: Path, steps_done: int):
    cif = write_cif(tmp_path / "cu.cif")
    uninterrupted, reference = straight_run(tmp_path, cif)
    killed = tmp_path / "killed"
    # Evaluation steps_done + 2 is the geometry after step steps_done + 1: killed there,
    # the checkpoint holds step steps_done and the optimizer state was written after it.
    with pytest.raises(Killed):
        run_relax(killed, EMTFactory(kill_at=steps_done + 2), RESUME, cif=cif)
    assert json.loads((killed / CHECKPOINT_NAME).read_text())["n_ionic_steps"] == steps_done
    assert not (killed / "relax.json").exists()

    resumed = run_relax(killed, EMTFactory(), RESUME, cif=cif)
    assert resumed["status"] == "relaxed"
    assert resumed["n_starts"] == 2
    assert resumed["resumed_from_step"] == steps_done
    assert_resume_continues_the_uninterrupted_run(killed, resumed, uninterrupted, reference)


def test_sigkilled_relaxation_resumes_from_last_step(tmp_path: Path):
    """As above, but the process really dies (SIGKILL while it computes a geometry) and leaves no record."""
    cif = write_cif(tmp_path / "cu.cif")
    uninterrupted, reference = straight_run(tmp_path, cif)
    killed = tmp_path / "killed"
    # Half a second per evaluation, so the kill lands while the process computes (not while it writes).
    script = (
        "import sys\nfrom pathlib import Path\nsys.path.insert(0, sys.argv[1])\n"
        "from emt_factory import EMTFactory\nfrom dftscreen import relax\n"
        "from dftscreen.settings import resolve_settings\n"
        "w = Path(sys.argv[2])\n"
        f"relax.run(Path(sys.argv[3]), 'cu', resolve_settings('test', {RESUME!r}),"
        " w / 'relax.json', w / 'relaxed.cif', w,"
        " attach_calculator=EMTFactory(seconds_per_evaluation=0.5))\n"
    )
    killed.mkdir()
    job = subprocess.Popen(
        [sys.executable, "-c", script, str(Path(__file__).parent), str(killed), str(cif)],
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    evaluation = killed / "evaluation"
    while time.monotonic() < deadline and job.poll() is None:
        if evaluation.is_file() and int(evaluation.read_text() or 0) >= 4:  # the geometry after step 3
            break
        time.sleep(0.05)
    assert job.poll() is None, job.stderr.read().decode()[-3000:]
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    job.stderr.close()
    assert not (killed / "relax.json").exists(), "a killed job must not leave a finished-looking result"
    # Killed while computing evaluation n, the geometry after step n - 1: step n - 2 was the last completed.
    steps_at_kill = json.loads((killed / CHECKPOINT_NAME).read_text())["n_ionic_steps"]
    assert steps_at_kill == int(evaluation.read_text()) - 2 >= 2

    resumed = run_relax(killed, EMTFactory(), RESUME, cif=cif)
    assert resumed["status"] == "relaxed"
    assert resumed["n_starts"] == 2 and resumed["resumed_from_step"] == steps_at_kill
    assert_resume_continues_the_uninterrupted_run(killed, resumed, uninterrupted, reference)


def test_unreadable_optimizer_state_is_dropped_not_fatal(tmp_path: Path):
    """A kill while ASE rewrote its state file leaves it half-written: the resume starts a fresh Hessian."""
    one_step = {"relax": {**RESUME["relax"], "max_steps": 1}}
    assert run_relax(tmp_path / "run", EMTFactory(), one_step)["status"] == "not_converged"
    (tmp_path / "run" / "relax.json").unlink()
    state = tmp_path / "run" / OPTIMIZER_STATE_NAME
    state.write_text(state.read_text()[:40])

    resumed = run_relax(tmp_path / "run", EMTFactory(), RESUME)
    assert resumed["status"] == "relaxed" and resumed["resumed_from_step"] >= 1
    assert resumed["resumed_with_optimizer_state"] is False


def test_checkpoint_of_another_starting_structure_is_not_resumed(tmp_path: Path):
    """A CIF replaced under the same name (same species, same settings) starts over."""
    one_step = {"relax": {**RESUME["relax"], "max_steps": 1}}
    run_relax(tmp_path / "run", EMTFactory(), one_step, cif=write_cif(tmp_path / "cu.cif"))
    (tmp_path / "run" / "relax.json").unlink()

    from ase.build import bulk

    replaced = bulk("Cu", "fcc", a=3.58, cubic=True)
    record = run_relax(tmp_path / "run", EMTFactory(), RESUME, cif=write_cif(tmp_path / "cu.cif", replaced))
    assert record["status"] == "relaxed"
    assert record["n_starts"] == 1 and record["resumed_from_step"] == 0
    assert record["initial_volume_A3"] == pytest.approx(3.58**3, rel=1e-6)


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path):
    one_step = {"relax": {**RESUME["relax"], "max_steps": 1}}
    run_relax(tmp_path / "run", EMTFactory(), one_step)
    (tmp_path / "run" / "relax.json").unlink()
    record = run_relax(tmp_path / "run", EMTFactory(), {**RESUME, "gpaw": {"ecut_eV": 450.0}})
    assert record["n_starts"] == 1 and record["resumed_from_step"] == 0


@pytest.mark.parametrize(
    ("moments", "ordering"),
    [
        ([2.2, 2.2], "FM"),
        ([1.1, -1.1], "AFM"),  # total zero: the total moment alone called this non-magnetic
        ([1.36868, -1.36867], "AFM"),  # a converged antiferromagnet's 1e-5 µB imbalance (GPAW, Cr)
        ([2.0, -1.0], "FiM"),
        ([0.04, -0.03], "NM"),  # PAW-sphere noise of a non-magnet
    ],
)
def test_magnetic_ordering_from_site_moments(moments, ordering):
    from ase.build import bulk

    from dftscreen.properties import magnetic_ordering

    atoms = bulk("Cr", "bcc", a=2.88, cubic=True)  # two sites
    assert magnetic_ordering(atoms, moments) == ordering


def test_the_single_point_starts_from_the_relaxed_moments_with_their_signs():
    from ase.build import bulk

    from dftscreen.properties import start_from_relaxed_moments

    atoms = bulk("Cr", "bcc", a=2.88, cubic=True)
    atoms.set_initial_magnetic_moments([3.0, 3.0])  # the default start: every magnetic atom up
    assert start_from_relaxed_moments(atoms, [1.1, -1.1])
    assert atoms.get_initial_magnetic_moments().tolist() == [1.1, -1.1]
    # A collapsed moment, a record without moments or with another atom count: the default start stays.
    for moments in ([0.01, -0.02], None, [1.0]):
        atoms.set_initial_magnetic_moments([3.0, 3.0])
        assert not start_from_relaxed_moments(atoms, moments)
        assert atoms.get_initial_magnetic_moments().tolist() == [3.0, 3.0]
