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

An entry that cannot be read (a JSON item without a structure or composition, a table row
without CIF text or with a CIF or formula that cannot be read, a CIF file that cannot be
read) is skipped: the set's label counts the skipped entries and :attr:`KnownSet.skipped_note`
names the first ones; only a set with no readable entry is refused (:class:`KnownSetError`).
:func:`check_known_sets` checks every set's path, format and columns at start-up, cheaply
(no entry is read), in one sentence.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymatgen.core import Composition, Structure

from dftscreen.guards import ConfigError

log = logging.getLogger(__name__)

#: Defaults of the table-format columns (schema: known_materials.<set>.*_column).
DEFAULT_CIF_COLUMN = "cif"
DEFAULT_ID_COLUMN = "material_id"
#: How many ids of skipped (unreadable) entries a note names.
SKIPPED_IDS_SHOWN = 5
#: Config keys of the table format's columns, in the order they are checked.
TABLE_COLUMN_KEYS = ("cif_column", "id_column", "formula_column", "energy_per_atom_column", "e_above_hull_column")
#: Column names (lower case, non-letters as ``_``) that look like an energy, in the order they are
#: preferred, with the config key that names such a column and what it looks like: a start-up
#: check refuses a database table that has one while no energy column is configured.
_UNIT = r"(_per_?atom)?(_ev(_per)?(_?atom)?)?"
ENERGY_COLUMN_PATTERNS = (
    (r"((un)?corrected_)?(energy|e)_?per_?atom(_ev)?", "energy_per_atom_column", "an energy per atom"),
    (r"(formation_?(energy|enthalpy)|e_?formation|delta_?h_?f)" + _UNIT, "energy_per_atom_column",
     "a formation energy per atom"),
    (r"((energy|e)_?above_?hull|e_?hull|hull_?distance)" + _UNIT, "e_above_hull_column", "an energy above hull"),
)
#: A known set's format by file-name ending (a folder of CIFs is ``"folder"``).
FORMAT_SUFFIXES = {"json": (".json", ".json.gz"), "table": (".csv", ".parquet", ".pq")}


class KnownSetError(ValueError):
    """A known-materials source cannot be read; the message names the file and the problem."""


def one_line(text: object, limit: int = 240) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters with an ellipsis."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."


@dataclass
class SkippedEntries:
    """The entries of a known set that could not be read: how many, the first ids and the first reason."""

    count: int = 0
    ids: list[str] = field(default_factory=list)
    first_reason: str | None = None

    def add(self, entry_id: str, reason: object) -> None:
        """Count one unreadable entry (its id kept among the first :data:`SKIPPED_IDS_SHOWN`)."""
        self.count += 1
        if len(self.ids) < SKIPPED_IDS_SHOWN:
            self.ids.append(str(entry_id))
        if self.first_reason is None:
            self.first_reason = one_line(reason)

    def first_ids(self) -> str:
        """The first skipped ids, comma-separated, with ", ..." when there are more."""
        return ", ".join(self.ids) + (", ..." if self.count > len(self.ids) else "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what :mod:`dftscreen.known_index` keeps in an index's header)."""
        return {"count": self.count, "ids": list(self.ids), "first_reason": self.first_reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SkippedEntries:
        """The record :meth:`to_dict` wrote (none skipped for ``None``, an index from before skipping)."""
        if not data:
            return cls()
        return cls(int(data["count"]), [str(i) for i in data["ids"]], data.get("first_reason"))


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
    skipped: SkippedEntries = field(default_factory=SkippedEntries)

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

    @property
    def skipped_note(self) -> str | None:
        """One sentence on the unreadable entries left out (count, first ids, first reason), or None."""
        skipped = self.skipped
        if not skipped.count:
            return None
        noun = "entry" if skipped.count == 1 else "entries"
        return (f"known set {self.label}: {skipped.count} unreadable {noun} skipped ({skipped.first_ids()}); "
                f"first reason: {skipped.first_reason}")

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


def _readable_set(name: str, kind: str, source: str, entries: list[KnownEntry], skipped: SkippedEntries) -> KnownSet:
    """The known set of the readable ``entries``, labelled ``<name> (<count> <kind>)``, skipped ones counted too.

    Raises:
        KnownSetError: no entry is readable (or the source has none).
    """
    if not entries:
        if skipped.count:
            which = ("its one entry cannot be read" if skipped.count == 1
                     else f"none of its {skipped.count} entries can be read")
            raise KnownSetError(
                f"known set {source} cannot be used: {which} (first: {skipped.first_ids()}; "
                f"{skipped.first_reason})"
            )
        raise KnownSetError(f"known set {source} has no entries")
    unreadable = f", {skipped.count} unreadable skipped" if skipped.count else ""
    return KnownSet(f"{name} ({len(entries)} {kind}{unreadable})", entries, skipped=skipped)


def read_entries_json(path: str | Path) -> KnownSet:
    """Format (a): ComputedStructureEntry dicts from ``*.json`` or ``*.json.gz``; unreadable items are skipped.

    Raises:
        KnownSetError: the file is not JSON of an accepted layout, or no item is readable.
    """
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError, EOFError) as exc:
        raise KnownSetError(f"{path}: not readable as JSON: {one_line(exc)}") from exc
    entries, skipped = [], SkippedEntries()
    for n, item in enumerate(_entry_dicts(document, str(path))):
        try:
            entries.append(entry_from_dict(item, n, str(path)))
        except Exception as exc:  # one malformed item must not cost the set its other entries
            skipped.add(_item_id(item, n, path), exc)
    return _readable_set(path.name, "ComputedStructureEntry objects", str(path), entries, skipped)


def _item_id(item: Any, position: int, path: Path) -> str:
    """The id of a JSON item for a note (its ``entry_id`` or ``material_id``, else ``<file>#<position>``)."""
    if isinstance(item, dict):
        data = item.get("data") if isinstance(item.get("data"), dict) else {}
        found = item.get("entry_id") or data.get("material_id")
        if found:
            return str(found)
    return f"{path.name}#{position}"


def read_structures_table(
    path: str | Path,
    cif_column: str = DEFAULT_CIF_COLUMN,
    id_column: str | None = DEFAULT_ID_COLUMN,
    formula_column: str | None = None,
    energy_per_atom_column: str | None = None,
    e_above_hull_column: str | None = None,
) -> KnownSet:
    """Format (b): a CSV/Parquet table with CIF text per row (energies in eV/atom).

    A row without CIF text, with a formula or (without a formula column) a CIF that cannot
    be read is skipped.

    Raises:
        KnownSetError: the table or a named column is missing, or no row is readable.
    """
    from dftscreen.inputs import read_table

    path = Path(path)
    try:
        frame = read_table(path)
    except (FileNotFoundError, ValueError) as exc:
        raise KnownSetError(str(exc).replace("input.table", "known set")) from exc
    except Exception as exc:  # a damaged Parquet file, a CSV pandas cannot parse
        raise KnownSetError(f"known set {path}: not readable as a table: {one_line(exc)}") from exc
    columns = {"cif_column": cif_column, "id_column": id_column, "formula_column": formula_column,
               "energy_per_atom_column": energy_per_atom_column, "e_above_hull_column": e_above_hull_column}
    for role, column in columns.items():
        if column is not None and column not in frame.columns:
            raise KnownSetError(
                f"{path.name}: {role} '{column}' is not a column; columns: {', '.join(map(str, frame.columns))}"
            )
    entries, skipped = [], SkippedEntries()
    for n, row in enumerate(frame.to_dict(orient="records")):
        entry_id = str(row[id_column]) if id_column is not None and row.get(id_column) is not None else f"row{n}"
        try:
            entries.append(_table_entry(row, entry_id, columns))
        except Exception as exc:  # one broken row must not cost the set its other rows
            skipped.add(entry_id, f"row {n} ({entry_id}): {exc}")
    return _readable_set(path.name, "structures", str(path), entries, skipped)


def _table_entry(row: dict[str, Any], entry_id: str, columns: dict[str, str | None]) -> KnownEntry:
    """The :class:`KnownEntry` of one table row; its CIF is read only without a formula in the row.

    Raises:
        KnownSetError: the row has no CIF text, or its CIF cannot be read.
        ValueError: its formula cannot be read.
    """
    from dftscreen.cif_reader import read_cif_text

    cif_column, formula_column = columns["cif_column"], columns["formula_column"]
    cif_text = row[cif_column]
    if not isinstance(cif_text, str) or not cif_text.strip():
        raise KnownSetError(f"no CIF text in '{cif_column}'")
    structure = None
    if formula_column is not None and isinstance(row.get(formula_column), str) and row[formula_column].strip():
        composition = Composition(row[formula_column])
    else:
        try:
            structure = read_cif_text(cif_text).structure
        except Exception as exc:
            raise KnownSetError(f"CIF cannot be read: {exc}") from exc
        composition = structure.composition
    formula, elements = _formula_parts(composition)
    energy_column, hull_column = columns["energy_per_atom_column"], columns["e_above_hull_column"]
    return KnownEntry(
        entry_id=entry_id, reduced_formula=formula, elements=elements,
        n_sites=None if structure is None else len(structure),
        energy_per_atom_eV=_finite_or_none(row.get(energy_column)) if energy_column else None,
        e_above_hull_eV_per_atom=_finite_or_none(row.get(hull_column)) if hull_column else None,
        cif_text=cif_text, _structure=structure,
    )


def read_cif_folder(path: str | Path) -> KnownSet:
    """Format (c): every ``*.cif`` under a folder (recursively); no energies. Unreadable CIFs are skipped.

    Raises:
        KnownSetError: the folder is missing, or holds no readable CIF.
    """
    from dftscreen.cif_reader import read_structure
    from dftscreen.inputs import discover_cifs

    try:
        items = discover_cifs(path)
    except FileNotFoundError as exc:
        raise KnownSetError(f"known set folder '{path}' is not an existing folder") from exc
    entries, skipped = [], SkippedEntries()
    for item in items:
        try:
            structure, _ = read_structure(item.path)
            formula, elements = _formula_parts(structure.composition)
        except Exception as exc:  # one broken file must not cost the set its other files
            skipped.add(item.structure_id, f"{item.path.name}: CIF cannot be read: {exc}")
            continue
        entries.append(KnownEntry(
            entry_id=item.structure_id, reduced_formula=formula, elements=elements, n_sites=len(structure),
            cif_path=item.path, _structure=structure,
        ))
    return _readable_set(f"{Path(path).name}/", "CIF files", f"folder {path}", entries, skipped)


def table_options(section: dict[str, Any]) -> dict[str, str | None]:
    """The table format's column names of a config section ``known_materials.<set>`` (keys: :data:`TABLE_COLUMN_KEYS`).

    ``cif_column`` falls back to :data:`DEFAULT_CIF_COLUMN`; the others are None when absent
    (the schema fills ``id_column`` with :data:`DEFAULT_ID_COLUMN`).
    """
    options = {key: section.get(key) for key in TABLE_COLUMN_KEYS}
    options["cif_column"] = options["cif_column"] or DEFAULT_CIF_COLUMN
    return options


def known_set_format(path: str | Path) -> str | None:
    """``"folder"``, ``"json"`` or ``"table"``: what ``path`` is and how its name ends; None for anything else."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    name = path.name.lower()
    return next((kind for kind, suffixes in FORMAT_SUFFIXES.items() if name.endswith(suffixes)), None)


def known_set_files(section: dict[str, Any]) -> list[str]:
    """A known set's file, or its folder's CIFs sorted; none without a path (what a comparison depends on).

    A CIF whose path Snakemake cannot take as an input (``<unk>``, ``{x}``:
    :func:`dftscreen.inputs.snakemake_unsafe`) is left out of the list: the job still reads it
    with the folder, but editing it alone does not rerun the comparison.
    """
    from dftscreen.inputs import discover_cifs, snakemake_unsafe

    path = section.get("path")
    if path and Path(path).is_dir():
        return sorted(str(item.path) for item in discover_cifs(path) if not snakemake_unsafe(item.path))
    return [str(path)] if path else []


def check_known_sets(known_config: dict[str, Any]) -> dict[str, Any]:
    """Check the path, format and columns of every known set (``database``, ``training``) at start-up.

    Cheap: no entry is read (a JSON file's first characters, a table's column names, a
    folder's first CIF), nothing is written. Returns ``known_config`` itself.

    A database table its competing phases are chosen from (``competing_phases.enabled``) with no
    energy column configured but a column named like one (:data:`ENERGY_COLUMN_PATTERNS`) is
    refused too: the message names the column and the key to set, nothing is guessed.

    Raises:
        ConfigError: one sentence naming the key, the path, the problem and what to do.
    """
    choosing = (known_config.get("competing_phases") or {}).get("enabled", True)
    for name in ("database", "training"):
        section = known_config.get(name) or {}
        if section.get("path"):
            check_known_set(f"known_materials.{name}", section, needs_energies=choosing and name == "database")
    return known_config


def check_known_set(key: str, section: dict[str, Any], needs_energies: bool = False) -> None:
    """Check one known set's config section ``key`` (e.g. ``known_materials.database``), see :func:`check_known_sets`.

    ``needs_energies``: its phases are chosen by energy, so a table with an unnamed energy
    column is refused (:func:`energy_column_hint`).

    Raises:
        ConfigError: the path is missing or of no known format, the file cannot be read as
            its format says, a table lacks a configured column or has an energy column not
            configured (``needs_energies``), or a folder has no CIF.
    """
    path = Path(section["path"])
    if not path.exists():
        where = "" if path.is_absolute() else f" (a relative path is read from the run folder {Path.cwd()})"
        raise ConfigError(f"{key}.path '{path}' does not exist{where}: give the known set's file or folder, "
                          "or path: null for none")
    kind = known_set_format(path)
    if kind is None:
        raise ConfigError(f"{key}.path '{path}' is of no known-set format: give a .json or .json.gz of "
                          "ComputedStructureEntry dicts, a .csv or .parquet structures table, or a folder of CIFs")
    if kind == "folder" and not _has_cif(path):
        raise ConfigError(f"{key}.path '{path}' is a folder without any .cif file: give the folder of the known "
                          "set's CIFs")
    if kind == "json":
        _check_json_start(key, path)
    if kind == "table":
        options = table_options(section)
        columns = _check_table_columns(key, path, options)
        hint = energy_column_hint(columns, options) if needs_energies else None
        if hint is not None:
            column, role, meaning = hint
            raise ConfigError(f"{key} has no energy column configured, but its table '{path}' has a column "
                              f"'{column}' that looks like {meaning}: set {key}.{role}: {column} so that its "
                              "competing phases are ranked by energy (or rename the column if it holds no such "
                              "energy)")


def _has_cif(folder: Path) -> bool:
    """Whether a ``*.cif`` file (any letter case, not hidden) lies in ``folder`` or a non-hidden sub-folder."""
    seen: set[Path] = set()
    for root, subfolders, files in os.walk(folder, followlinks=True):
        real = Path(root).resolve()
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        if any(not name.startswith(".") and name.lower().endswith(".cif") for name in files):
            return True
    return False


def _check_json_start(key: str, path: Path) -> None:
    """Refuse a ``*.json(.gz)`` that cannot be opened or does not start like a JSON list or object.

    Raises:
        ConfigError: naming the key, the file and the problem.
    """
    compressed = path.name.lower().endswith(".gz")
    opener = gzip.open if compressed else open
    what = "gzip-compressed JSON" if compressed else "JSON"
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            head = handle.read(4096).lstrip()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}.path '{path}' cannot be read as {what} ({one_line(exc, 160)})") from None
    if not head.startswith(("[", "{")):
        raise ConfigError(f"{key}.path '{path}' is not {what} of ComputedStructureEntry dicts (it starts with "
                          f"{head[:20]!r}, not '[' or '{{')")


def energy_column_hint(columns: Iterable[str], options: dict[str, str | None]) -> tuple[str, str, str] | None:
    """A table column that looks like an energy while no energy column is configured, or None.

    Returns ``(column, config key to set, what it looks like)``: the first column matching the
    first pattern of :data:`ENERGY_COLUMN_PATTERNS` that any column matches (case-insensitive,
    any run of non-letters read as ``_``). None when ``energy_per_atom_column`` or
    ``e_above_hull_column`` is set.
    """
    if options.get("energy_per_atom_column") or options.get("e_above_hull_column"):
        return None
    names = [(column, re.sub(r"[^a-z0-9]+", "_", str(column).lower()).strip("_")) for column in columns]
    for pattern, role, meaning in ENERGY_COLUMN_PATTERNS:
        for column, name in names:
            if re.fullmatch(pattern, name):
                return column, role, meaning
    return None


def _check_table_columns(key: str, path: Path, options: dict[str, str | None]) -> list[str]:
    """Refuse a structures table that cannot be read or lacks a column its config names (only its header is read).

    Returns the table's column names.

    Raises:
        ConfigError: naming the key, the column setting, the file and its columns.
    """
    csv = path.name.lower().endswith(".csv")
    try:
        if csv:
            import pandas as pd

            columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        else:
            import pyarrow.parquet as pq

            columns = [str(c) for c in pq.read_schema(path).names]
    except Exception as exc:  # pandas/pyarrow raise many kinds for a damaged or empty file
        raise ConfigError(f"{key}.path '{path}' cannot be read as a {'CSV' if csv else 'Parquet'} table "
                          f"({one_line(exc, 160)})") from None
    for role, column in options.items():
        if column is not None and column not in columns:
            fix = {"cif_column": "; name the column holding the CIF text",
                   "id_column": "; name the id column, or id_column: null to number the rows"}.get(
                role, f"; name the right column, or {role}: null")
            raise ConfigError(f"{key}.{role} is '{column}', but the table '{path}' has no such column (its "
                              f"columns: {one_line(', '.join(columns), 200)}){fix}")
    return columns


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
