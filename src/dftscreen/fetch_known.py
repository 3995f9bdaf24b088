"""``dftscreen known-phases fetch``: a known set (format (a)) from the Materials Project, on a login node.

The workflow never touches the network (compute nodes often have none). For users
with network access and an MP API key, this command asks the Materials Project for
every computed structure entry in the chemical systems of a run's inputs and all their
subsystems (``MPRester.get_entries_in_chemsys``), and writes them as a
ComputedStructureEntry JSON(.gz) that ``known_materials.database.path`` can name.

The chemical systems come from the run's check table (``<output_dir>/check/checks.json``,
the dft_ready structures) when the run has been checked, else from reading the inputs.
``mp-api`` is an optional dependency (``pip install 'dftscreen[mp]'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dftscreen.known import write_entries_json
from dftscreen.layout import ResultsLayout

API_KEY_VARIABLE = "MP_API_KEY"


class FetchError(RuntimeError):
    """The entries cannot be fetched; the message says why and what to do."""


def maximal_systems(systems: Iterable[Iterable[str]]) -> list[tuple[str, ...]]:
    """The chemical systems not contained in another one (each asked once: subsystems come with it)."""
    unique = {frozenset(s) for s in systems if s}
    kept = [s for s in unique if not any(s < other for other in unique)]
    return sorted(tuple(sorted(s)) for s in kept)


def systems_from_checks(checks: list[dict[str, Any]]) -> list[frozenset[str]]:
    """Chemical systems of the structures a check table passed on to DFT (dft_ready)."""
    from pymatgen.core import Composition

    return [
        frozenset(el.symbol for el in Composition(r["reduced_formula"]).elements)
        for r in checks if r.get("dft_ready") and r.get("reduced_formula")
    ]


def systems_from_inputs(input_config: dict[str, Any]) -> list[frozenset[str]]:
    """Chemical systems of every readable input structure (unreadable ones are skipped)."""
    from dftscreen.cif_reader import decode_cif_bytes, read_cif_text
    from dftscreen.inputs import discover_inputs

    systems = []
    for item in discover_inputs(input_config):
        try:
            raw = item.content if item.content is not None else Path(item.path).read_bytes()
            structure = read_cif_text(decode_cif_bytes(raw)[0]).structure
        except Exception:
            continue
        systems.append(frozenset(el.symbol for el in structure.composition.elements))
    return systems


def run_systems(config: dict[str, Any], run_folder: Path = Path(".")) -> list[tuple[str, ...]]:
    """The maximal chemical systems of a run (see the module docstring for where they come from).

    ``config`` is the run's config with the schema defaults filled in (:func:`dftscreen.config.read_run_config`).
    """
    from dftscreen.io import read_json

    checks = Path(ResultsLayout(str(run_folder / config["output_dir"])).checks_table)
    if checks.is_file():
        systems = systems_from_checks(read_json(checks))
    else:
        input_config = dict(config["input"])
        for key in ("cif_dir", "table"):
            if input_config[key]:
                input_config[key] = str(run_folder / input_config[key])
        systems = systems_from_inputs(input_config)
    return maximal_systems(systems)


def default_rester(api_key: str) -> Any:
    """An ``mp_api`` MPRester (imported here: an optional dependency)."""
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise FetchError(
            "dftscreen known-phases fetch needs the Materials Project client: pip install 'dftscreen[mp]' "
            "(mp-api). The workflow itself does not need it."
        ) from exc
    return MPRester(api_key)


def fetch_entries(
    systems: list[tuple[str, ...]],
    api_key: str | None,
    rester_factory: Callable[[str], Any] = default_rester,
) -> list[Any]:
    """Every MP computed structure entry in ``systems`` and their subsystems, each entry once.

    Raises:
        FetchError: no API key, the client is missing, or MP cannot be reached.
    """
    if not api_key:
        raise FetchError(
            f"no Materials Project API key: set {API_KEY_VARIABLE} or pass --api-key "
            "(get one from your Materials Project dashboard)"
        )
    if not systems:
        raise FetchError("the run has no chemical systems to ask for (no readable input structure)")
    rester = rester_factory(api_key)
    entries: dict[str, Any] = {}
    try:
        with rester as client:
            for system in systems:
                for entry in client.get_entries_in_chemsys(list(system)):
                    entries.setdefault(str(entry.entry_id), entry)
    except FetchError:
        raise
    except Exception as exc:  # requests/urllib3 connection errors, MPRestError, ...
        raise FetchError(
            f"could not fetch entries from the Materials Project ({type(exc).__name__}: {exc}); "
            "run this command on a machine with network access (e.g. a login node) and a valid API key"
        ) from exc
    return [entries[key] for key in sorted(entries)]


def fetch_known_phases(
    config: dict[str, Any],
    out: Path,
    api_key: str | None = None,
    run_folder: Path = Path("."),
    rester_factory: Callable[[str], Any] = default_rester,
) -> tuple[list[tuple[str, ...]], int]:
    """Write the MP entries of a run's chemical systems to ``out`` (format (a)); returns (systems, count)."""
    systems = run_systems(config, run_folder)
    entries = fetch_entries(systems, api_key or os.environ.get(API_KEY_VARIABLE), rester_factory)
    return systems, write_entries_json(entries, out)
