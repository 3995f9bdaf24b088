"""What a GPAW rank imports: neither the ML stage (:mod:`dftscreen.ml`) nor pandas.

Every MPI rank of every DFT job imports the entry point's modules; pandas alone costs
each rank time and memory for nothing, and the ML module drags in the table side of the
package. Checked in fresh interpreters, so an import added anywhere on the way (at module
level, or inside an entry point's ``main``) fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: The modules a DFT job runs (``python -m ...``) or launches them with (``dft_pack``).
GPAW_RANK_MODULES = ("dftscreen.relax", "dftscreen.properties", "dftscreen.references", "dftscreen.dft_pack")


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if m == "pandas" or m.startswith("pandas.") or m == "dftscreen.ml"]


def _python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_gpaw_rank_modules_import_neither_ml_nor_pandas():
    check = (
        f"import {', '.join(GPAW_RANK_MODULES)}, sys; "
        "bad=[m for m in sys.modules if m=='pandas' or m.startswith('pandas.') or m=='dftscreen.ml']; print(bad)"
    )
    result = _python("-c", check)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", "a GPAW rank module pulls these in: " + result.stdout


def _imported(importtime_stderr: str) -> list[str]:
    """Module names from ``python -X importtime`` output (``import time: self | cumulative | name``)."""
    return [
        line.rsplit("|", 1)[1].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]


def test_entry_points_import_neither_ml_nor_pandas_on_their_way(tmp_path: Path):
    """The relax and properties entry points as a rank runs them, through ``main`` to a written record.

    The relaxation of a missing CIF fails after GPAW is imported (it is recorded, not raised); the
    properties job of a failed relaxation is skipped. Neither needs MPI or a GPAW calculation.
    """
    common = ["--structure-id", "x", "--settings", "{}", "--workdir", str(tmp_path / "work")]
    relax_json = tmp_path / "relax.json"
    relax = _python(
        "-X", "importtime", "-m", "dftscreen.relax", *common,
        "--cif", str(tmp_path / "missing.cif"), "--out-cif", str(tmp_path / "relaxed.cif"),
        "--out-json", str(relax_json),
    )  # fmt: skip
    assert relax.returncode == 0, relax.stderr[-3000:]
    assert json.loads(relax_json.read_text())["status"] == "failed"
    assert _forbidden(_imported(relax.stderr)) == []

    properties_json = tmp_path / "properties.json"
    properties = _python(
        "-X", "importtime", "-m", "dftscreen.properties", *common,
        "--relax-json", str(relax_json), "--out-json", str(properties_json),
    )  # fmt: skip
    assert properties.returncode == 0, properties.stderr[-3000:]
    assert json.loads(properties_json.read_text())["status"] == "skipped"
    assert _forbidden(_imported(properties.stderr)) == []
