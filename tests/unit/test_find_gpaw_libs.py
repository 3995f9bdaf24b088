"""tools/find_gpaw_libs.sh: what GPAW's build needs, looked for without root (issue 33).

No compiler runs: a restricted PATH hides the MPI wrappers, FIND_GPAW_LIBS_SYSTEM_DIRS the
system's libraries, and a fake module prefix (EasyBuild's $EBROOT<NAME>) provides them instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SCRIPT = REPO / "tools" / "find_gpaw_libs.sh"


def bare_path(folder: Path, *extra: str) -> str:
    """A PATH with the shell tools the script uses and nothing else (no mpicc, mpicxx, pkg-config)."""
    folder.mkdir(parents=True)
    for tool in ("bash", "sed", "dirname", "cat", *extra):
        os.symlink(shutil.which(tool), folder / tool)
    return str(folder)


def find(tmp_path: Path, version: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": bare_path(tmp_path / "bin"), "FIND_GPAW_LIBS_SYSTEM_DIRS": "", "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT), version, sys.executable], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_each_missing_piece_is_named_with_its_module_and_conda_package(tmp_path: Path):
    proc = find(tmp_path, "26.7.0")
    assert proc.returncode == 1 and proc.stdout == ""
    said = proc.stderr
    for piece, conda in [("an MPI C++ compiler wrapper", "openmpi (or mpich)"), ("libxc", "libxc-c"),
                         ("BLAS and LAPACK", "openblas"), ("FFTW 3", "fftw"), ("ScaLAPACK", "scalapack")]:
        assert f"MISSING: {piece}" in said, said
        assert f"conda install -c conda-forge {conda}" in said, said
    assert said.count("module: load your site's") == 5
    # GPAW 25 is C: its wrapper is mpicc.
    assert "an MPI C compiler wrapper (mpicc)" in find(tmp_path / "c", "25.7.0").stderr


def test_libraries_of_a_loaded_module_are_linked_with_their_run_path(tmp_path: Path):
    prefix = tmp_path / "software" / "foss"
    (prefix / "lib").mkdir(parents=True)
    (prefix / "include").mkdir()
    for lib in ("xc", "openblas", "fftw3", "scalapack"):
        (prefix / "lib" / f"lib{lib}.so").touch()
    for header in ("xc.h", "fftw3.h"):
        (prefix / "include" / header).touch()
    wrapper = tmp_path / "mpicxx"
    wrapper.write_text("#!/bin/sh\nexit 0\n")  # answers -showme:version: OpenMPI
    wrapper.chmod(0o755)
    proc = find(tmp_path, "26.7.0", EBROOTFOSS=str(prefix), MPICXX=str(wrapper))
    assert proc.returncode == 0, proc.stderr
    config: dict = {}
    exec(proc.stdout, config)
    assert config["compiler"] == str(wrapper) and config["mpi"] and config["fftw"] and config["scalapack"]
    assert config["libraries"] == ["xc", "openblas", "fftw3", "scalapack"]
    assert config["library_dirs"] == config["runtime_library_dirs"] == [str(prefix / "lib")]
    assert config["include_dirs"] == [str(prefix / "include")]
