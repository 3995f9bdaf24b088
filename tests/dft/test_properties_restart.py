"""The single point from the relaxation's final GPAW state (issue 32, item 2), test preset, mpiexec -n 2.

A structure's relaxation (``dft/<id>/relax.json``) writes ``relaxed.gpw``; the single point
starts from it when it can and gives the fresh start's energy, gap and moment in fewer SCF
iterations; a missing, corrupt or foreign file gives a fresh start with a note; the file is
removed once the properties are written unless ``properties.keep_restart_file`` is set.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from conftest import run_gpaw_module, settings_json

pytestmark = pytest.mark.dft

KEEP = {"properties": {"keep_restart_file": True}}


def strained_silicon(path: Path) -> Path:
    """Primitive diamond Si (2 atoms) strained 2 %, one atom moved ~0.05 Å: a few ionic steps at the test preset."""
    a = 5.47
    lattice = Lattice(np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]) * [[1.02], [1.0], [1.0]])
    structure = Structure(lattice, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    structure.translate_sites([1], [0.006, -0.004, 0.0])
    CifWriter(structure).write_file(path)
    return path


def properties(folder: Path, relax_json: str, out: str, overrides: dict | None = None) -> dict:
    proc = run_gpaw_module(
        "dftscreen.properties",
        ["--structure-id", "si", "--relax-json", str(folder / relax_json), "--settings",
         settings_json("test", overrides), "--out-json", str(folder / out), "--workdir", str(folder)],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((folder / out).read_text())


@pytest.fixture(scope="module")
def relaxed(tmp_path_factory) -> Path:
    """A structure's DFT folder (``dft/si``) after its relaxation, with relaxed.gpw beside relax.json."""
    root = tmp_path_factory.mktemp("restart")
    folder = root / "dft" / "si"
    folder.mkdir(parents=True)
    cif = strained_silicon(root / "si.cif")
    proc = run_gpaw_module(
        "dftscreen.relax",
        ["--structure-id", "si", "--cif", str(cif), "--settings", settings_json("test", {"relax": {"max_steps": 4}}),
         "--out-json", str(folder / "relax.json"), "--out-cif", str(folder / "relaxed.cif"), "--workdir", str(folder)],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((folder / "relax.json").read_text())
    assert record["status"] in ("relaxed", "not_converged") and record["n_ionic_steps"] >= 1
    # The file is written by rank 0 only, under its final name (no temporary left behind).
    assert record["restart"]["file"] == "relaxed.gpw" and (folder / "relaxed.gpw").is_file()
    assert not list(folder.glob(".*partial*"))
    import gpaw

    assert record["restart"]["gpaw_version"] == gpaw.__version__
    # Without the restart key, as a relaxation before issue 32 wrote it: the fresh start.
    del record["restart"]
    (folder / "relax_fresh.json").write_text(json.dumps(record))
    shutil.copy(folder / "relaxed.gpw", root / "relaxed.gpw.orig")
    return folder


def restore(folder: Path) -> None:
    shutil.copy(folder.parent.parent / "relaxed.gpw.orig", folder / "relaxed.gpw")


def assert_same_result(restarted: dict, fresh: dict) -> None:
    assert restarted["status"] == fresh["status"] == "done"
    assert restarted["energy_per_atom_eV"] == pytest.approx(fresh["energy_per_atom_eV"], abs=1e-4)
    # Within the test preset's SCF criteria (eigenstates 1e-6, density 1e-3): a few meV at most.
    assert restarted["band_gap_eV"] == pytest.approx(fresh["band_gap_eV"], abs=5e-3)
    assert restarted["magnetic_moment_muB"] == pytest.approx(fresh["magnetic_moment_muB"], abs=1e-3)


def test_properties_from_the_relaxed_state_match_a_fresh_start_in_fewer_scf_iterations(relaxed: Path):
    restore(relaxed)
    fresh = properties(relaxed, "relax_fresh.json", "fresh.json", KEEP)
    assert fresh["restarted_from"] is None and "wrote no restart file" in fresh["restart_note"]
    restarted = properties(relaxed, "relax.json", "restarted.json", KEEP)
    assert restarted["restarted_from"] == "density and wave functions", restarted["restart_note"]
    assert restarted["restart_note"] is None
    assert_same_result(restarted, fresh)
    assert fresh["band_gap_eV"] > 0.3  # Si: an insulator, so the gap comparison means something
    assert 1 <= restarted["scf_iterations"] < fresh["scf_iterations"], (restarted, fresh)
    assert (relaxed / "relaxed.gpw").is_file(), "kept by properties.keep_restart_file"

    # Another k-mesh for the single point (the fast and standard presets'): GPAW would keep only the
    # density, which saved no SCF iterations (bench/README.md): a fresh start, with a note.
    denser = properties(relaxed, "relax.json", "restarted_denser.json",
                        {"properties": {"kpt_density_per_A": 3.0, "keep_restart_file": True}})
    assert denser["restarted_from"] is None and "k-mesh differs" in denser["restart_note"]
    assert denser["n_kpoints_irreducible"] > fresh["n_kpoints_irreducible"]

    # Without keep_restart_file the file goes once the record is written.
    properties(relaxed, "relax.json", "default.json")
    assert not (relaxed / "relaxed.gpw").exists()


def test_corrupt_or_foreign_restart_file_falls_back_to_a_fresh_start_with_a_note(relaxed: Path):
    fresh = json.loads((relaxed / "fresh.json").read_text())  # from the test above
    # Truncated (a disk full while copying, say).
    restore(relaxed)
    data = (relaxed / "relaxed.gpw").read_bytes()
    (relaxed / "relaxed.gpw").write_bytes(data[: len(data) // 3])
    corrupt = properties(relaxed, "relax.json", "corrupt.json", KEEP)
    assert corrupt["restarted_from"] is None
    assert "unreadable" in corrupt["restart_note"] and corrupt["restart_note"].endswith("fresh start")
    assert_same_result(corrupt, fresh)
    assert corrupt["scf_iterations"] == fresh["scf_iterations"]

    # Written by another GPAW version, as the record says.
    restore(relaxed)
    record = json.loads((relaxed / "relax.json").read_text())
    record["restart"]["gpaw_version"] = "25.7.0"
    (relaxed / "relax_other_version.json").write_text(json.dumps(record))
    other = properties(relaxed, "relax_other_version.json", "other_version.json", KEEP)
    assert other["restarted_from"] is None
    assert "written by GPAW 25.7.0" in other["restart_note"]
    assert_same_result(other, fresh)

    # Missing (removed by hand, or the run folder copied without it).
    (relaxed / "relaxed.gpw").unlink()
    missing = properties(relaxed, "relax.json", "missing.json")
    assert "missing" in missing["restart_note"] and missing["restarted_from"] is None
    assert_same_result(missing, fresh)
