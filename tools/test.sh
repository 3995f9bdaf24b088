#!/usr/bin/env bash
# Quickstart 2: install what is missing, run the linters (tools/lint.sh), then the
# whole test suite (tests/unit, real GPAW runs under MPI in tests/dft, and the
# Snakemake workflow locally and on a one-node SLURM in tests/workflow), in two sets
# (below). `bash tools/test.sh ARGS` runs one pytest with ARGS instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# --with-slurm: tests/workflow/test_slurm*.py run the workflow through the SLURM plugin.
bash tools/setup.sh --with-slurm
# Headless Chromium opens the HTML report in tests/unit/test_report.py (only the tests need it).
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi
if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
bash tools/lint.sh
# Two workers, a whole test module each (tests/conftest.py hands out the slowest first): one
# worker's waits (SLURM's time limit, sacct polls, Python start-up) overlap the other's GPAW.
PYTEST=(.venv/bin/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder)
if (($#)); then
    # Options given: one pytest run with them (the default set unless they choose with -m).
    exec "${PYTEST[@]}" "$@"
fi
# Without options, both sets, each with its own time in pytest's last line:
# 1. the default set, what a plain `pytest` runs (pyproject.toml: -m "not e2e"): the library,
#    the GPAW physics under MPI, Snakemake's dry runs and the MPI launcher;
# 2. the real workflow runs end to end (marker e2e): locally, on the one-node SLURM, and the
#    cluster installs. The second runs even when the first failed, so CI shows every failure.
status=0
echo "[test] 1/2 the default set (-m 'not e2e')" >&2
"${PYTEST[@]}" || status=$?
echo "[test] 2/2 the real workflow runs end to end (-m e2e)" >&2
"${PYTEST[@]}" -m e2e || status=$((status ? status : $?))
exit "$status"
