"""Installing where users are (issue 33): tools/setup.sh without root, and GPAW from the environment.

One GPAW build serves the module: an unprivileged user (created here) runs ``tools/setup.sh
--gpaw-version <the previous supported release>`` from a copy of the checkout, with apt-get and
sudo out of reach (stand-ins on its PATH that fail and leave a mark); the Debian libraries are
already installed, so setup.sh finds them itself and builds GPAW into the user's virtualenv.
That GPAW then runs a test-preset relaxation under ``mpiexec -n 2`` as the user, and is the
"site GPAW" of ``tools/setup.sh --gpaw-from-environment``: the workflow runs with it and the
row's provenance names its version. Needs root (to create the user), as CI has.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dftscreen.gpaw_support import GPAW_MIN_VERSION, GPAW_TESTED_VERSIONS

from conftest import EXAMPLES, REPO, mpi_env, settings_json, write_run_config

pytestmark = pytest.mark.e2e

#: The previous supported GPAW release: the oldest of the range, not the pin the suite runs elsewhere.
PREVIOUS_GPAW = GPAW_MIN_VERSION
USER = "dftscreen-ci"
#: What the user's copy of the checkout needs (bench/ and tests/ are not installed).
CHECKOUT_PARTS = (
    "pyproject.toml", "README.md", "LICENSE", "src", "tools", "workflow", "config", "profiles", "examples",
)
STRUCTURE = "NaCl_crystallm_P4nmm.cif"


def as_user(home: Path) -> dict[str, str]:
    """A login environment of the unprivileged user, with apt-get and sudo stand-ins first on PATH."""
    return {
        "HOME": str(home), "USER": USER, "LOGNAME": USER, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
        "PATH": f"{home / 'no-root-bin'}:/usr/local/bin:/usr/bin:/bin", "SLURM_CONF": os.devnull,
    }


@pytest.fixture(scope="module")
def user_install():
    """(user's home, its checkout copy, its virtualenv, setup.sh's stderr): GPAW PREVIOUS_GPAW built by the user."""
    if os.geteuid() != 0:
        pytest.skip("creating the unprivileged user needs root (CI runs as root)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
    home = Path(pwd.getpwnam(USER).pw_dir)
    # An earlier session's folder (its virtualenv is ~1.5 GB) goes in the background: deleting it
    # takes minutes on a busy disk, and this session's is left for the next one (CI starts afresh).
    stale = [str(p) for p in home.glob("issue33-*")]
    if stale:
        subprocess.Popen(["rm", "-rf", *stale], start_new_session=True)
    work = Path(tempfile.mkdtemp(prefix="issue33-", dir=home))
    checkout = work / "dftscreen"
    checkout.mkdir()
    for part in CHECKOUT_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, checkout / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, checkout / part)
    # apt-get and sudo exist for this user only as stand-ins that fail and write down how they were called.
    fake_bin = home / "no-root-bin"
    fake_bin.mkdir(exist_ok=True)
    for tool in ("apt-get", "sudo"):
        (fake_bin / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >>{work}/calls.log\nexit 1\n')
        (fake_bin / tool).chmod(0o755)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(work), str(fake_bin)], check=True)
    venv = work / "venv"
    proc = subprocess.run(
        ["bash", str(checkout / "tools" / "setup.sh"), "--gpaw-version", PREVIOUS_GPAW],
        env={**as_user(home), "DFTSCREEN_VENV": str(venv)}, cwd=work, user=USER, group=USER,
        capture_output=True, text=True, timeout=2400,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return home, work, venv, proc.stderr


def test_setup_without_root_builds_gpaw_and_relaxes_under_mpiexec(user_install, tmp_path: Path):
    home, work, venv, log = user_install
    assert "no apt-get here" in log, log[-3000:]
    # The one call allowed: asking sudo whether it works without a password (it does not).
    calls = (work / "calls.log").read_text().splitlines() if (work / "calls.log").exists() else []
    assert set(calls) <= {"sudo -n true"}, calls
    assert f"building gpaw=={PREVIOUS_GPAW}" in log and "ready:" in log
    # The user's own environment, under mpiexec -n 2: a test-preset relaxation.
    run = work / "relax"
    run.mkdir()
    shutil.copy(EXAMPLES / STRUCTURE, run / STRUCTURE)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(run)], check=True)
    proc = subprocess.run(
        ["mpiexec", "-n", "2", str(venv / "bin" / "python"), "-m", "gpaw", "python", "-m", "dftscreen.relax",
         "--structure-id", "NaCl", "--cif", str(run / STRUCTURE), "--settings", settings_json("test"),
         "--out-json", str(run / "relax.json"), "--out-cif", str(run / "relaxed.cif"), "--workdir", str(run)],
        env=as_user(home), cwd=run, user=USER, group=USER, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run / "relax.json").read_text())
    assert record["status"] == "relaxed" and record["mpi_ranks"] == 2, record.get("reason")
    assert record["gpaw_version"] == PREVIOUS_GPAW
    # The build has what setup.sh configured (setup.sh checked it too).
    info = subprocess.run([str(venv / "bin" / "python"), "-m", "dftscreen.gpaw_support", "--json"],
                          env=as_user(home), user=USER, group=USER, capture_output=True, text=True, timeout=120)
    build = json.loads(info.stdout)
    assert (build["version"], build["mpi"], build["scalapack"], build["fftw"]) == (PREVIOUS_GPAW, True, True, True)


def test_workflow_with_gpaw_from_the_environment_records_its_version(user_install, tmp_path: Path):
    """The user's virtualenv plays a site's GPAW: setup.sh --gpaw-from-environment builds nothing."""
    _, _, user_venv, _ = user_install
    assert PREVIOUS_GPAW != GPAW_TESTED_VERSIONS[-1]  # a version the rest of the suite does not run
    venv = tmp_path / "venv"
    proc = subprocess.run(
        ["bash", str(REPO / "tools" / "setup.sh"), "--gpaw-from-environment"],
        env={**mpi_env(), "PYTHON": str(user_venv / "bin" / "python"), "DFTSCREEN_VENV": str(venv)},
        capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "building gpaw" not in proc.stderr and "GPAW from the environment" in proc.stderr
    assert f"GPAW {PREVIOUS_GPAW}" in proc.stderr
    # dftscreen doctor in that environment: GPAW's version, MPI, ScaLAPACK, FFTW, PAW data, two ranks.
    doctor = subprocess.run([str(venv / "bin" / "dftscreen"), "doctor"], env=mpi_env(), capture_output=True,
                            text=True, timeout=600, cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"GPAW {PREVIOUS_GPAW}" in doctor.stdout and "-n 2: 2 ranks" in doctor.stdout, doctor.stdout
    # The workflow, one structure at the test preset, with that environment's Python.
    run = tmp_path / "run"
    (run / "cifs").mkdir(parents=True)
    shutil.copy(EXAMPLES / STRUCTURE, run / "cifs" / STRUCTURE)
    write_run_config(run, {"input": {"cif_dir": "cifs"}, "output_dir": "out", "ml": {"enabled": False},
                           "dft": {"preset": "test", "overrides": {"relax": {"max_steps": 2},
                                                                   "properties": {"band_path_npoints": 0}}},
                           "stability": {"elemental_references": False}})
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
         "--directory", str(run), "--profile", str(REPO / "profiles" / "local")],
        env=mpi_env(), capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    row = pd.read_csv(run / "out" / "results.csv").set_index("structure_id").loc["NaCl_crystallm_P4nmm"]
    assert row["status"] in ("relaxed", "not_converged"), row["reason"]
    assert row["gpaw_version"] == PREVIOUS_GPAW
    provenance = yaml.safe_load((run / "out" / "summary.json").read_text())["provenance"]
    assert provenance["gpaw_version"] == PREVIOUS_GPAW
    assert provenance["paw_datasets"].startswith("gpaw-data "), provenance


def fake_serial_gpaw(folder: Path, version: str = "26.7.0") -> Path:
    """An importable ``gpaw`` that reports no MPI, as a GPAW built without it does."""
    package = folder / "gpaw"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"__version__ = {version!r}\nsetup_paths = []\n")
    (package / "cgpaw.py").write_text("have_mpi = False\n")
    return folder


def test_setup_refuses_a_gpaw_from_the_environment_without_mpi(tmp_path: Path):
    site = fake_serial_gpaw(tmp_path / "site")
    proc = subprocess.run(
        ["bash", str(REPO / "tools" / "setup.sh"), "--gpaw-from-environment"],
        env={**mpi_env(), "PYTHON": shutil.which("python3.11") or "python3", "PYTHONPATH": str(site),
             "DFTSCREEN_VENV": str(tmp_path / "venv")},
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0
    assert "built without MPI" in proc.stderr and "cannot be used" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "venv" / ".dftscreen-installed").exists()  # nothing installed past the check
