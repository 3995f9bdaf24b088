"""Find the input CIF files and give each one a stable, bounded, path-safe structure id.

A structure id is made from the file's path relative to the input folder, and
from nothing else, so adding or removing other files never changes it (and
never makes finished DFT run again):

* folders are joined with ``__`` and the ``.cif`` suffix (any letter case) is dropped;
* when that text is already safe (only ``[A-Za-z0-9._+-]``, no ``..``, no part
  starting or ending with ``_`` or containing ``__``, at most
  :data:`MAX_READABLE_ID_CHARS` characters, no long repetition) it is the id;
* otherwise every run of other characters becomes one ``_``, the text is cut to
  :data:`MAX_READABLE_ID_CHARS` characters and ``-`` plus the first
  :data:`HASH_CHARS` hex digits of the SHA-256 of the relative path are appended
  (``a b (copy).cif`` -> ``a_b_copy_-c4636e6572``). The readable prefix shows which
  file it is; the hash keeps two such names apart. Ids are at most
  :data:`MAX_ID_CHARS` characters, safe as Snakemake wildcard values and as
  file names on every file system.

The ``id_note`` column of the table says how an id was made when it is not the
path itself. The one case where another file matters: two paths whose ids differ
only in letter case (``A.cif`` and ``a.cif``, distinct on Linux, one file on macOS
and Windows); the later one in sorted order gets the hash suffix.

Crawling rule for ``input.cif_dir``: every ``*.cif`` file (suffix in any letter
case) in the folder and its sub-folders; hidden files and folders (name
starting with ``.``, e.g. ``.git/``, editor backups) are skipped; symbolic links
to files and to folders are followed (a folder reached twice through links is
read once); the workflow's own ``output_dir``, when it lies inside the input
folder, is skipped.

Table input (config ``input.table``): a CSV or Parquet file with one CIF text
per row, as CrystaLLM-pi's ``generate_cifs.py --output_parquet`` writes it
(CIF text in ``Generated CIF``, ids in ``Material ID``, also ``Prompt``,
``condition_vector`` and, when ranked, ``rank``/``score``). A row's id is its
id-column value made safe as above, or ``<table stem>__row<n>`` (n = 0-based
row number); a value repeated in the id column gets the hash of its row for the
second and later rows, so ids stay unique across the CIF folder and the table.
Every other column is carried into the results table under its own name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dftscreen.io import atomic_write_with
from dftscreen.layout import ResultsLayout

#: Column holding the CIF text in CrystaLLM-pi's generation output.
DEFAULT_TABLE_CIF_COLUMN = "Generated CIF"

#: Longest readable part of an id; longer names are cut and get a hash.
MAX_READABLE_ID_CHARS = 64
#: Hex digits of the path's SHA-256 appended to a changed or shortened id (40 bits).
HASH_CHARS = 10
#: Longest id: readable part, ``-`` and the hash (file names allow 255 bytes).
MAX_ID_CHARS = MAX_READABLE_ID_CHARS + 1 + HASH_CHARS

#: Regular expression every structure id matches (used as the Snakemake
#: wildcard constraint).
STRUCTURE_ID_PATTERN = r"[A-Za-z0-9_+][A-Za-z0-9._+-]{0,%d}" % (MAX_ID_CHARS - 1)

_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._+-]+")
_DOTS = re.compile(r"\.{2,}")
_SAFE_PART = re.compile(r"[A-Za-z0-9+][A-Za-z0-9._+-]*")
#: Snakemake refuses a wildcard value ending in a text repeated 20 or more times
#: (PeriodicWildcardError, its guard against endless recursion).
_PERIODIC = re.compile(r"(.+?)\1{19,}$")


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


def path_hash(text: str) -> str:
    """The first :data:`HASH_CHARS` hex digits of the SHA-256 of ``text`` (UTF-8, undecodable bytes kept)."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:HASH_CHARS]


def _readable(text: str) -> str:
    """``text`` in ASCII (accents dropped: ``ñ`` -> ``n``), never empty.

    Every run of unsafe characters becomes one ``_``, and no ``..`` is left.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    candidate = _DOTS.sub("_", _UNSAFE_RUN.sub("_", ascii_text)).strip(".")
    if not candidate:
        return "structure"
    if candidate[0] in "-.":
        candidate = "_" + candidate
    return candidate


def make_id(relative_path: str) -> tuple[str, str]:
    """The structure id of a relative file path, and how it was made (empty: the path itself).

    Depends on ``relative_path`` only (see the module docstring for the rule).

    >>> make_id("NaCl/baseline/rank01.cif")
    ('NaCl__baseline__rank01', '')
    """
    stem = relative_path[:-4] if relative_path.lower().endswith(".cif") else relative_path
    parts = [p for p in stem.replace("\\", "/").split("/") if p not in ("", ".")]
    plain = "__".join(parts)
    lossless = (
        bool(parts)
        and all(
            _SAFE_PART.fullmatch(p) and ".." not in p and "__" not in p and not p.endswith(("_", ".")) for p in parts
        )
        and len(plain) <= MAX_READABLE_ID_CHARS
        and not _PERIODIC.search(plain)
    )
    if lossless:
        return plain, ""
    readable = _readable("__".join(p for p in parts if p != ".."))[:MAX_READABLE_ID_CHARS].rstrip(".")
    sid = f"{readable}-{path_hash(relative_path)}"
    reasons = []
    if len(plain) > MAX_READABLE_ID_CHARS:
        reasons.append(f"longer than {MAX_READABLE_ID_CHARS} characters, cut")
    if readable != plain[:MAX_READABLE_ID_CHARS]:
        reasons.append("characters unsafe in file names or wildcards replaced by _")
    elif not reasons:
        reasons.append("name not safe as written")
    return sid, f"id: {'; '.join(reasons)}; hash of the path appended"


def safe_id(relative_path: str) -> str:
    """The path-safe structure id of a relative file path (see :func:`make_id`).

    >>> safe_id("NaCl/baseline/rank 01.cif")
    'NaCl__baseline__rank_01-c858bc1044'
    """
    return make_id(relative_path)[0]


def _unique_id(base: str, note: str, origin: str, taken: dict[str, str]) -> tuple[str, str]:
    """``base``, or ``base`` with the hash of ``origin`` when the id is taken (case-insensitive); records it.

    Only ids that differ in letter case from an existing one (or repeated
    table ids) reach the second branch: every other id is unique by construction.
    """
    sid = base
    if sid.lower() in taken:
        # Case-insensitive so ids stay distinct on case-insensitive file systems.
        sid = f"{base[:MAX_READABLE_ID_CHARS]}-{path_hash(origin)}"
        extra = f"id '{base}' already used by '{taken[base.lower()]}'; hash of '{origin}' appended"
        note = f"{note}; {extra}" if note else extra
    taken[sid.lower()] = origin
    return sid, note


def assign_ids(relative_paths: list[str]) -> list[tuple[str, str, str]]:
    """Give each relative path its id (see :func:`make_id`), deterministically.

    Returns ``(relative_path, structure_id, note)`` in sorted path order; the
    note says how the id was made when it is not the path itself.
    """
    taken: dict[str, str] = {}
    result = []
    for rel in sorted(relative_paths):
        sid, note = _unique_id(*make_id(rel), rel, taken)
        result.append((rel, sid, note))
    return result


def _is_inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies under it (both resolved)."""
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def crawl_cifs(root: Path, exclude: Path | Iterable[Path] | None = None) -> list[str]:
    """Relative POSIX paths of the ``*.cif`` files under ``root`` by the crawling rule of this module.

    Hidden files and folders are skipped, symbolic links followed (each real
    folder once); ``exclude`` (resolved folders or files) and everything under them skipped.
    """
    excluded = [exclude] if isinstance(exclude, Path) else list(exclude or ())
    found = []
    seen_folders: set[Path] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = Path(folder).resolve()
        if real in seen_folders or any(_is_inside(real, e) for e in excluded):
            subfolders[:] = []
            continue
        seen_folders.add(real)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in files:
            path = Path(folder) / name
            if name.startswith(".") or not name.lower().endswith(".cif") or not path.is_file():
                continue
            if excluded and path.resolve() in excluded:
                continue
            found.append(path.relative_to(root).as_posix())
    return found


def workflow_paths(config: Mapping[str, Any], folder: Path | None = None) -> list[Any]:
    """Folders and files a run reads as something other than generated structures.

    The reference library, the reference-phase folder and elemental reference CIFs, and the
    known sets (``known_materials``): the crawl of ``input.cif_dir`` skips them wherever they
    sit (:func:`dftscreen.inputs.crawl_exclusions`), so a library or known set kept inside
    the input folder never comes back as generated rows. Paths as the run folder gives them.
    """
    stability, known = config["stability"], config["known_materials"]
    paths = [
        stability["reference_library_dir"],
        stability["reference_cif_dir"],
        *stability["elemental_reference_cifs"].values(),
        known["database"]["path"],
        known["training"]["path"],
    ]
    return [path if folder is None or os.path.isabs(path) else folder / path for path in paths if path]


def crawl_exclusions(
    cif_dir: str | Path, output_dir: str | Path | None, workflow_paths: Iterable[str | Path] = ()
) -> list[Path]:
    """The resolved folders and files the crawl of ``cif_dir`` skips: the workflow's own.

    ``output_dir`` whole when ``cif_dir`` lies outside it; when ``cif_dir`` lies inside it
    (``run07/cifs`` with results in ``run07``, or ``output_dir: .``) only the folders the
    workflow writes there (:meth:`dftscreen.layout.ResultsLayout.own_folders`), so the inputs
    are still read. ``workflow_paths``: the other folders and files the workflow reads as
    something else (reference library, known sets, reference CIFs), wherever they sit.

    Raises:
        ValueError: ``output_dir`` is ``cif_dir`` itself or the file system's root.
    """
    root = Path(cif_dir).resolve()
    excluded = [Path(p).resolve() for p in workflow_paths if p]
    if not output_dir:
        return excluded
    out = Path(output_dir).resolve()
    if out == Path(out.anchor):
        raise ValueError(
            f"output_dir '{output_dir}' is the file system's root: give the run a folder of its own for its results"
        )
    if out == root:
        raise ValueError(
            f"output_dir '{output_dir}' is the input folder input.cif_dir: the workflow would read its own "
            "results as new inputs; choose an output_dir outside it (or a sub-folder, which is then skipped)"
        )
    if _is_inside(root, out):
        return excluded + [Path(folder).resolve() for folder in ResultsLayout.of(out).own_folders()]
    return [out, *excluded]


def discover_cifs(
    cif_dir: str | Path, output_dir: str | Path | None = None, workflow_paths: Iterable[str | Path] = ()
) -> list[InputFile]:
    """List every ``*.cif`` file under ``cif_dir`` (the crawling rule of this module) with its structure id.

    Args:
        output_dir: the workflow's output folder; skipped when inside ``cif_dir`` (only the
            workflow's own folders in it when ``cif_dir`` lies inside it: :func:`crawl_exclusions`).
        workflow_paths: folders and files the workflow reads as something else (reference
            library, known sets, reference CIFs): skipped wherever they sit.

    Raises:
        FileNotFoundError: if ``cif_dir`` is not an existing folder.
        ValueError: ``output_dir`` is ``cif_dir`` itself (results would mix with inputs) or ``/``.
    """
    root = Path(cif_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input.cif_dir '{cif_dir}' is not an existing folder")
    excluded = crawl_exclusions(root, output_dir, workflow_paths)
    return [
        InputFile(structure_id=sid, path=root / rel, relative_path=rel, id_note=note)
        for rel, sid, note in assign_ids(crawl_cifs(root, excluded))
    ]


def no_input_message(
    input_config: dict[str, Any], output_dir: str | Path | None, workflow_paths: Iterable[str | Path] = ()
) -> str:
    """Why a run has no input, in one sentence: nothing there, or CIF files found but all the workflow's own."""
    cif_dir = input_config.get("cif_dir")
    skipped = excluded_cif_count(cif_dir, output_dir, workflow_paths) if cif_dir else 0
    if skipped:
        return (
            f"no input: the {skipped} CIF files under input.cif_dir '{cif_dir}' all lie in the workflow's own folders "
            f"(output_dir '{output_dir}', the reference library or a known set), which are never read as inputs"
        )
    return "no input: the input folder and table hold no CIF"


def excluded_cif_count(
    cif_dir: str | Path, output_dir: str | Path | None, workflow_paths: Iterable[str | Path] = ()
) -> int:
    """How many ``*.cif`` files under ``cif_dir`` the crawl skips as the workflow's own (the empty-input warning)."""
    root = Path(cif_dir)
    if not root.is_dir():
        return 0
    return len(crawl_cifs(root)) - len(crawl_cifs(root, crawl_exclusions(root, output_dir, workflow_paths)))


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
            base, note = make_id(f"{table.stem}/row{n}")
        else:
            base, note = make_id(str(name))
        sid, note = _unique_id(base, note, origin, taken)
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


def discover_inputs(
    input_config: dict[str, Any], output_dir: str | Path | None = None, workflow_paths: Iterable[str | Path] = ()
) -> list[InputFile]:
    """Every input of the config section ``input``: CIF files under ``cif_dir`` and rows of ``table``.

    Both may be given; ids are unique across them (files first, then rows in order).
    ``output_dir`` inside ``cif_dir`` and ``workflow_paths`` are skipped (see :func:`discover_cifs`).

    Raises:
        ValueError: neither is given, or a table column is missing.
        FileNotFoundError: the folder or table does not exist.
    """
    cif_dir = input_config.get("cif_dir")
    table = input_config.get("table")
    if not cif_dir and not table:
        raise ValueError("config input: give cif_dir (a folder of CIFs), table (CSV/Parquet of CIF texts) or both")
    items = discover_cifs(cif_dir, output_dir, workflow_paths) if cif_dir else []
    taken = {item.structure_id.lower(): item.relative_path for item in items}
    if table:
        items += table_inputs(
            table,
            input_config.get("table_cif_column") or DEFAULT_TABLE_CIF_COLUMN,
            input_config.get("table_id_column"),
            taken,
        )
    return items


#: Characters Snakemake 9 reads in a path as a wildcard (``{x}``) or a path variable (``<x>``):
#: a path holding one can be no input or output of a rule (``<unk>`` is CrystaLLM's unknown token).
SNAKEMAKE_UNSAFE_PATH = re.compile(r"[{}<>]")


def snakemake_unsafe(path: str | os.PathLike[str]) -> bool:
    """True when Snakemake cannot take ``path`` as an input or output (:data:`SNAKEMAKE_UNSAFE_PATH`)."""
    return bool(SNAKEMAKE_UNSAFE_PATH.search(str(path)))


def needs_workflow_copy(item: InputFile) -> bool:
    """Whether the DFT and ML jobs read ``item`` from a workflow-owned copy (:func:`write_input_copy`).

    A table row (its CIF text is no file) and a file whose path Snakemake cannot take
    (:func:`snakemake_unsafe`); every other input is read where it is, as runs always did
    (changing the path of a finished structure's input would rerun its DFT).
    """
    return item.content is not None or snakemake_unsafe(item.path)


def table_row_cif_path(inputs_dir: str | Path, structure_id: str) -> Path:
    """Where the workflow's copy of an input is written for the ML and DFT jobs: ``<inputs_dir>/<id>.cif``.

    For table rows and files whose path Snakemake cannot take (:func:`needs_workflow_copy`).
    """
    return Path(inputs_dir) / f"{structure_id}.cif"


def write_input_copy(item: InputFile, inputs_dir: str | Path) -> Path:
    """Write an input's CIF (a table row's text, a file's bytes) to its copy, atomically, if missing or different.

    An unchanged file keeps its modification time, so Snakemake does not rerun
    the DFT of that structure.
    """
    destination = table_row_cif_path(inputs_dir, item.structure_id)
    content = item.content if item.content is not None else item.path.read_bytes()
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
