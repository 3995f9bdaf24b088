"""Local GPAW jobs running side by side get separate cores (Snakemake dry run + a 1-rank mpiexec)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, mpi_env, run_snakemake, write_run_config


def rule_default_launcher(workdir: Path) -> str:
    """The MPI launcher (the words before ``-n``) of an element reference job without a profile."""
    (workdir / "cifs").mkdir()
    write_run_config(workdir, {"input": {"cif_dir": "cifs"}, "output_dir": "out", "dft": {"preset": "test"}})
    from dftscreen.references import automatic_candidate_keys
    from dftscreen.reflib import settings_key
    from dftscreen.settings import resolve_settings

    library = f"out/reference_library/{settings_key(resolve_settings('test', {}, {}, None))}"
    proc = run_snakemake(workdir, "--cores", "2", "--dry-run", "--printshellcmds",
                         f"{library}/elements/Na/{automatic_candidate_keys('Na')[0]}/relax.json")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    match = re.search(r"OMP_NUM_THREADS=1 (.*?) -n \d+ \S+ -m gpaw python -m dftscreen\.references", proc.stdout)
    assert match, proc.stdout[-3000:]
    return match.group(1)


def local_profile_launchers() -> dict[str, str]:
    """The MPI launcher the local profile sets per rule."""
    profile = yaml.safe_load((REPO / "profiles" / "local" / "config.yaml").read_text())
    return {rule: resources["mpi"] for rule, resources in profile["set-resources"].items() if "mpi" in resources}


def cores_seen_by_one_rank(launcher: str) -> int:
    probe = [*shlex.split(launcher), "-n", "1", sys.executable, "-c",
             "import os; print(len(os.sched_getaffinity(0)))"]
    proc = subprocess.run(probe, env=mpi_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to see a job pinned to one")
def test_one_rank_jobs_are_not_pinned_to_one_core(tmp_path: Path):
    launchers = {"rule default": rule_default_launcher(tmp_path), **local_profile_launchers()}
    assert {"relax", "properties"} <= launchers.keys(), launchers
    # Pinned, a 1-rank job sees one core: the same core 0 as every other local 1-rank job.
    cores = {name: cores_seen_by_one_rank(launcher) for name, launcher in launchers.items()}
    assert cores == {name: len(os.sched_getaffinity(0)) for name in launchers}, (launchers, cores)
