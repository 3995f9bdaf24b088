"""Reference jobs are sized by their own cells (Snakemake dry run: no DFT)."""

from __future__ import annotations

import re
from pathlib import Path

from ase.build import bulk
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from conftest import run_snakemake, write_run_config


def test_reference_phase_job_scales_with_its_cell(tmp_path: Path):
    (tmp_path / "cifs").mkdir()
    phases = tmp_path / "known_phases"
    phases.mkdir()
    # Conventional rocksalt NaCl (8 atoms) and bcc Na (1 atom).
    CifWriter(AseAtomsAdaptor.get_structure(bulk("NaCl", "rocksalt", a=5.64, cubic=True))).write_file(
        phases / "NaCl_rocksalt.cif")
    CifWriter(AseAtomsAdaptor.get_structure(bulk("Na", "bcc", a=4.23))).write_file(phases / "Na_bcc.cif")
    config = {"input": {"cif_dir": "cifs"}, "output_dir": "out",
              "dft": {"preset": "test", "resources": {"max_tasks": 8, "atoms_per_task": 2}},
              "stability": {"reference_cif_dir": "known_phases"}}
    write_run_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "--cores", "8", "--dry-run",
                         *(f"out/references/phases/{sid}/relax.json" for sid in ("NaCl_rocksalt", "Na_bcc")),
                         profile="local")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    tasks = dict(re.findall(r"wildcards: sid=(\w+)\n(?:.*\n)*?\s+resources: .*?\btasks=(\d+)", proc.stdout))
    assert tasks == {"NaCl_rocksalt": "4", "Na_bcc": "1"}, proc.stdout[-3000:]
