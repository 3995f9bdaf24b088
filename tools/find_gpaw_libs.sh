#!/usr/bin/env bash
# Look for what GPAW's build needs and print GPAW's site config (a siteconfig.py, for
# GPAW_CONFIG) on stdout; tools/setup.sh calls it. Nothing is installed. Each missing piece is
# named on stderr with what provides it, and the exit status is 1.
#
# Searched: $MPICC/$MPICXX and mpicc/mpicxx on PATH; pkg-config; $CONDA_PREFIX; EasyBuild's
# $EBROOT<NAME> (what `module load` sets on most clusters); $MKLROOT; $LIBRARY_PATH,
# $LD_LIBRARY_PATH, $CPATH; and the compiler's own search path.
#
# Usage: bash tools/find_gpaw_libs.sh GPAW_VERSION PYTHON
set -uo pipefail
GPAW_VERSION="${1:?GPAW version}"
PYTHON="${2:?python}"
say() { printf '[setup] %s\n' "$*" >&2; }
missing=0
need() {  # need WHAT MODULE CONDA
    say "MISSING: $1"
    say "    module: load your site's $2 module (names differ between sites: \`module avail\`, \`module spider $3\`)"
    say "    conda:  conda install -c conda-forge $4"
    missing=1
}

# --- the MPI compiler wrapper: C++ from GPAW 26 on (25.x is C) ----------------------------
major="${GPAW_VERSION%%.*}"
if ((major >= 26)); then wrappers=("${MPICXX:-}" mpicxx mpic++ mpiCC); lang="C++"; else wrappers=("${MPICC:-}" mpicc); lang="C"; fi
compiler=""
for w in "${wrappers[@]}"; do
    [[ -n "$w" ]] && command -v "$w" >/dev/null && { compiler="$w"; break; }
done
if [[ -z "$compiler" ]]; then
    need "an MPI $lang compiler wrapper (${wrappers[*]:1}), of the MPI your srun launches" \
        "MPI (OpenMPI, MPICH or Intel MPI, with its compiler toolchain, e.g. foss or gompi)" "openmpi" \
        "openmpi (or mpich) cxx-compiler c-compiler"
    compiler="${wrappers[1]}"
fi
mpi_flavour="openmpi"
if command -v "$compiler" >/dev/null && ! "$compiler" -showme:version >/dev/null 2>&1; then mpi_flavour="mpich"; fi

# --- Python's headers -------------------------------------------------------------------------
if ! "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    need "Python.h, the headers of $PYTHON" "Python (a module's Python has them; the system one needs python3-devel)" \
        "python" "python=3.11"
fi

# --- where libraries and headers may be -------------------------------------------------------
lib_dirs=()
add_dirs() { local IFS=:; for d in $1; do [[ -n "$d" && -d "$d" ]] && lib_dirs+=("$d"); done; }
for var in $(compgen -v EBROOT); do add_dirs "${!var}/lib:${!var}/lib64"; done
[[ -n "${CONDA_PREFIX:-}" ]] && add_dirs "$CONDA_PREFIX/lib"
[[ -n "${MKLROOT:-}" ]] && add_dirs "$MKLROOT/lib/intel64:$MKLROOT/lib"
add_dirs "${LIBRARY_PATH:-}"
add_dirs "${LD_LIBRARY_PATH:-}"
if command -v pkg-config >/dev/null; then
    for pc in libxc fftw3 openblas flexiblas scalapack scalapack-openmpi scalapack-mpich blas lapack; do
        add_dirs "$(pkg-config --variable=libdir "$pc" 2>/dev/null)"
    done
fi
default_dirs=()
if command -v "$compiler" >/dev/null; then
    search="$("$compiler" -print-search-dirs 2>/dev/null | sed -n 's/^libraries: =//p')"
    { local_ifs="$IFS"; IFS=:; for d in $search; do [[ -d "$d" ]] && default_dirs+=("$(cd "$d" && pwd)"); done; IFS="$local_ifs"; }
fi
# The system's own folders (FIND_GPAW_LIBS_SYSTEM_DIRS replaces them: tests/unit/test_find_gpaw_libs.py).
read -r -a system_dirs <<<"${FIND_GPAW_LIBS_SYSTEM_DIRS-/usr/lib64 /usr/lib /usr/lib/x86_64-linux-gnu /usr/local/lib /usr/local/lib64}"
default_dirs+=("${system_dirs[@]}")

# find_lib NAME: the first folder holding libNAME.so (or .a), printed; status 1 when none.
find_lib() {
    local d
    for d in "${lib_dirs[@]}" "${default_dirs[@]}"; do
        if [[ -e "$d/lib$1.so" || -e "$d/lib$1.a" ]]; then echo "$d"; return 0; fi
    done
    return 1
}
libraries=()
extra_dirs=()
use() {  # use NAME DIR: link -lNAME, adding DIR to the search (and run) path when not a default one
    libraries+=("$1")
    local d
    for d in "${default_dirs[@]}"; do [[ "$d" == "$2" ]] && return; done
    for d in "${extra_dirs[@]}"; do [[ "$d" == "$2" ]] && return; done
    extra_dirs+=("$2")
}
header_found() {  # header_found FILE DIR_OF_ITS_LIBRARY
    local d
    local paths="${CPATH:-}:${C_INCLUDE_PATH:-}:${CPLUS_INCLUDE_PATH:-}"
    for d in "$(dirname "$2")/include" "$2/../include" ${paths//:/ } /usr/include /usr/local/include \
        ${CONDA_PREFIX:+$CONDA_PREFIX/include}; do
        [[ -e "$d/$1" ]] && return 0
    done
    command -v pkg-config >/dev/null && for d in $(pkg-config --cflags-only-I libxc fftw3 2>/dev/null | sed 's/-I//g'); do
        [[ -e "$d/$1" ]] && return 0
    done
    return 1
}

# libxc
if dir="$(find_lib xc)" && header_found xc.h "$dir"; then use xc "$dir"
else need "libxc (libxc.so and xc.h)" "libxc" "libxc" "libxc-c (or libxc)"; fi

# BLAS and LAPACK: OpenBLAS, FlexiBLAS, MKL, or a plain libblas + liblapack
blas=""
for name in openblas flexiblas mkl_rt; do
    if dir="$(find_lib "$name")"; then use "$name" "$dir"; blas="$name"; break; fi
done
if [[ -z "$blas" ]]; then
    if dir="$(find_lib blas)" && dir2="$(find_lib lapack)"; then use blas "$dir"; use lapack "$dir2"; blas="blas"
    else need "BLAS and LAPACK (libopenblas.so, libflexiblas.so, MKL's libmkl_rt.so, or libblas.so with liblapack.so)" \
        "OpenBLAS, FlexiBLAS or imkl" "openblas" "openblas"; fi
fi

# FFTW 3
if dir="$(find_lib fftw3)" && header_found fftw3.h "$dir"; then use fftw3 "$dir"
else need "FFTW 3 (libfftw3.so and fftw3.h)" "FFTW" "fftw" "fftw"; fi

# ScaLAPACK, built for the same MPI (Debian names it after the MPI; MKL brings its own)
scalapack=""
for name in "scalapack-$mpi_flavour" scalapack; do
    if dir="$(find_lib "$name")"; then use "$name" "$dir"; scalapack="$name"; break; fi
done
if [[ -z "$scalapack" && "$blas" == "mkl_rt" ]] && dir="$(find_lib mkl_scalapack_lp64)"; then
    blacs="mkl_blacs_openmpi_lp64"; [[ "$mpi_flavour" == "mpich" ]] && blacs="mkl_blacs_intelmpi_lp64"
    use mkl_scalapack_lp64 "$dir"; use "$blacs" "$dir"; scalapack="mkl"
fi
[[ -n "$scalapack" ]] || need "ScaLAPACK built for your MPI ($mpi_flavour): libscalapack.so (Debian: libscalapack-$mpi_flavour.so)" \
    "ScaLAPACK (often part of a foss toolchain) or imkl" "scalapack" "scalapack"

((missing)) && exit 1

# GPAW's site config: listing BLAS because a site config stops GPAW adding it itself.
py_list() { local out="" x; for x in "$@"; do out+="'$x', "; done; echo "[${out%, }]"; }
include_dirs=()
for d in "${extra_dirs[@]}"; do [[ -d "$d/../include" ]] && include_dirs+=("$(cd "$d/../include" && pwd)"); done
cat <<CFG
mpi = True
compiler = '$compiler'
libraries = $(py_list "${libraries[@]}")
library_dirs = $(py_list "${extra_dirs[@]}")
runtime_library_dirs = $(py_list "${extra_dirs[@]}")
include_dirs = $(py_list "${include_dirs[@]}")
fftw = True
scalapack = True
CFG
