"""Which GPAW dftscreen runs with: the supported range of GPAW versions (declared here and nowhere
else), what a GPAW build has (MPI, ScaLAPACK, FFTW) and which PAW datasets it reads.

Standard library only, and runnable as a script with any Python that imports GPAW
(``python -P src/dftscreen/gpaw_support.py [--json]``; ``-P``: the script's folder, whose
module names would shadow others, stays off ``sys.path``): ``tools/setup.sh`` checks a GPAW taken
from the environment (``--gpaw-from-environment``) and the one it built with it, before
dftscreen itself is installed; ``dftscreen doctor`` reports the same facts.

The range holds the GPAW releases the test suite runs the workflow with: the pin in
``pyproject.toml`` (tests/dft, tests/workflow) and the release before it, built from source
by ``tools/setup.sh --gpaw-version`` in tests/workflow/test_cluster_install.py. A test keeps
``pyproject.toml``'s pin and ``environment.yml``'s range in agreement with it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

#: Oldest supported GPAW (the release before the pin; tested by tests/workflow/test_cluster_install.py).
GPAW_MIN_VERSION = "25.7.0"
#: First GPAW release not supported (untested: energies and keywords may change).
GPAW_BELOW_VERSION = "27"
#: The releases the test suite runs the workflow with.
GPAW_TESTED_VERSIONS = ("25.7.0", "26.7.0")
#: The range as pip and conda write it.
GPAW_SUPPORTED_SPEC = f">={GPAW_MIN_VERSION},<{GPAW_BELOW_VERSION}"

#: The problem said of a GPAW built without MPI (setup.sh and doctor refuse it).
NO_MPI_REASON = (
    "was built without MPI (its C extension reports have_mpi = False): dftscreen runs every GPAW job "
    "under mpiexec or srun with several ranks, and a serial GPAW would run each rank as its own "
    "calculation of the whole structure. Use a GPAW built with MPI: your site's GPAW module, "
    "conda-forge's gpaw with an mpi_openmpi or mpi_mpich build string, or tools/setup.sh's own build"
)


def version_tuple(version: str) -> tuple[int, ...]:
    """The leading numeric release of ``version`` (``"26.7.0"`` -> (26, 7, 0); ``"25.7.1b1"`` -> (25, 7, 1))."""
    parts = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.group() != part:
            break
    return tuple(parts)


def version_supported(version: str) -> bool:
    """Whether GPAW ``version`` lies in :data:`GPAW_SUPPORTED_SPEC`."""
    release = version_tuple(version)
    return bool(release) and version_tuple(GPAW_MIN_VERSION) <= release < version_tuple(GPAW_BELOW_VERSION)


def paw_datasets(environ: dict[str, str] | None = None) -> dict[str, str | None]:
    """Where GPAW finds its PAW datasets, as GPAW looks: ``$GPAW_SETUP_PATH`` first (a site GPAW
    module sets it to the site's datasets), then the ``gpaw-data`` package.

    Returns ``{"source": "GPAW_SETUP_PATH" | "gpaw-data <version>" | "none", "path": ...}``;
    nothing heavy is imported (gpaw_data only). ``~/.gpaw/rc.py`` is not read.
    """
    environ = os.environ if environ is None else environ
    for path in filter(None, environ.get("GPAW_SETUP_PATH", "").split(os.pathsep)):
        if os.path.isdir(path):
            return {"source": "GPAW_SETUP_PATH", "path": path}
    try:
        import gpaw_data
    except ImportError:
        return {"source": "none", "path": None}
    from importlib import metadata

    try:
        version = metadata.version("gpaw-data")
    except metadata.PackageNotFoundError:
        version = getattr(gpaw_data, "__version__", "unknown")
    return {"source": f"gpaw-data {version}", "path": str(gpaw_data.datapath())}


def gpaw_build() -> dict[str, Any]:
    """What the importable GPAW is: version, where, MPI, ScaLAPACK, FFTW, libxc and its PAW datasets.

    Imports GPAW (its C extension initialises MPI as a single rank). ``{"importable": False,
    "error": ...}`` when it does not import.
    """
    try:
        import gpaw
        from gpaw import cgpaw
    except Exception as exc:  # ImportError, or a C extension that fails to load its libraries
        return {"importable": False, "error": f"{type(exc).__name__}: {exc}"}
    build: dict[str, Any] = {
        "importable": True,
        "version": gpaw.__version__,
        "path": os.path.dirname(gpaw.__file__),
        "python": sys.executable,
        "mpi": _have_mpi(cgpaw),
        "scalapack": hasattr(cgpaw, "new_blacs_context"),
        "fftw": hasattr(cgpaw, "FFTWPlan"),
    }
    try:
        build["libxc"] = (gpaw.get_libraries() or {}).get("libxc") or None
    except Exception:  # older GPAW without get_libraries
        build["libxc"] = None
    found = [str(p) for p in getattr(gpaw, "setup_paths", []) if os.path.isdir(p)]
    build["paw_datasets"] = {**paw_datasets(), "gpaw_setup_paths": found}
    return build


def _have_mpi(cgpaw: Any) -> bool:
    """The C extension's ``have_mpi`` (GPAW 26), else ``gpaw.mpi.have_mpi`` (GPAW 25: a world communicator exists)."""
    have = getattr(cgpaw, "have_mpi", None)
    if have is None:
        import gpaw.mpi

        have = getattr(gpaw.mpi, "have_mpi", False)
    return bool(have)


def build_problems(build: dict[str, Any]) -> list[str]:
    """One sentence per reason dftscreen cannot run with this GPAW (empty: it can)."""
    if not build.get("importable"):
        return [f"GPAW does not import in {sys.executable}: {build.get('error')}"]
    version = build["version"]
    problems = []
    if not version_supported(version):
        problems.append(
            f"GPAW {version} is outside the supported range {GPAW_SUPPORTED_SPEC} "
            f"(tested: {', '.join(GPAW_TESTED_VERSIONS)}); use a release in that range"
        )
    if not build["mpi"]:
        problems.append(f"GPAW {version} at {build['path']} {NO_MPI_REASON}")
    if not build["paw_datasets"]["gpaw_setup_paths"]:
        problems.append(
            f"GPAW {version} finds no PAW datasets: install the gpaw-data package (pip install gpaw-data) "
            "or set GPAW_SETUP_PATH to your site's datasets"
        )
    return problems


def build_notes(build: dict[str, Any]) -> list[str]:
    """What the build lacks that dftscreen can do without (slower or less parallel), one sentence each."""
    if not build.get("importable"):
        return []
    notes = []
    if not build["scalapack"]:
        notes.append("GPAW has no ScaLAPACK: large structures diagonalise on one rank (slower, more memory)")
    if not build["fftw"]:
        notes.append("GPAW has no FFTW: plane-wave FFTs use numpy's (slower)")
    return notes


def main(argv: list[str] | None = None) -> int:
    """Print the build (``--json``: as JSON) and its problems; exit status 1 when dftscreen cannot use it.

    ``--check-version X`` only says whether release X is supported (nothing imported);
    ``--require-scalapack-fftw`` makes a build without them a problem too (tools/setup.sh's own build).
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--check-version"]:
        if version_supported(argv[1]):
            return 0
        print(f"GPAW {argv[1]} is outside the supported range {GPAW_SUPPORTED_SPEC} "
              f"(tested: {', '.join(GPAW_TESTED_VERSIONS)})", file=sys.stderr)
        return 1
    build = gpaw_build()
    problems = build_problems(build)
    if "--require-scalapack-fftw" in argv:
        problems += [f"{note} (it was configured with it: see the build's log)" for note in build_notes(build)]
    if "--json" in argv:
        print(json.dumps({**build, "problems": problems, "notes": build_notes(build)}, indent=2))
    elif build.get("importable"):
        print(
            f"GPAW {build['version']} at {build['path']}: MPI {build['mpi']}, ScaLAPACK {build['scalapack']}, "
            f"FFTW {build['fftw']}; PAW datasets: {build['paw_datasets']['source']}"
        )
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
