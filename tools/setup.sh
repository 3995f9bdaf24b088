#!/usr/bin/env bash
# Install everything dftscreen needs into a virtualenv (.venv, or $DFTSCREEN_VENV): GPAW with
# MPI, ScaLAPACK and FFTW, and the pinned Python packages from pyproject.toml. Idempotent: a
# second call installs nothing. Works without root (README, "Installing on a cluster"):
#
#   - root (or passwordless sudo) on Debian/Ubuntu: missing Debian packages are installed with
#     apt-get (OpenMPI, libxc, OpenBLAS, ScaLAPACK, FFTW), then GPAW is built against them;
#   - anyone else (a cluster login node, a conda env): the same libraries are looked for
#     (an MPI compiler wrapper, libxc, BLAS/LAPACK, FFTW, ScaLAPACK: pkg-config, the usual
#     environment variables, $CONDA_PREFIX, EasyBuild's $EBROOT*, the compiler's search path),
#     each missing one is named with the module or conda-forge package that provides it, and
#     GPAW is built against what was found;
#   - --gpaw-from-environment (or, without an option, a GPAW that $PYTHON already imports and
#     that passes the checks: a site module, a conda env): no GPAW is built; the virtualenv sees
#     that GPAW, which must have MPI and lie in the supported range (src/dftscreen/gpaw_support.py).
#
# Usage: bash tools/setup.sh [--with-slurm] [--gpaw-from-environment | --build-gpaw] [--gpaw-version X.Y.Z]
#   --with-slurm             also the pinned SLURM executor plugins
#   --gpaw-from-environment  use the GPAW that $PYTHON (default: python3 on PATH) imports; never build one
#   --build-gpaw             build GPAW even when $PYTHON imports one
#   --gpaw-version X.Y.Z     build this GPAW release (within the supported range) instead of pyproject's pin
# Environment: DFTSCREEN_VENV (the virtualenv), PYTHON (the interpreter), MPICC/MPICXX (the MPI
# compiler wrappers), DFTSCREEN_NO_APT=1 (never apt-get, even as root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DFTSCREEN_VENV:-$ROOT/.venv}"
SUPPORT="$ROOT/src/dftscreen/gpaw_support.py"
EXTRAS="test"
GPAW_MODE="auto"   # auto | environment | build
GPAW_VERSION=""
while (($#)); do
    case "$1" in
        --with-slurm) EXTRAS="test,slurm" ;;
        --gpaw-from-environment) GPAW_MODE="environment" ;;
        --build-gpaw) GPAW_MODE="build" ;;
        --gpaw-version) GPAW_VERSION="${2:?--gpaw-version needs a version}"; shift ;;
        --gpaw-version=*) GPAW_VERSION="${1#*=}" ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. the Python interpreter ------------------------------------------------------------
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    # An environment's own python3 (module, conda) first when its GPAW is wanted.
    # (python3 of a RHEL login node may be 3.6 or 3.9: the first 3.11 or newer is taken.)
    candidates=(python3.11 python3 python3.12 python3.13)
    [[ "$GPAW_MODE" != "build" ]] && candidates=(python3 python3.13 python3.12 python3.11)
    for candidate in "${candidates[@]}"; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            PYTHON="$(command -v "$candidate")"; break
        fi
    done
fi
[[ -n "$PYTHON" ]] || die "no python3 on PATH: load your site's Python module (3.11 or newer), or conda install -c conda-forge python=3.11"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is Python $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'); dftscreen needs 3.11 or newer"

# GPAW already importable from $PYTHON (not this virtualenv's own): use it unless told to build.
env_gpaw_ok() { "$PYTHON" -P "$SUPPORT" >/dev/null 2>&1; }
own_venv() { "$PYTHON" -c 'import os, sys; sys.exit(os.path.realpath(sys.prefix) != os.path.realpath(sys.argv[1]))' "$VENV"; }
if [[ "$GPAW_MODE" == "auto" && -z "$GPAW_VERSION" ]] && ! own_venv && "$PYTHON" -c 'import gpaw' >/dev/null 2>&1; then
    if env_gpaw_ok; then
        log "$PYTHON imports a GPAW with MPI in the supported range: using it (--build-gpaw builds one instead)"
        GPAW_MODE="environment"
    else
        log "$PYTHON imports a GPAW that dftscreen cannot use; building one instead:"
        "$PYTHON" -P "$SUPPORT" 2>&1 | sed 's/^/[setup]   /' >&2 || true
    fi
fi
[[ "$GPAW_MODE" == "auto" ]] && GPAW_MODE="build"
[[ "$GPAW_MODE" == "environment" && -n "$GPAW_VERSION" ]] && die "--gpaw-version builds GPAW; it cannot go with --gpaw-from-environment"

gpaw_pin="$(grep -oP '"gpaw==\K[0-9.]+' "$ROOT/pyproject.toml")"
GPAW_VERSION="${GPAW_VERSION:-$gpaw_pin}"
if [[ "$GPAW_MODE" == "build" ]]; then
    "$PYTHON" -P "$SUPPORT" --check-version "$GPAW_VERSION" >&2 || die "choose a GPAW release in the supported range"
fi

# --- 2. system libraries for the build: apt-get when allowed, else look for them -----------
can_apt() {
    [[ "${DFTSCREEN_NO_APT:-0}" != "1" ]] && command -v apt-get >/dev/null && command -v dpkg-query >/dev/null || return 1
    [[ $(id -u) -eq 0 ]] && { SUDO=""; return 0; }
    command -v sudo >/dev/null && sudo -n true 2>/dev/null && { SUDO="sudo -n"; return 0; }
    return 1
}
SITE_CONFIG=""
if [[ "$GPAW_MODE" == "build" ]]; then
    SUDO=""
    if can_apt; then
        APT_PACKAGES=(
            build-essential python3-dev python3-venv pkg-config
            libxc-dev libopenblas-dev libopenmpi-dev openmpi-bin
            libscalapack-openmpi-dev libfftw3-dev
        )
        missing=()
        for pkg in "${APT_PACKAGES[@]}"; do
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
        done
        if ((${#missing[@]})); then
            log "apt-get install ${missing[*]}"
            $SUDO apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        fi
    else
        log "no apt-get here (not root, no passwordless sudo, or not Debian): looking for the libraries GPAW needs"
    fi
    SITE_CONFIG="$(mktemp --suffix=.py)"
    trap 'rm -f "$SITE_CONFIG"' EXIT
    # Looks for each piece and writes GPAW's site config (exit 1 listing what is missing).
    bash "$ROOT/tools/find_gpaw_libs.sh" "$GPAW_VERSION" "$PYTHON" >"$SITE_CONFIG" \
        || die "install or load what is listed above, then rerun (or use a GPAW your site or conda provides: --gpaw-from-environment)"
fi

# --- 3. the virtualenv ----------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
VENV_SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
ENV_PTH="$VENV_SITE/_dftscreen_environment_gpaw.pth"
check_gpaw() { "$VENV/bin/python" -P "$SUPPORT" >&2; }

# --- 4. GPAW ---------------------------------------------------------------------------------
if [[ "$GPAW_MODE" == "environment" ]]; then
    # The folder $PYTHON imports GPAW from goes on the virtualenv's path, after its own
    # site-packages: the pinned packages installed below take precedence, GPAW (and whatever
    # the environment built it against) comes from the environment.
    env_dir="$("$PYTHON" -c 'import os, gpaw; print(os.path.dirname(os.path.dirname(os.path.abspath(gpaw.__file__))))')" \
        || die "--gpaw-from-environment: $PYTHON does not import gpaw (load your site's GPAW module or activate the conda env first)"
    if "$VENV/bin/python" -m pip show -q gpaw >/dev/null 2>&1 && [[ "$("$VENV/bin/python" -c 'import gpaw, os; print(os.path.dirname(os.path.dirname(gpaw.__file__)))')" == "$VENV_SITE" ]]; then
        log "removing the virtualenv's own GPAW (the environment's is used)"
        "${PIP[@]}" uninstall -q -y gpaw
    fi
    [[ "$env_dir" == "$VENV_SITE" ]] || echo "$env_dir" >"$ENV_PTH"
    log "GPAW from the environment: $env_dir"
    check_gpaw || die "the environment's GPAW cannot be used (above); load or install another, or drop --gpaw-from-environment to build one"
else
    rm -f "$ENV_PTH"
    # Plain `pip install gpaw` leaves ScaLAPACK and FFTW out; the site config written above,
    # named by GPAW_CONFIG at build time, turns them on. --no-cache-dir: a cached wheel built
    # without this config would otherwise be reused silently.
    if ! "$VENV/bin/python" - "$GPAW_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
assert version("gpaw") == sys.argv[1]
import gpaw.cgpaw as c  # noqa: F401  (C extension built)
assert getattr(c, "have_mpi", True)
PY
    then
        log "building gpaw==$GPAW_VERSION with MPI, ScaLAPACK and FFTW (a few minutes) with this site config:"
        sed 's/^/[setup]   /' "$SITE_CONFIG" >&2
        GPAW_CONFIG="$SITE_CONFIG" "${PIP[@]}" install -q --no-cache-dir --no-binary gpaw "gpaw==$GPAW_VERSION"
    fi
    # The build must have what it was configured with (GPAW drops a library it cannot link, silently).
    "$VENV/bin/python" -P "$SUPPORT" --require-scalapack-fftw >&2 \
        || die "GPAW $GPAW_VERSION was built without a piece it was configured with (see above); pip uninstall gpaw in $VENV and rerun"
fi

# --- 5. the project and its pinned dependencies (GPAW aside: step 4) -------------------------
stamp="$VENV/.dftscreen-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-$EXTRAS-$GPAW_MODE"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
    requirements="$(mktemp --suffix=.txt)"
    "$VENV/bin/python" - "$ROOT/pyproject.toml" "$EXTRAS" >"$requirements" <<'PY'
import sys
import tomllib

project = tomllib.load(open(sys.argv[1], "rb"))["project"]
wanted = list(project["dependencies"])
for extra in sys.argv[2].split(","):
    wanted += project["optional-dependencies"][extra]
print("\n".join(r for r in wanted if not r.replace(" ", "").startswith(("gpaw==", "gpaw>", "gpaw<"))))
PY
    log "pip install the pinned packages of pyproject.toml [$EXTRAS] and dftscreen (-e $ROOT)"
    "${PIP[@]}" install -q -r "$requirements"
    "${PIP[@]}" install -q --no-deps -e "$ROOT"
    rm -f "$requirements"
    echo "$want" >"$stamp"
fi
# The pinned packages (numpy above all) must not have broken the GPAW found or built above.
check_gpaw || die "GPAW no longer imports beside the pinned packages (above)"
log "ready: $VENV"
