"""``dftscreen doctor``: can this environment run the workflow? One line per fact, one per problem.

It reports GPAW's version (and whether it lies in the supported range of
:mod:`dftscreen.gpaw_support`), whether GPAW was built with MPI, ScaLAPACK and FFTW, which PAW
datasets it reads (the gpaw-data package or the site's, through ``GPAW_SETUP_PATH``), the ML
model's checkpoint file, and whether ``mpiexec`` (and ``srun``, where it exists) can start two
GPAW ranks. Required: a GPAW dftscreen can use (:func:`dftscreen.gpaw_support.build_problems`),
the ML model when the ML stage is on, and two ranks under mpiexec (``--no-launch`` skips the
launchers). srun is reported, but a login node that cannot start a step outside a job is not a
problem: the SLURM jobs themselves run srun inside their allocation.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from dftscreen import gpaw_support
from dftscreen.mpi_launch import MPIEXEC

#: What two ranks run: GPAW's own interpreter entry, printing the size of its world on rank 0.
WORLD_SIZE_CODE = "from gpaw.mpi import world\nif world.rank == 0: print('world size', world.size)"
#: Seconds a launcher may take to start two ranks (srun may wait for an allocation).
LAUNCH_TIMEOUT_S = 180


@dataclass(frozen=True)
class Finding:
    """One line of the report; ``problem`` lines make the command exit nonzero."""

    topic: str
    text: str
    problem: bool = False

    def line(self) -> str:
        return f"{'PROBLEM ' if self.problem else ''}{self.topic}: {self.text}"


def gpaw_findings(build: dict[str, Any]) -> list[Finding]:
    """GPAW's version and range, its build (MPI, ScaLAPACK, FFTW, libxc) and its PAW datasets."""
    problems = [Finding("GPAW", p, problem=True) for p in gpaw_support.build_problems(build)]
    if not build.get("importable"):
        return problems
    version = build["version"]
    in_range = "in" if gpaw_support.version_supported(version) else "OUTSIDE"
    findings = [
        Finding("GPAW", f"GPAW {version} at {build['path']} ({in_range} the supported range "
                        f"{gpaw_support.GPAW_SUPPORTED_SPEC})"),
        Finding("build", f"MPI {_yes(build['mpi'])}, ScaLAPACK {_yes(build['scalapack'])}, "
                         f"FFTW {_yes(build['fftw'])}, libxc {build.get('libxc') or 'unknown'}"),
    ]
    datasets = build["paw_datasets"]
    used = datasets["gpaw_setup_paths"][0] if datasets["gpaw_setup_paths"] else None
    findings.append(Finding("PAW datasets", f"{datasets['source']} at {datasets['path']}; GPAW reads {used} first"))
    findings += [Finding("build", note) for note in gpaw_support.build_notes(build)]
    return findings + problems


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def ml_findings(ml_config: dict[str, Any]) -> list[Finding]:
    """The ML model's checkpoint file (required when the ML stage is on)."""
    if not ml_config.get("enabled", True):
        return [Finding("ML model", "the ML stage is off (ml.enabled: false)")]
    from dftscreen.ml import checkpoint_path

    model = ml_config.get("model", "7net-0")
    try:
        path = checkpoint_path(model)
    except (FileNotFoundError, ImportError) as exc:
        return [Finding("ML model", f"{model}: {exc}", problem=True)]
    return [Finding("ML model", f"{model}: {path}")]


def launch_two_ranks(launcher: list[str], python: str = sys.executable,
                     timeout: float = LAUNCH_TIMEOUT_S) -> tuple[bool, str]:
    """Start two GPAW ranks with ``launcher``: (whether GPAW saw a world of two, what happened)."""
    command = [*launcher, "-n", "2", python, "-m", "gpaw", "python", "-c", WORLD_SIZE_CODE]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"no answer within {timeout:.0f} s"
    except OSError as exc:
        return False, str(exc)
    sizes = [line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("world size")]
    if proc.returncode == 0 and sizes == ["2"]:
        return True, "2 ranks"
    said = (proc.stderr or proc.stdout).strip().splitlines()
    return False, f"exit status {proc.returncode}, world size {sizes or 'not printed'}" + (
        f": {said[-1][:300]}" if said else "")


def launcher_findings(launch: bool = True, srun: str | None = None) -> list[Finding]:
    """mpiexec must start two ranks; srun (where installed) is tried and reported."""
    if not launch:
        return [Finding("launchers", "not tried (--no-launch)")]
    mpiexec = shlex.split(MPIEXEC)
    findings = []
    if shutil.which(mpiexec[0]) is None:
        findings.append(Finding("mpiexec", f"{mpiexec[0]} is not on PATH: load your site's MPI module", problem=True))
    else:
        ok, text = launch_two_ranks(mpiexec)
        findings.append(Finding("mpiexec", f"{MPIEXEC} -n 2: {text}", problem=not ok))
    srun = shutil.which("srun") if srun is None else srun
    if srun:
        ok, text = launch_two_ranks([srun])
        note = "" if ok else " (the SLURM jobs start srun inside their allocation; try this inside `salloc -n 2`)"
        findings.append(Finding("srun", f"srun -n 2: {text}{note}"))
    else:
        findings.append(Finding("srun", "not installed here (needed on a SLURM cluster only)"))
    return findings


def gpaw_build_of(python: str = sys.executable, timeout: float = 300) -> dict[str, Any]:
    """:func:`dftscreen.gpaw_support.gpaw_build` of ``python``, asked in a process of its own.

    Importing GPAW initialises MPI (a singleton rank) in the importing process, and an
    ``mpiexec`` started from that process afterwards fails (GPAW 25.7 with OpenMPI).
    """
    command = [python, "-P", "-m", "dftscreen.gpaw_support", "--json"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        build = json.loads(proc.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        said = getattr(exc, "stderr", None) or str(exc)
        return {"importable": False, "error": said.strip().splitlines()[-1] if said.strip() else repr(exc)}
    build.pop("problems", None)
    build.pop("notes", None)
    return build


def diagnose(config: dict[str, Any], launch: bool = True, srun: str | None = None) -> list[Finding]:
    """Every finding about this environment, for the run ``config`` (with the schema's defaults)."""
    findings = [Finding("python", sys.executable)]
    findings += gpaw_findings(gpaw_build_of())
    findings += ml_findings(config.get("ml") or {})
    findings += launcher_findings(launch, srun)
    return findings


def report(findings: list[Finding]) -> tuple[str, int]:
    """The printed report and the exit status (1 when any finding is a problem)."""
    problems = [f for f in findings if f.problem]
    lines = [f.line() for f in findings]
    lines.append(f"{len(problems)} problem(s)" if problems else "ok: this environment can run dftscreen")
    return "\n".join(lines), 1 if problems else 0
