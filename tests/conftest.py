"""Shared fixtures: repository paths, an MPI launcher for GPAW entry points, and a Snakemake runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EXAMPLES = REPO / "examples" / "cifs"
GENERATED = SHARED / "data" / "generated" / "crystallm"
PEROV5 = SHARED / "data" / "reference" / "perov5_sample50"


def mpi_env() -> dict[str, str]:
    """Environment for mpiexec: one OpenMP thread per rank; root allowed only when we are root."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def run_gpaw_module(module: str, args: list[str], ranks: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m <module>`` under ``mpiexec -n ranks gpaw python``."""
    command = ["mpiexec", "-n", str(ranks), sys.executable, "-m", "gpaw", "python", "-m", module, *args]
    return subprocess.run(command, env=mpi_env(), capture_output=True, text=True, timeout=timeout)


def write_run_config(workdir: Path, config: dict) -> None:
    """Write ``config/config.yaml`` of a run folder, as a user would."""
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def run_snakemake(workdir: Path, *args: str, profile: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the workflow in the run folder ``workdir``, with ``profiles/<profile>`` when one is named."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(workdir)]
    if profile is not None:
        command += ["--profile", str(REPO / "profiles" / profile)]
    return subprocess.run([*command, *args], env=mpi_env(), capture_output=True, text=True, timeout=timeout)


def settings_json(preset: str = "test", overrides: dict | None = None, ladder: list | None = None) -> str:
    from dftscreen.settings import resolve_settings

    return json.dumps(resolve_settings(preset, overrides, scf_ladder=ladder))


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared (reference data beside the checkout) is not present")
    return SHARED
