"""Two run folders sharing one output_dir: the second real run is refused at once (issue 28)."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from dftscreen.layout import ReferenceLibrary, ResultsLayout
from dftscreen.reflib import settings_key
from dftscreen.settings import resolve_settings

from conftest import EXAMPLES, TEST_DATA, run_snakemake, write_run_config

STRUCTURE = "NaCl_crystallm_P4nmm.cif"


def test_run_refused_while_another_live_run_folder_holds_output_dir(tmp_path: Path):
    shared, run = tmp_path / "shared_results", tmp_path / "run_b"
    (run / "cifs").mkdir(parents=True)
    shutil.copy(EXAMPLES / STRUCTURE, run / "cifs" / STRUCTURE)
    write_run_config(run, {"input": {"cif_dir": "cifs"}, "output_dir": str(shared)})
    shared.mkdir()
    lock = shared / ".dftscreen.lock"
    # A live process (this test's) of another run folder holds it.
    holder = {"run_folder": str(tmp_path / "run_a"), "host": socket.gethostname(), "pid": os.getpid()}
    lock.write_text(json.dumps(holder))
    sentence = f"output_dir {shared} is in use by the run in {tmp_path / 'run_a'}"

    dry = run_snakemake(run, "-n")  # a dry run warns and neither takes nor refuses the lock
    assert dry.returncode == 0, (dry.stdout + dry.stderr)[-3000:]
    assert f"dftscreen: WARNING: {sentence}" in dry.stderr

    real = run_snakemake(run, "--cores", "1")
    output = real.stdout + real.stderr
    assert real.returncode != 0, output[-3000:]
    assert sentence in output, output[-3000:]
    assert "Finished job" not in output and not (shared / "check").exists()
    assert json.loads(lock.read_text()) == holder  # the other run's lock is left alone

    lock.unlink()  # the other run ended: this one runs, and releases its own lock at its end
    done = run_snakemake(run, "--cores", "1", "--until", "input_manifest")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Finished job" in done.stdout + done.stderr and not lock.exists()


def test_dry_run_plans_no_job_for_a_reference_phase_in_a_200_A_box(tmp_path: Path):
    """Issue 28, N4: the size gate covers reference CIFs too; the main process says so once."""
    from pymatgen.core import Lattice, Structure

    (tmp_path / "cifs").mkdir()
    shutil.copy(EXAMPLES / STRUCTURE, tmp_path / "cifs" / STRUCTURE)
    (tmp_path / "phases").mkdir()
    Structure(Lattice.cubic(200.0), ["Na", "Cl"], [[0, 0, 0], [0.01] * 3]).to(filename=str(tmp_path / "phases/box.cif"))
    Structure(Lattice.cubic(4.2), ["Li", "Cl"], [[0, 0, 0], [0.5] * 3]).to(filename=str(tmp_path / "phases/LiCl.cif"))
    write_run_config(
        tmp_path, {"input": {"cif_dir": "cifs"}, "output_dir": "out", "stability": {"reference_cif_dir": "phases"}}
    )
    proc = run_snakemake(tmp_path, "-n")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert proc.stderr.count("dftscreen: WARNING: reference phase box (phases/box.cif") == 1
    assert "phases/LiCl.cif" in output and output.count("phases/box.cif") == 1  # the warning only: no job


def test_a_chosen_known_phase_in_a_200_A_box_gets_no_job_and_a_warning(tmp_path: Path):
    """Issue 28, N4 for known phases: compare_known chose a phase (its outputs written here, as
    tests/workflow/test_gpaw_commands.py does) whose start CIF is 2 atoms in a 200 Å box: the dry run
    plans no relax_competing_phase job for it, one for the sound phase beside it, and says why once.
    The table's note in the rows of its chemical system: tests/unit/test_plan_size_gate.py."""
    from pymatgen.core import Lattice, Structure

    (tmp_path / "cifs").mkdir()
    shutil.copy(EXAMPLES / STRUCTURE, tmp_path / "cifs" / STRUCTURE)
    shutil.copy(TEST_DATA / "known" / "known_NaCl_TiO_LiFePO.json.gz", tmp_path / "known.json.gz")
    write_run_config(tmp_path, {"input": {"cif_dir": "cifs"}, "output_dir": "out", "ml": {"enabled": False},
                                "dft": {"preset": "test"}, "known_materials": {"database": {"path": "known.json.gz"}}})
    check = run_snakemake(tmp_path, "--cores", "2", "out/check/checks.json")
    assert check.returncode == 0, check.stderr[-3000:]
    layout = ResultsLayout.of("out")
    library = ReferenceLibrary("out/reference_library", settings_key(resolve_settings("test")))
    phases = [{"phase_key": key, "entry_id": f"known-{key}", "reduced_formula": "NaCl", "chemical_system": "Cl-Na",
               "n_sites": 2, "e_above_known_hull_eV_per_atom": 0.0, "energy_source": "known set"}
              for key in ("NaCl-box000000000", "NaCl-ok0000000000")]
    (tmp_path / "out" / "known").mkdir()
    (tmp_path / layout.novelty_table).write_text(json.dumps({"structures": {}}))
    (tmp_path / layout.competing_phases).write_text(json.dumps({"library": library.folder, "phases": phases,
                                                                "notes": []}))
    for key, a in (("NaCl-box000000000", 200.0), ("NaCl-ok0000000000", 5.6)):
        start = tmp_path / library.phase_start_cif(key)
        start.parent.mkdir(parents=True)
        Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]).to(filename=str(start))
    proc = run_snakemake(tmp_path, "--cores", "2", "-n")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert proc.stderr.count("dftscreen: WARNING: known phase NaCl-box000000000 gets no DFT job") == 1
    assert "too large for DFT here" in proc.stderr
    assert "NaCl-ok0000000000" in proc.stdout and "NaCl-box000000000" not in proc.stdout  # a job for the sound one
