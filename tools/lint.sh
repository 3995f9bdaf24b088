#!/usr/bin/env bash
# The linters the test command runs before pytest (each must pass):
#   ruff       Python style and errors (config: [tool.ruff] in pyproject.toml)
#   snakefmt   formatting of the Snakefile and rule files ([tool.snakefmt])
#   snakemake --lint   Snakemake's own lints, clean apart from the one that asks for a
#              conda environment or container per rule: conda channels are not
#              reachable where this is developed and GPAW needs an MPI build matched
#              to the site (README, "GPAW from conda").
# Usage: bash tools/lint.sh   (after tools/setup.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${DFTSCREEN_VENV:-$ROOT/.venv}/bin"

"$BIN/ruff" check --quiet src tests bench workflow/scripts
"$BIN/snakefmt" --check workflow 2>/dev/null || { "$BIN/snakefmt" --diff workflow >&2; exit 1; }

lint_output="$("$BIN/snakemake" --lint 2>&1)" || true
# Each lint is a line "    * <title>:"; all but the conda/container one are failures.
remaining="$(grep -E '^\s+\* ' <<<"$lint_output" | grep -v 'Specify a conda environment or container' || true)"
if [[ -n "$remaining" ]]; then
    printf '%s\n' "$lint_output" >&2
    echo "tools/lint.sh: snakemake --lint reports:" >&2
    printf '%s\n' "$remaining" >&2
    exit 1
fi
if ! grep -q 'Lints for rule\|Congratulations' <<<"$lint_output"; then
    # snakemake could not parse the workflow at all: show why.
    printf '%s\n' "$lint_output" >&2
    exit 1
fi
echo "lint: ruff, snakefmt and snakemake --lint clean"
