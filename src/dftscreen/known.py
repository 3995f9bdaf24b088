"""Known materials: the crystals a generated structure is compared with, read once per run.

A known set is what a student has at hand, in one of three formats (chosen by the path):

(a) ``*.json`` / ``*.json.gz``: pymatgen ``ComputedStructureEntry`` objects as dicts, what
    ``mp-api`` returns (``[e.as_dict() for e in entries]``) and ``dftscreen known-phases
    fetch`` writes. Accepted layouts: a list of entry dicts, ``{"entries": [...]}``, or a
    pandas ``DataFrame.to_json()`` with an ``entry`` column of entry dicts (the layout of
    Matbench Discovery's MP snapshot, ``2023-02-07-mp-computed-structure-entries.json.gz``).
    The energy per atom is the entry's corrected energy (``energy`` plus its corrections),
    as the source's own hull uses it.
(b) ``*.csv`` / ``*.parquet``: a structures table with a CIF-text column and an id column,
    optional energy per atom (eV/atom), energy above hull (eV/atom) and formula columns
    (e.g. a generative model's training or fine-tune set). Without a formula column every
    CIF is read at load time.
(c) a folder of ``*.cif`` files (ids are the file names without ``.cif``; no energies).

Structures are built lazily: an entry keeps its raw dict or CIF text and its reduced formula,
so a set of 100,000+ entries costs only the structures whose formulas a run asks about.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymatgen.core import Composition, Structure

log = logging.getLogger(__name__)

#: Defaults of the table-format columns (schema: known_materials.<set>.*_column).
DEFAULT_CIF_COLUMN = "cif"
DEFAULT_ID_COLUMN = "material_id"


class KnownSetError(ValueError):
    """A known-materials source cannot be read; the message names the file and the problem."""


@dataclass
class KnownEntry:
    """One known crystal.

    ``energy_per_atom_eV`` is the source's own energy (eV/atom, e.g. MP's corrected GGA/GGA+U
    energy); it only ranks phases of the source against each other and never meets a GPAW
    energy. ``e_above_hull_eV_per_atom`` is the source's own value when it gives one.
    The structure comes from ``raw_structure`` (a pymatgen dict), ``packed_structure`` (that
    dict as zlib-compressed JSON, from :mod:`dftscreen.known_index`), CIF text or a CIF file;
    ``volume_per_atom_A3`` (Å³ per atom) is known without building it when an index gave it.
    """

    entry_id: str
    reduced_formula: str
    elements: frozenset[str]
    n_sites: int | None = None
    energy_per_atom_eV: float | None = None
    e_above_hull_eV_per_atom: float | None = None
    raw_structure: dict[str, Any] | None = field(default=None, repr=False)
    cif_text: str | None = field(default=None, repr=False)
    cif_path: Path | None = None
    volume_per_atom_A3: float | None = None
    packed_structure: bytes | None = field(default=None, repr=False)
    _structure: Structure | None = field(default=None, repr=False)

    @property
    def composition(self) -> Composition:
        return Composition(self.reduced_formula)

    def structure(self) -> Structure:
        """The crystal (built on first use, then kept).

        Raises:
            KnownSetError: the stored structure cannot be built.
        """
        if self._structure is None:
            try:
                if self.raw_structure is not None:
                    self._structure = Structure.from_dict(self.raw_structure)
                elif self.packed_structure is not None:
                    self._structure = Structure.from_dict(json.loads(zlib.decompress(self.packed_structure)))
                elif self.cif_text is not None:
                    from dftscreen.cif_reader import read_cif_text

                    self._structure = read_cif_text(self.cif_text).structure
                elif self.cif_path is not None:
                    from dftscreen.cif_reader import read_structure

                    self._structure, _ = read_structure(self.cif_path)
                else:
                    raise KnownSetError(f"known entry {self.entry_id} has no structure")
            except KnownSetError:
                raise
            except Exception as exc:
                raise KnownSetError(f"known entry {self.entry_id}: structure cannot be built: {exc}") from exc
            if self.n_sites is None:
                self.n_sites = len(self._structure)
        return self._structure


@dataclass
class KnownSet:
    """A set of known crystals indexed by reduced formula; ``label`` says where it came from.

    ``index`` is the :class:`dftscreen.known_index.KnownIndex` it was read through, if any
    (novelty matching keeps its reduced cells there).
    """

    label: str
    entries: list[KnownEntry]
    by_formula: dict[str, list[KnownEntry]] = field(default_factory=dict)
    index: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _make_ids_unique(self.entries, self.label)
        if not self.by_formula:
            for entry in self.entries:
                self.by_formula.setdefault(entry.reduced_formula, []).append(entry)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def has_energies(self) -> bool:
        return any(e.energy_per_atom_eV is not None for e in self.entries)

    def within(self, elements: Iterable[str]) -> list[KnownEntry]:
        """Entries whose elements all belong to ``elements`` (a chemical system and its subsystems)."""
        system = frozenset(elements)
        return [e for e in self.entries if e.elements <= system]


def _make_ids_unique(entries: list[KnownEntry], label: str) -> None:
    """Rename repeated entry ids in place (``mp-1``, ``mp-1#2``, ...), in file order, with a warning.

    Everything downstream (hull distances, the structure written for a chosen phase,
    ``matches_known_id``) is keyed by id: two entries sharing one would take each other's.
    """
    seen: dict[str, int] = {}
    renamed = 0
    for entry in entries:
        count = seen.get(entry.entry_id, 0) + 1
        seen[entry.entry_id] = count
        if count > 1:
            entry.entry_id = f"{entry.entry_id}#{count}"
            renamed += 1
    if renamed:
        log.warning("known set %s: %d entries repeat an earlier entry's id; renamed <id>#2, <id>#3, ...",
                    label, renamed)


def _formula_parts(composition: Composition) -> tuple[str, frozenset[str]]:
    return composition.reduced_formula, frozenset(el.symbol for el in composition.elements)


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def entry_from_dict(item: dict[str, Any], position: int, source: str) -> KnownEntry:
    """A :class:`KnownEntry` from one ``ComputedStructureEntry`` dict, without building its structure.

    Raises:
        KnownSetError: a required field (``structure``, ``composition``, ``energy``) is missing.
    """
    if not isinstance(item, dict) or "structure" not in item:
        raise KnownSetError(f"{source}: item {position} is not a ComputedStructureEntry dict (no 'structure')")
    data = item.get("data") or {}
    entry_id = item.get("entry_id") or data.get("material_id") or f"{Path(source).name}#{position}"
    try:
        composition = Composition(item["composition"]) if "composition" in item else None
        if composition is None:
            composition = Composition(
                {site_species["element"]: site_species["occu"]
                 for site in item["structure"]["sites"] for site_species in site["species"]}
            )
    except Exception as exc:
        raise KnownSetError(f"{source}: entry {entry_id} has no readable composition: {exc}") from exc
    formula, elements = _formula_parts(composition)
    n_atoms = composition.num_atoms
    energy = _finite_or_none(item.get("energy"))
    if energy is not None:
        # ComputedEntry.energy = uncorrected energy + corrections (MP2020 etc.).
        if "correction" in item and item["correction"] is not None:
            energy += float(item["correction"])
        else:
            energy += sum(float(a.get("value", 0.0)) for a in item.get("energy_adjustments") or [])
    return KnownEntry(
        entry_id=str(entry_id),
        reduced_formula=formula,
        elements=elements,
        n_sites=len(item["structure"].get("sites", [])) or None,
        energy_per_atom_eV=None if energy is None else energy / n_atoms,
        e_above_hull_eV_per_atom=_finite_or_none(data.get("e_above_hull") if "e_above_hull" in data
                                                 else data.get("energy_above_hull")),
        raw_structure=item["structure"],
    )


def _entry_dicts(document: Any, source: str) -> list[dict[str, Any]]:
    """The entry dicts of a JSON document in any accepted layout (see the module docstring)."""
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        if isinstance(document.get("entries"), list):
            return document["entries"]
        if isinstance(document.get("entry"), dict):  # pandas DataFrame.to_json(), column "entry"
            return list(document["entry"].values())
    raise KnownSetError(
        f"{source}: expected a list of ComputedStructureEntry dicts, {{'entries': [...]}} or a "
        "DataFrame JSON with an 'entry' column"
    )


def read_entries_json(path: str | Path) -> KnownSet:
    """Format (a): ComputedStructureEntry dicts from ``*.json`` or ``*.json.gz``."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError, EOFError) as exc:
        raise KnownSetError(f"{path}: not readable as JSON: {exc}") from exc
    entries = [entry_from_dict(item, n, str(path)) for n, item in enumerate(_entry_dicts(document, str(path)))]
    return KnownSet(f"{path.name} ({len(entries)} ComputedStructureEntry objects)", entries)


def read_structures_table(
    path: str | Path,
    cif_column: str = DEFAULT_CIF_COLUMN,
    id_column: str | None = DEFAULT_ID_COLUMN,
    formula_column: str | None = None,
    energy_per_atom_column: str | None = None,
    e_above_hull_column: str | None = None,
) -> KnownSet:
    """Format (b): a CSV/Parquet table with CIF text per row (energies in eV/atom).

    Raises:
        KnownSetError: the table or a named column is missing, or a CIF cannot be read when
            no formula column says its formula.
    """
    from dftscreen.cif_reader import read_cif_text
    from dftscreen.inputs import read_table

    path = Path(path)
    try:
        frame = read_table(path)
    except (FileNotFoundError, ValueError) as exc:
        raise KnownSetError(str(exc).replace("input.table", "known set")) from exc
    named = {"cif_column": cif_column, "id_column": id_column, "formula_column": formula_column,
             "energy_per_atom_column": energy_per_atom_column, "e_above_hull_column": e_above_hull_column}
    for role, column in named.items():
        if column is not None and column not in frame.columns:
            raise KnownSetError(
                f"{path.name}: {role} '{column}' is not a column; columns: {', '.join(map(str, frame.columns))}"
            )
    entries = []
    for n, row in enumerate(frame.to_dict(orient="records")):
        entry_id = str(row[id_column]) if id_column is not None and row.get(id_column) is not None else f"row{n}"
        cif_text = row[cif_column]
        if not isinstance(cif_text, str) or not cif_text.strip():
            raise KnownSetError(f"{path.name}: row {n} ({entry_id}) has no CIF text in '{cif_column}'")
        structure = None
        if formula_column is not None and row.get(formula_column):
            composition = Composition(str(row[formula_column]))
        else:
            try:
                structure = read_cif_text(cif_text).structure
            except Exception as exc:
                raise KnownSetError(f"{path.name}: row {n} ({entry_id}): CIF cannot be read: {exc}") from exc
            composition = structure.composition
        formula, elements = _formula_parts(composition)
        entries.append(KnownEntry(
            entry_id=entry_id, reduced_formula=formula, elements=elements,
            n_sites=None if structure is None else len(structure),
            energy_per_atom_eV=_finite_or_none(row.get(energy_per_atom_column)) if energy_per_atom_column else None,
            e_above_hull_eV_per_atom=_finite_or_none(row.get(e_above_hull_column)) if e_above_hull_column else None,
            cif_text=cif_text, _structure=structure,
        ))
    return KnownSet(f"{path.name} ({len(entries)} structures)", entries)


def read_cif_folder(path: str | Path) -> KnownSet:
    """Format (c): every ``*.cif`` under a folder (recursively); no energies.

    Raises:
        KnownSetError: the folder is missing or a CIF cannot be read.
    """
    from dftscreen.cif_reader import read_structure
    from dftscreen.inputs import discover_cifs

    try:
        items = discover_cifs(path)
    except FileNotFoundError as exc:
        raise KnownSetError(f"known set folder '{path}' is not an existing folder") from exc
    entries = []
    for item in items:
        try:
            structure, _ = read_structure(item.path)
        except Exception as exc:
            raise KnownSetError(f"{item.path}: CIF cannot be read: {exc}") from exc
        formula, elements = _formula_parts(structure.composition)
        entries.append(KnownEntry(
            entry_id=item.structure_id, reduced_formula=formula, elements=elements, n_sites=len(structure),
            cif_path=item.path, _structure=structure,
        ))
    return KnownSet(f"{Path(path).name}/ ({len(entries)} CIF files)", entries)


def write_entries_json(entries: Iterable[Any], path: str | Path) -> int:
    """Write pymatgen ``ComputedStructureEntry`` objects (or their dicts) as format (a), atomically.

    Gzip-compressed when ``path`` ends in ``.gz``. Returns the number written.
    """
    from dftscreen.io import atomic_write_with

    dicts = [e if isinstance(e, dict) else e.as_dict() for e in entries]
    text = json.dumps(dicts, default=_json_default)
    path = Path(path)
    if path.name.endswith(".gz"):
        atomic_write_with(path, lambda tmp: tmp.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0)))
    else:
        atomic_write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return len(dicts)


def _json_default(value: Any) -> Any:
    from monty.json import jsanitize

    return jsanitize(value, strict=True)
