"""A known set's prepared data, kept beside the reference library: read once per known file, not per run.

Reading a 100,000-entry ``ComputedStructureEntry`` JSON.gz takes 15-50 s, and reducing the
known structures to the Niggli primitive cells StructureMatcher compares was most of the
novelty matching. Both depend only on the file (and, for the reduced cells, on the matcher),
so they are kept in two numpy ``.npz`` files in ``<reference library>/known_index/``:

- ``<name>-<path hash>.index.npz``: per entry what every user of the known set needs without
  its structure (id, reduced formula, elements, site count, volume per atom in Å³, energies
  in eV/atom), and the structure dict itself as zlib-compressed JSON, decoded only for the
  entries a run builds (the exact dict, so ``KnownEntry.structure()`` gives what the JSON
  gave: same verdicts, same phase CIFs). The header records the source's size, mtime and
  sha256: a valid index is used without opening the JSON; when size or mtime differ the
  file is hashed, and a different hash rebuilds the index.
- ``<name>-<path hash>.reduced-<settings key>.npz``: reduced cells (lattice in Å, species,
  fractional coordinates) of the entries a run needed, filled lazily and merged back after
  each run. The settings key hashes the matcher settings and pymatgen's version; the
  header repeats the source's sha256.

An index that cannot be read, has the wrong format or does not belong to the file is
rebuilt (reduced cells: dropped), never trusted. Writes are atomic (temp file + rename);
two runs sharing a library may race, the later write wins and holds a valid index.
Only format (a) (``*.json``/``*.json.gz``) is indexed: tables and CIF folders are read as before.
Items the parse skipped as unreadable (:class:`dftscreen.known.SkippedEntries`) are not in the
index; its header keeps their count, first ids and first reason, so a run reading the index
reports them as the parse did.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from dftscreen import known as known_sets
from dftscreen.dedupe import MatchSettings
from dftscreen.io import atomic_path
from dftscreen.known import (
    KnownEntry,
    KnownSet,
    KnownSetError,
    SkippedEntries,
    known_set_format,
    read_cif_folder,
    read_entries_json,
    read_structures_table,
    table_options,
)

#: Bumped whenever the index's content or meaning changes: older indexes are rebuilt.
INDEX_FORMAT = 1

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 4 MB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def reduced_settings_key(settings: MatchSettings) -> str:
    """12 hex digits naming the reduced cells of ``settings`` (with pymatgen's version and the format)."""
    import pymatgen.core

    text = json.dumps({"match": asdict(settings), "pymatgen": pymatgen.core.__version__, "format": INDEX_FORMAT},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ReducedCell:
    """A Niggli-reduced primitive cell as arrays: ``lattice_A`` (3, 3) Å, ``frac_coords`` (n, 3), species per site.

    A species is a string (``"Fe"``, ``"Fe2+"``) for a fully occupied site, else a JSON object
    of species string -> occupancy.
    """

    lattice_A: np.ndarray
    species: tuple[str, ...]
    frac_coords: np.ndarray

    def structure(self) -> Structure:
        """The cell as a Structure (same floats as the reduced structure it was made from)."""
        species: list[Any] = [json.loads(s) if s.startswith("{") else s for s in self.species]
        return Structure(Lattice(self.lattice_A), species, self.frac_coords)

    @classmethod
    def from_structure(cls, structure: Structure) -> ReducedCell | None:
        """The cell of ``structure``, or None when the arrays would not give back its species exactly."""
        species = []
        for site in structure:
            items = list(site.species.items())
            if len(items) == 1 and items[0][1] == 1:
                species.append(str(items[0][0]))
            else:
                species.append(json.dumps({str(sp): occu for sp, occu in items}))
        cell = cls(np.array(structure.lattice.matrix, dtype=float), tuple(species),
                   np.array(structure.frac_coords, dtype=float).reshape(-1, 3))
        try:
            rebuilt = cell.structure()
        except Exception:
            return None
        if [s.species for s in rebuilt] != [s.species for s in structure]:
            return None
        return cell


def _atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` through :func:`dftscreen.io.atomic_path` (readers never see half a file)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a handle: savez would add ".npz" to a name
        np.savez(handle, **arrays)


def _header(arrays: Any) -> dict[str, Any]:
    return json.loads(str(arrays["header"][()]))


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class KnownIndex:
    """The index files of one known-set JSON in one folder (see the module docstring)."""

    def __init__(self, source: str | Path, folder: str | Path) -> None:
        self.source = Path(source)
        resolved = str(self.source.resolve())
        stem = f"{self.source.name}-{hashlib.sha256(resolved.encode()).hexdigest()[:12]}"
        self.folder = Path(folder)
        self.path = self.folder / f"{stem}.index.npz"
        self._stem = stem
        self.source_sha256: str | None = None

    def reduced_path(self, settings: MatchSettings) -> Path:
        return self.folder / f"{self._stem}.reduced-{reduced_settings_key(settings)}.npz"

    # -- the entries ---------------------------------------------------------------------------
    def load_or_build(self) -> KnownSet:
        """The known set from a valid index, else read from the JSON and the index (re)written."""
        known = self._load()
        if known is not None:
            return known
        return self._build()

    def _load(self) -> KnownSet | None:
        if not self.path.is_file():
            return None
        stat = self.source.stat()
        try:
            with np.load(self.path, allow_pickle=False) as arrays:
                header = _header(arrays)
                if header.get("format") != INDEX_FORMAT:
                    raise ValueError(f"format {header.get('format')}, expected {INDEX_FORMAT}")
                if (header["source_size"], header["source_mtime_ns"]) != (stat.st_size, stat.st_mtime_ns):
                    if header["source_sha256"] != file_sha256(self.source):
                        log.info("%s: the known set changed since the index was built: rebuilding", self.path)
                        return None
                data = {name: arrays[name] for name in arrays.files if name != "header"}
        except Exception as exc:  # a truncated or damaged file (zip CRC), missing arrays, wrong header
            log.warning("%s: unusable index (%s): rebuilding", self.path, exc)
            return None
        try:
            known = self._entries(header, data)
        except Exception as exc:
            log.warning("%s: inconsistent index (%s): rebuilding", self.path, exc)
            return None
        self.source_sha256 = header["source_sha256"]
        log.info("%s: read from its index %s (JSON not parsed)", self.source.name, self.path)
        return known

    def _entries(self, header: dict[str, Any], data: dict[str, np.ndarray]) -> KnownSet:
        ids, formulas, elements = data["ids"].tolist(), data["formulas"].tolist(), data["elements"].tolist()
        n_sites, volumes = data["n_sites"].tolist(), data["volume_per_atom_A3"].tolist()
        energies, hulls = data["energy_per_atom_eV"].tolist(), data["e_above_hull_eV_per_atom"].tolist()
        offsets, blob = data["structure_offsets"], data["structure_blob"].tobytes()
        n = header["n_entries"]
        if not (len(ids) == len(formulas) == len(elements) == len(n_sites) == len(volumes) == len(energies)
                == len(hulls) == len(offsets) - 1 == n) or offsets[0] != 0 or offsets[-1] != len(blob) \
                or np.any(np.diff(offsets) <= 0):
            raise ValueError("array lengths or offsets do not agree")
        starts = offsets.tolist()
        entries = [
            KnownEntry(
                entry_id=ids[i], reduced_formula=formulas[i], elements=frozenset(elements[i].split()),
                n_sites=n_sites[i] or None, energy_per_atom_eV=_optional(energies[i]),
                e_above_hull_eV_per_atom=_optional(hulls[i]), volume_per_atom_A3=_optional(volumes[i]),
                packed_structure=blob[starts[i]:starts[i + 1]],
            )
            for i in range(n)
        ]
        return KnownSet(header["label"], entries, skipped=SkippedEntries.from_dict(header.get("skipped")))

    def _build(self) -> KnownSet:
        stat = self.source.stat()
        sha = file_sha256(self.source)
        known = read_entries_json(self.source)
        packed = [zlib.compress(json.dumps(e.raw_structure, separators=(",", ":")).encode(), 1)
                  for e in known.entries]
        volumes = []
        for entry in known.entries:
            entry.volume_per_atom_A3 = volume_per_atom_A3(entry.raw_structure)
            volumes.append(math.nan if entry.volume_per_atom_A3 is None else entry.volume_per_atom_A3)
        header = {"format": INDEX_FORMAT, "source_name": self.source.name, "source_size": stat.st_size,
                  "source_mtime_ns": stat.st_mtime_ns, "source_sha256": sha, "label": known.label,
                  "n_entries": len(known.entries), "skipped": known.skipped.to_dict()}
        arrays = {
            "header": np.array(json.dumps(header)),
            "ids": np.array([e.entry_id for e in known.entries], dtype=str),
            "formulas": np.array([e.reduced_formula for e in known.entries], dtype=str),
            "elements": np.array([" ".join(sorted(e.elements)) for e in known.entries], dtype=str),
            "n_sites": np.array([e.n_sites or 0 for e in known.entries], dtype=np.int32),
            "volume_per_atom_A3": np.array(volumes, dtype=float),
            "energy_per_atom_eV": np.array([math.nan if e.energy_per_atom_eV is None else e.energy_per_atom_eV
                                            for e in known.entries], dtype=float),
            "e_above_hull_eV_per_atom": np.array([math.nan if e.e_above_hull_eV_per_atom is None
                                                  else e.e_above_hull_eV_per_atom for e in known.entries],
                                                 dtype=float),
            "structure_offsets": np.concatenate([[0], np.cumsum([len(p) for p in packed])]).astype(np.int64),
            "structure_blob": np.frombuffer(b"".join(packed), dtype=np.uint8),
        }
        try:
            _atomic_save_npz(self.path, arrays)
        except OSError as exc:  # a read-only library: the run goes on without an index
            log.warning("%s: index not written (%s)", self.path, exc)
        self.source_sha256 = sha
        log.info("%s: parsed, index written to %s", self.source.name, self.path)
        return known

    # -- the reduced cells ---------------------------------------------------------------------
    def load_reduced(self, settings: MatchSettings) -> dict[str, ReducedCell]:
        """Reduced cells kept for ``settings``, by entry id ({} when none, or unusable)."""
        path = self.reduced_path(settings)
        if self.source_sha256 is None or not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as arrays:
                header = _header(arrays)
                if header.get("format") != INDEX_FORMAT or header.get("source_sha256") != self.source_sha256 \
                        or header.get("settings") != asdict(settings):
                    raise ValueError("made for another known set or other settings")
                ids, lattices = arrays["ids"].tolist(), arrays["lattices_A"]
                offsets, species, frac = arrays["site_offsets"], arrays["species"].tolist(), arrays["frac_coords"]
            if not (len(ids) == len(lattices) == len(offsets) - 1) or offsets[0] != 0 \
                    or offsets[-1] != len(species) or len(species) != len(frac) or np.any(np.diff(offsets) <= 0):
                raise ValueError("array lengths or offsets do not agree")
        except Exception as exc:
            log.warning("%s: unusable reduced cells (%s): starting afresh", path, exc)
            return {}
        starts = offsets.tolist()
        return {
            ids[k]: ReducedCell(lattices[k], tuple(species[starts[k]:starts[k + 1]]), frac[starts[k]:starts[k + 1]])
            for k in range(len(ids))
        }

    def save_reduced(self, settings: MatchSettings, cells: dict[str, ReducedCell]) -> None:
        """Write ``cells`` merged with those on disk (another run's), atomically; an OSError only logs."""
        if self.source_sha256 is None or not cells:
            return
        merged = {**self.load_reduced(settings), **cells}
        ids = sorted(merged)
        header = {"format": INDEX_FORMAT, "source_sha256": self.source_sha256, "settings": asdict(settings)}
        arrays = {
            "header": np.array(json.dumps(header)),
            "ids": np.array(ids, dtype=str),
            "lattices_A": np.array([merged[i].lattice_A for i in ids], dtype=float).reshape(-1, 3, 3),
            "site_offsets": np.concatenate([[0], np.cumsum([len(merged[i].species) for i in ids])]).astype(np.int64),
            "species": np.array([s for i in ids for s in merged[i].species], dtype=str),
            "frac_coords": np.concatenate([merged[i].frac_coords for i in ids]).reshape(-1, 3).astype(float),
        }
        try:
            _atomic_save_npz(self.reduced_path(settings), arrays)
        except OSError as exc:
            log.warning("%s: reduced cells not written (%s)", self.reduced_path(settings), exc)


def volume_per_atom_A3(raw_structure: dict[str, Any] | None) -> float | None:
    """Cell volume per atom (Å³) from a structure dict's lattice matrix, without building the structure."""
    if raw_structure is None:
        return None
    try:
        matrix = np.array(raw_structure["lattice"]["matrix"], dtype=float)
        return abs(float(np.linalg.det(matrix))) / len(raw_structure["sites"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def read_known_set(source: dict[str, Any], index_dir: str | Path | None = None) -> KnownSet | None:
    """The known set a config section ``known_materials.<set>`` names, or ``None`` without a path.

    The format follows the path: a folder, ``*.json(.gz)``, ``*.csv`` or ``*.parquet``. With
    ``index_dir``, a JSON set is read through its index there (:mod:`dftscreen.known_index`:
    built on first use, then the JSON is not parsed again while the file is unchanged).

    Entries that cannot be read are skipped, logged as one warning (:attr:`KnownSet.skipped_note`).

    Raises:
        KnownSetError: the path does not exist or is of no known format, or no entry is readable.
    """
    path = source.get("path")
    if not path:
        return None
    path = Path(path)
    if not path.exists():
        raise KnownSetError(f"known set '{path}' does not exist")
    kind = known_set_format(path)
    if kind == "folder":
        known = read_cif_folder(path)
    elif kind == "table":
        known = read_structures_table(path, **table_options(source))
    elif kind == "json" and index_dir is None:
        # Through the module: the index builder's own call is the one the tests count.
        known = known_sets.read_entries_json(path)
    elif kind == "json":
        index = KnownIndex(path, index_dir)
        known = index.load_or_build()
        known.index = index
    else:
        raise KnownSetError(f"known set '{path}': expected a folder of CIFs, .json(.gz), .csv or .parquet")
    if known.skipped_note:
        log.warning("%s", known.skipped_note)
    return known
