"""Two run folders sharing one output_dir: the second real run is refused at once (issue 28)."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from conftest import EXAMPLES, run_snakemake, write_run_config

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
