"""The reference library: elemental and known-phase relaxations reused across runs.

A later run in the same chemical systems, with the same DFT settings, finds its
references already computed and runs no element or phase job: results are stored
under ``<library>/<settings key>/`` (layout in :class:`dftscreen.layout.ReferenceLibrary`),
where the settings key hashes the run's resolved DFT settings, an element's folder is
keyed by the structure standing for it, and a phase's by its formula and structure
fingerprint. The library folder is ``stability.reference_library_dir`` (default
``<output_dir>/reference_library``); point several runs' configs at one folder to share
it (one run at a time: two runs computing the same missing reference would both write it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from dftscreen.io import atomic_write_text

#: Hex digits of the settings hash in the folder name.
SETTINGS_KEY_LENGTH = 16


def settings_key(settings: dict[str, Any]) -> str:
    """A stable hash of resolved DFT settings (same settings, same key; any change, a new key)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:SETTINGS_KEY_LENGTH]


def element_reference_key(cif: str | Path | None) -> str:
    """Which structure stands for an element: ``auto`` (the workflow's choice) or ``cif-<hash>`` of a user CIF."""
    if cif is None:
        return "auto"
    return "cif-" + hashlib.sha256(Path(cif).read_bytes()).hexdigest()[:12]


def write_if_changed(path: str | Path, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds it (keeps its time: no Snakemake rerun)."""
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    atomic_write_text(path, text)
    return True


def write_settings_note(folder: str | Path, settings: dict[str, Any]) -> None:
    """Keep the settings a key stands for beside the results (``settings.json``), for people reading the library."""
    write_if_changed(Path(folder) / "settings.json", json.dumps(settings, sort_keys=True, indent=1) + "\n")


def phases_to_relax(chosen: dict[str, Any], element_keys: Callable[[str], list[str]], with_elements: bool) -> list[str]:
    """Keys of the known phases compare_known chose (``known/competing_phases.json``) that get a job.

    An elemental phase with the very structure of one of its element's candidates (same
    fingerprint, the end of both keys; ``element_keys(element)``) is computed once, as the
    element, when elemental references are on.
    """
    return [
        phase["phase_key"]
        for phase in chosen.get("phases", [])
        if not (
            with_elements
            and "-" not in phase["chemical_system"]
            and any(
                key.endswith(phase["phase_key"].rsplit("-", 1)[1]) for key in element_keys(phase["chemical_system"])
            )
        )
    ]
