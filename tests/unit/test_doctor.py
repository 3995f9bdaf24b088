"""dftscreen.gpaw_support (the supported GPAW range, what a build has) and ``dftscreen doctor``.

A GPAW built without MPI is played by a fake importable ``gpaw`` package; the check that
refuses it is the real one tools/setup.sh and doctor run (``python -m dftscreen.gpaw_support``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dftscreen import doctor, gpaw_support
from dftscreen.doctor import Finding

from conftest import REPO


def fake_gpaw(folder: Path, version: str = "26.7.0", mpi: bool = False) -> Path:
    """An importable ``gpaw``: ``cgpaw.have_mpi`` as given, ScaLAPACK and FFTW present, no PAW datasets."""
    package = folder / "gpaw"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"__version__ = {version!r}\nsetup_paths = []\n")
    (package / "cgpaw.py").write_text(f"have_mpi = {mpi}\nnew_blacs_context = FFTWPlan = None\n")
    return folder


def support_json(path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{path}{os.pathsep}{REPO / 'src'}")
    return subprocess.run([sys.executable, "-m", "dftscreen.gpaw_support", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("version", "supported"), [
    ("25.7.0", True), ("26.7.0", True), ("26.7.1b1", True), ("25.1.0", False), ("24.6.0", False),
    ("27.1.0", False), ("", False), ("dev", False),
])
def test_supported_range(version, supported):
    assert gpaw_support.version_supported(version) is supported


def test_the_range_holds_the_tested_releases_and_the_pin():
    assert all(gpaw_support.version_supported(v) for v in gpaw_support.GPAW_TESTED_VERSIONS)
    pin = (REPO / "pyproject.toml").read_text().split('"gpaw==', 1)[1].split('"', 1)[0]
    assert pin == gpaw_support.GPAW_TESTED_VERSIONS[-1]
    assert gpaw_support.GPAW_MIN_VERSION == gpaw_support.GPAW_TESTED_VERSIONS[0]


def test_a_gpaw_without_mpi_is_refused_with_the_reason(tmp_path: Path):
    proc = support_json(fake_gpaw(tmp_path), "--json")
    assert proc.returncode == 1
    build = json.loads(proc.stdout)
    assert build["version"] == "26.7.0" and build["mpi"] is False
    assert any("built without MPI" in p and "mpi_openmpi" in p for p in build["problems"]), build["problems"]
    assert "PROBLEM: GPAW 26.7.0" in proc.stderr


def test_a_gpaw_outside_the_range_is_refused(tmp_path: Path):
    proc = support_json(fake_gpaw(tmp_path, version="24.6.0", mpi=True), "--json")
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    assert any("outside the supported range >=25.7.0,<27" in p for p in problems), problems


def test_check_version_says_whether_a_release_may_be_built():
    assert support_json(REPO, "--check-version", "25.7.0").returncode == 0
    proc = support_json(REPO, "--check-version", "24.1.0")
    assert proc.returncode == 1 and "outside the supported range" in proc.stderr


def test_paw_datasets_prefer_the_sites_setup_path(tmp_path: Path):
    assert gpaw_support.paw_datasets({"GPAW_SETUP_PATH": str(tmp_path)}) == {
        "source": "GPAW_SETUP_PATH", "path": str(tmp_path)}
    datasets = gpaw_support.paw_datasets({})
    assert datasets["source"].startswith("gpaw-data ") and Path(datasets["path"]).is_dir()


def good_build(**changes) -> dict:
    build = {"importable": True, "version": "26.7.0", "path": "/x/gpaw", "python": "/x/python", "mpi": True,
             "scalapack": True, "fftw": True, "libxc": "7.0.0",
             "paw_datasets": {"source": "gpaw-data 1.2.1", "path": "/d", "gpaw_setup_paths": ["/d"]}}
    return {**build, **changes}


def test_doctor_reports_a_good_build_without_problems():
    findings = doctor.gpaw_findings(good_build())
    text = "\n".join(f.line() for f in findings)
    assert not any(f.problem for f in findings)
    assert "GPAW 26.7.0 at /x/gpaw (in the supported range" in text
    assert "MPI yes, ScaLAPACK yes, FFTW yes" in text and "PAW datasets: gpaw-data 1.2.1 at /d" in text


def test_doctor_lists_each_problem_and_notes_what_is_only_slower():
    findings = doctor.gpaw_findings(good_build(version="27.1.0", mpi=False, fftw=False,
                                              paw_datasets={"source": "none", "path": None,
                                                            "gpaw_setup_paths": []}))
    problems = [f.text for f in findings if f.problem]
    assert len(problems) == 3, problems  # range, MPI, no datasets
    assert any("no FFTW" in f.text for f in findings if not f.problem)
    text, status = doctor.report(findings)
    assert status == 1 and text.endswith("3 problem(s)")
    assert doctor.report([Finding("x", "fine")]) == ("x: fine\nok: this environment can run dftscreen", 0)


def fake_launcher(folder: Path, output: str, status: int = 0) -> str:
    script = folder / "launcher"
    script.write_text(f"#!/bin/sh\nprintf '{output}'\nexit {status}\n")
    script.chmod(0o755)
    return str(script)


def test_launching_two_ranks_reads_the_world_size(tmp_path: Path):
    assert doctor.launch_two_ranks([fake_launcher(tmp_path, "world size 2\\n")]) == (True, "2 ranks")
    ok, text = doctor.launch_two_ranks([fake_launcher(tmp_path, "world size 1\\nworld size 1\\n")])
    assert not ok and "['1', '1']" in text  # two serial ranks: a GPAW or launcher without MPI
    ok, text = doctor.launch_two_ranks([fake_launcher(tmp_path, "no controller", status=1)])
    assert not ok and "exit status 1" in text and "no controller" in text


def test_a_failing_srun_is_reported_but_not_a_problem(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(doctor, "launch_two_ranks", lambda launcher, **_: (launcher[0] != "/bin/srun", "x"))
    monkeypatch.setattr(doctor.shutil, "which", lambda name: f"/bin/{name}")
    findings = doctor.launcher_findings(srun="/bin/srun")
    assert [(f.topic, f.problem) for f in findings] == [("mpiexec", False), ("srun", False)]
    assert "salloc" in findings[1].text
    monkeypatch.setattr(doctor, "launch_two_ranks", lambda launcher, **_: (False, "x"))
    assert doctor.launcher_findings(srun="")[0].problem  # mpiexec cannot start two ranks


def test_doctor_command_exits_nonzero_on_a_serial_gpaw(tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"ml": {"enabled": False}}))
    env = dict(os.environ, PYTHONPATH=str(fake_gpaw(tmp_path / "site")))
    proc = subprocess.run([sys.executable, "-m", "dftscreen.cli", "doctor", "--no-launch", "--configfile", str(config)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "PROBLEM GPAW: GPAW 26.7.0" in proc.stdout and "built without MPI" in proc.stdout
    assert "ML model: the ML stage is off" in proc.stdout and proc.stdout.rstrip().endswith("problem(s)")
