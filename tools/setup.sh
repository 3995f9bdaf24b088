#!/usr/bin/env bash
# Install everything dftscreen needs on a fresh Debian 12 (root, Python 3.11):
# Debian packages for GPAW (MPI, libxc, BLAS, ScaLAPACK, FFTW), a virtualenv in
# .venv with GPAW built from source against them, and the pinned Python
# packages from pyproject.toml. Idempotent: a second call installs nothing.
#
# Usage: bash tools/setup.sh [--with-slurm]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DFTSCREEN_VENV:-$ROOT/.venv}"
EXTRAS="test"
[[ "${1:-}" == "--with-slurm" ]] && EXTRAS="test,slurm"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- 1. Debian packages -------------------------------------------------------
APT_PACKAGES=(
    build-essential python3-dev python3-venv
    libxc-dev libopenblas-dev libopenmpi-dev openmpi-bin
    libscalapack-openmpi-dev libfftw3-dev
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. virtualenv --------------------------------------------------------------
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null; then PYTHON="$candidate"; break; fi
    done
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

# --- 3. GPAW built with MPI + ScaLAPACK + FFTW ----------------------------------
# Plain `pip install gpaw` leaves ScaLAPACK and FFTW out; a site config named by
# GPAW_CONFIG at build time turns them on (listing 'blas' because a site config
# stops GPAW adding it). --no-cache-dir: a cached wheel built without this config
# would otherwise be reused silently.
gpaw_pin="$(grep -oP '"gpaw==\K[0-9.]+' "$ROOT/pyproject.toml")"
if ! "$VENV/bin/python" - "$gpaw_pin" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
assert version("gpaw") == sys.argv[1]
import gpaw.cgpaw as c  # noqa: F401  (C extension built)
assert getattr(c, "have_mpi", True)
PY
then
    log "building gpaw==$gpaw_pin with MPI, ScaLAPACK and FFTW (about 2 minutes)"
    site_config="$(mktemp --suffix=.py)"
    cat >"$site_config" <<'CFG'
mpi = True
compiler = 'mpic++'
libraries = ['xc', 'blas', 'lapack', 'fftw3', 'scalapack-openmpi']
fftw = True
scalapack = True
CFG
    GPAW_CONFIG="$site_config" "${PIP[@]}" install -q --no-cache-dir --no-binary gpaw "gpaw==$gpaw_pin"
    rm -f "$site_config"
fi

# --- 4. the project and its pinned dependencies ---------------------------------
stamp="$VENV/.dftscreen-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-$EXTRAS"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
    log "pip install -e .[$EXTRAS]"
    "${PIP[@]}" install -q -e "$ROOT[$EXTRAS]"
    echo "$want" >"$stamp"
fi
log "ready: $VENV"
