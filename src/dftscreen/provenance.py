"""What produced a number: code versions, PAW datasets, functional and a hash of the DFT settings.

Every row of the results table and ``summary.json`` carry these (``summary.json`` also names
the PAW datasets GPAW reads, the gpaw-data package or a site's own: ``paw_datasets``), so a
figure made from them can be reproduced and a silent change of a library shows up as a
changed column. Versions are read from the installed packages' metadata
(nothing heavy is imported); the dftscreen version gets the git commit when
the code runs from a checkout.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from dftscreen import __version__
from dftscreen.columns import PACKAGE_COLUMNS, PROVENANCE_COLUMNS
from dftscreen.gpaw_support import paw_datasets

#: Presets whose numbers are not converged (CI and trying things out).
UNCONVERGED_PRESETS = ("test",)


def package_version(distribution: str) -> str | None:
    """Installed version of a distribution (e.g. ``gpaw-data``), or ``None`` when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def dftscreen_version() -> str:
    """dftscreen's version, with ``+g<commit>`` (and ``.dirty`` for uncommitted changes) in a git checkout."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return __version__
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--", "src"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" + (".dirty" if dirty else "")


def settings_hash(settings: dict[str, Any] | None) -> str | None:
    """SHA-256 (first 16 hex digits) of resolved DFT settings, key order ignored; ``None`` without settings."""
    if not settings:
        return None
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_provenance(settings: dict[str, Any] | None) -> dict[str, Any]:
    """Provenance of a run with the resolved DFT ``settings`` (for summary.json and the report)."""
    settings = settings or {}
    record: dict[str, Any] = {"dftscreen_version": dftscreen_version()}
    record.update({column: package_version(dist) for column, dist in PACKAGE_COLUMNS.items()})
    # Which PAW datasets GPAW reads: the gpaw-data package, or a site's own through GPAW_SETUP_PATH.
    datasets = paw_datasets()
    record["paw_datasets"] = f"{datasets['source']} at {datasets['path']}" if datasets["path"] else datasets["source"]
    record.update(
        xc_functional=(settings.get("gpaw") or {}).get("xc"),
        dft_preset=settings.get("preset"),
        settings_sha256=settings_hash(settings),
    )
    return record


def row_provenance(run: dict[str, Any], relax_record: dict[str, Any] | None) -> dict[str, Any]:
    """Provenance of one row: the run's, with what the structure's own DFT job recorded taking precedence.

    A row computed by an earlier run keeps the GPAW version and the settings
    (including per-structure overrides) its relaxation actually used.
    """
    row = {column: run.get(column) for column in PROVENANCE_COLUMNS}
    if relax_record:
        if relax_record.get("gpaw_version"):
            row["gpaw_version"] = relax_record["gpaw_version"]
        settings = relax_record.get("settings")
        if settings:
            row["settings_sha256"] = settings_hash(settings)
            row["xc_functional"] = (settings.get("gpaw") or {}).get("xc", row["xc_functional"])
    return row


def unconverged_warning(preset: str | None) -> str | None:
    """The loud warning of a run with a preset whose numbers are not converged, else ``None``."""
    if preset in UNCONVERGED_PRESETS:
        return (
            f"NOT CONVERGED: this run used the '{preset}' DFT preset (low cutoff, coarse k-points, loose forces). "
            "Its energies, gaps and stabilities are for testing the workflow only and must not be published "
            "or compared with other calculations. Rerun with dft.preset: standard."
        )
    return None
