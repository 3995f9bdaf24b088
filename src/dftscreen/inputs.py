"""Find the input CIF files and give each one a path-safe structure id.

A structure id is derived from the file's path relative to the input folder:
folders are joined with ``__``, the ``.cif`` suffix is dropped, and every
character outside ``[A-Za-z0-9._+-]`` becomes ``_``. Ids are therefore safe as
file and folder names (no ``/``, no ``..``, no spaces). When two files map to
the same id (``a b.cif`` and ``a_b.cif``), the first in sorted path order keeps
it and the others get ``-2``, ``-3``, ... appended; every such renaming is
reported in :attr:`InputFile.id_note`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def assign_ids(relative_paths: list[str]) -> list[tuple[str, str, str]]:
    """Give each relative path a unique safe id, deterministically.

    Returns ``(relative_path, structure_id, note)`` in sorted path order. The
    note is empty unless the id had to be changed to resolve a collision.
    """
    taken: dict[str, str] = {}
    result = []
    for rel in sorted(relative_paths):
        base = safe_id(rel)
        sid, note = base, ""
        if sid.lower() in taken:
            # Case-insensitive so ids stay distinct on case-insensitive file systems.
            n = 2
            while f"{base}-{n}".lower() in taken:
                n += 1
            sid = f"{base}-{n}"
            note = f"id '{base}' already used by '{taken[base.lower()]}'; renamed to '{sid}'"
        taken[sid.lower()] = rel
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
