"""Find the input CIF files and give each one a path-safe structure id.

A structure id is derived from the file's path relative to the input folder:
folders are joined with ``__``, the ``.cif`` suffix is dropped, and every
character outside ``[A-Za-z0-9._+-]`` becomes ``_``. Ids are therefore safe as
file and folder names (no ``/``, no ``..``, no spaces). When two files map to
the same id (``a b.cif`` and ``a_b.cif``), the first in sorted path order keeps
it and the others get ``-2``, ``-3``, ... appended; every such renaming is
reported in :attr:`InputFile.id_note`.

Table input (config ``input.table``): a CSV or Parquet file with one CIF text
per row, as CrystaLLM-pi's ``generate_cifs.py --output_parquet`` writes it
(CIF text in ``Generated CIF``, ids in ``Material ID``, also ``Prompt``,
``condition_vector`` and, when ranked, ``rank``/``score``). A row's id is its
id-column value made safe as above, or ``<table stem>__row<n>`` (n = 0-based
row number); ids stay unique across the CIF folder and the table. Every other
column is carried into the results table under its own name.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dftscreen.io import atomic_write_with

#: Column holding the CIF text in CrystaLLM-pi's generation output.
DEFAULT_TABLE_CIF_COLUMN = "Generated CIF"

#: Regular expression every structure id matches (used as the Snakemake
#: wildcard constraint).
STRUCTURE_ID_PATTERN = r"[A-Za-z0-9_+][A-Za-z0-9._+-]*"

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_DOTS = re.compile(r"\.{2,}")


@dataclass(frozen=True)
class InputFile:
    """One input structure and the id it was given.

    For a CIF file, ``path`` is the file and ``content`` is ``None`` (read on
    demand). For a row of a table input, ``path`` is the table, ``content``
    the CIF text of that row and ``extra_columns`` the row's other columns.
    """

    structure_id: str
    path: Path
    relative_path: str
    id_note: str = ""
    content: bytes | None = field(default=None, repr=False, compare=False)
    extra_columns: tuple[tuple[str, Any], ...] = field(default=(), repr=False, compare=False)


def safe_id(relative_path: str) -> str:
    """Turn a relative file path into a path-safe structure id (not yet unique).

    >>> safe_id("NaCl/baseline/rank 01.cif")
    'NaCl__baseline__rank_01'
    """
    stem = relative_path[:-4] if relative_path.lower().endswith(".cif") else relative_path
    parts = [p for p in stem.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    candidate = "__".join(parts)
    candidate = _UNSAFE.sub("_", candidate)
    candidate = _DOTS.sub("_", candidate)
    candidate = candidate.strip(".")
    if not candidate:
        candidate = "structure"
    if candidate[0] in "-.":
        candidate = "_" + candidate
    return candidate


def _unique_id(base: str, origin: str, taken: dict[str, str]) -> tuple[str, str]:
    """``base`` or ``base-2``, ``base-3``, ... whichever is free in ``taken`` (case-insensitive); records it."""
    sid, note = base, ""
    if sid.lower() in taken:
        # Case-insensitive so ids stay distinct on case-insensitive file systems.
        n = 2
        while f"{base}-{n}".lower() in taken:
            n += 1
        sid = f"{base}-{n}"
        note = f"id '{base}' already used by '{taken[base.lower()]}'; renamed to '{sid}'"
    taken[sid.lower()] = origin
    return sid, note


def assign_ids(relative_paths: list[str]) -> list[tuple[str, str, str]]:
    """Give each relative path a unique safe id, deterministically.

    Returns ``(relative_path, structure_id, note)`` in sorted path order. The
    note is empty unless the id had to be changed to resolve a collision.
    """
    taken: dict[str, str] = {}
    result = []
    for rel in sorted(relative_paths):
        sid, note = _unique_id(safe_id(rel), rel, taken)
        result.append((rel, sid, note))
    return result


def discover_cifs(cif_dir: str | Path) -> list[InputFile]:
    """List every ``*.cif`` file under ``cif_dir`` (recursively) with its structure id.

    Raises:
        FileNotFoundError: if ``cif_dir`` is not an existing folder.
    """
    root = Path(cif_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input.cif_dir '{cif_dir}' is not an existing folder")
    rels = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() == ".cif" and p.is_file() and not p.name.startswith(".")
    ]
    return [
        InputFile(structure_id=sid, path=root / rel, relative_path=rel, id_note=note)
        for rel, sid, note in assign_ids(rels)
    ]


def read_table(path: str | Path):
    """A CSV or Parquet table as a pandas DataFrame (chosen by the file suffix).

    Raises:
        FileNotFoundError: the table does not exist.
        ValueError: the suffix is neither .csv nor .parquet/.pq.
    """
    import pandas as pd  # only table input needs pandas; keeps `snakemake -n` on folders light

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input.table '{path}' is not an existing file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    raise ValueError(f"input.table '{path}': expected a .csv or .parquet file")


def _cell_value(value: Any) -> Any:
    """A table cell as a plain scalar for the results table (arrays/lists as JSON text, NaN as None)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _cif_bytes(value: Any) -> bytes:
    """A CIF cell as bytes; a missing cell becomes empty content (reported as an empty file)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def table_inputs(
    table: str | Path,
    cif_column: str = DEFAULT_TABLE_CIF_COLUMN,
    id_column: str | None = None,
    taken: dict[str, str] | None = None,
) -> list[InputFile]:
    """One input per row of a CSV/Parquet table with CIF text in ``cif_column``.

    Args:
        taken: ids already used (lower-case id -> origin), e.g. by CIF files; updated.

    Raises:
        ValueError: a named column is missing (lists the columns there are).
    """
    table = Path(table)
    frame = read_table(table)
    for role, column in (("input.table_cif_column", cif_column), ("input.table_id_column", id_column)):
        if column is not None and column not in frame.columns:
            raise ValueError(
                f"{role} '{column}' is not a column of {table.name}; columns: {', '.join(map(str, frame.columns))}"
            )
    taken = {} if taken is None else taken
    other_columns = [c for c in frame.columns if c != cif_column]
    items = []
    for n, row in enumerate(frame.to_dict(orient="records")):
        origin = f"{table.name} row {n}"
        name = row.get(id_column) if id_column is not None else None
        if name is None or (isinstance(name, float) and math.isnan(name)) or str(name).strip() == "":
            base = safe_id(f"{table.stem}/row{n}")
        else:
            base = safe_id(str(name))
        sid, note = _unique_id(base, origin, taken)
        items.append(
            InputFile(
                structure_id=sid,
                path=table,
                relative_path=origin,
                id_note=note,
                content=_cif_bytes(row[cif_column]),
                extra_columns=tuple((str(c), _cell_value(row[c])) for c in other_columns),
            )
        )
    return items


def discover_inputs(input_config: dict[str, Any]) -> list[InputFile]:
    """Every input of the config section ``input``: CIF files under ``cif_dir`` and rows of ``table``.

    Both may be given; ids are unique across them (files first, then rows in order).

    Raises:
        ValueError: neither is given, or a table column is missing.
        FileNotFoundError: the folder or table does not exist.
    """
    cif_dir = input_config.get("cif_dir")
    table = input_config.get("table")
    if not cif_dir and not table:
        raise ValueError("config input: give cif_dir (a folder of CIFs), table (CSV/Parquet of CIF texts) or both")
    items = discover_cifs(cif_dir) if cif_dir else []
    taken = {item.structure_id.lower(): item.relative_path for item in items}
    if table:
        items += table_inputs(
            table,
            input_config.get("table_cif_column") or DEFAULT_TABLE_CIF_COLUMN,
            input_config.get("table_id_column"),
            taken,
        )
    return items


def table_row_cif_path(inputs_dir: str | Path, structure_id: str) -> Path:
    """Where the CIF text of a table row is written for the DFT jobs: ``<inputs_dir>/<id>.cif``."""
    return Path(inputs_dir) / f"{structure_id}.cif"


def write_table_row_cif(item: InputFile, inputs_dir: str | Path) -> Path:
    """Write a table row's CIF text to its own file, atomically, only if missing or different.

    An unchanged file keeps its modification time, so Snakemake does not rerun
    the DFT of that row.
    """
    destination = table_row_cif_path(inputs_dir, item.structure_id)
    content = item.content or b""
    if destination.is_file() and destination.read_bytes() == content:
        return destination
    atomic_write_with(destination, lambda tmp: tmp.write_bytes(content))
    return destination


def check_reference_cifs(cifs: dict[str, str], run_folder: Path = Path(".")) -> None:
    """Fail at start-up when a configured elemental reference CIF does not exist.

    Raises:
        ValueError: naming the element, the path and the folder it is relative to.
    """
    for element, cif in cifs.items():
        if not (run_folder / cif).is_file():
            raise ValueError(
                f"stability.elemental_reference_cifs: the CIF given for {element}, {cif}, does not exist "
                f"(paths are relative to the run folder, {run_folder.resolve()})"
            )
