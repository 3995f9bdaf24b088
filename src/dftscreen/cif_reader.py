"""Read CIF text robustly and build the full unit cell, whatever generator wrote it.

Two kinds of CIF reach us:

* **already expanded** (P1, or a full ``_symmetry_equiv_pos_as_xyz`` /
  ``_space_group_symop_operation_xyz`` loop; Materials Project, MatterGen,
  CifWriter output): pymatgen's :class:`~pymatgen.io.cif.CifParser` reads
  them as they are.
* **raw CrystaLLM / CrystaLLM-pi output**: only the asymmetric unit, a single
  ``'x, y, z'`` operator and the space group given by its Hermann-Mauguin
  symbol (sometimes also ``_symmetry_Int_Tables_number``). Read naively this
  gives the wrong composition (rutile TiO2 becomes TiO), so we replace the
  operator loop by every operator of the declared space group, which is what
  CrystaLLM's own post-processing does, and let pymatgen apply them.

A symmetry-operator loop with a line that is not an operator (``'x,y,z+0.5.5'``)
is refused, naming the line: pymatgen would silently drop the loop and use the
space-group symbol's operators. The atoms of the full cell are counted before it
is built, with the operators pymatgen will apply and its 1e-4 merging tolerance.

Tags and loops are read with pymatgen's :class:`~pymatgen.io.cif.CifFile`
after normalising line endings and indentation, so indented loops (as
CrystaLLM-pi writes them) cannot defeat the rebuild. Nothing in the CIF text is
evaluated or used as a path.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from pymatgen.core import DummySpecies, Structure
from pymatgen.core.operations import SymmOp
from pymatgen.io.cif import CifBlock, CifFile, CifParser
from pymatgen.symmetry.groups import SpaceGroup
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

#: Default largest input file we try to read (bytes). A 500 kB CIF already has
#: thousands of atoms, far beyond what our DFT can compute.
DEFAULT_MAX_FILE_BYTES = 500_000

#: Tags that can carry the declared Hermann-Mauguin symbol, in order of preference.
SYMBOL_TAGS = (
    "_symmetry_space_group_name_h-m",
    "_space_group_name_h-m_alt",
    "_space_group_name_h-m",
    "_symmetry_space_group_name_h-m_alt",
)
#: Tags that can carry the declared International Tables number.
NUMBER_TAGS = ("_symmetry_int_tables_number", "_space_group_it_number")
#: Tags that can carry the symmetry operators (loop columns).
SYMOP_TAGS = (
    "_symmetry_equiv_pos_as_xyz",
    "_space_group_symop_operation_xyz",
    "_space_group_symop.operation_xyz",
)
#: Companion id columns of those loops, removed together with them.
SYMOP_ID_TAGS = (
    "_symmetry_equiv_pos_site_id",
    "_space_group_symop_id",
    "_space_group_symop.id",
)

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


#: Default largest number of atoms in a full cell that is built and checked.
#: The checks' cost grows with the square of the atoms (a 7,584-atom cell took
#: 156 s and 2.4 GB); far beyond this no DFT preset here is affordable anyway.
DEFAULT_MAX_ATOMS = 500


class StructureReadError(ValueError):
    """Raised when a CIF cannot be turned into a structure; the message says why."""


class TooManyAtomsError(StructureReadError):
    """The full cell would have more atoms than allowed; ``n_atoms`` is the count found before building."""

    def __init__(self, message: str, n_atoms: int):
        super().__init__(message)
        self.n_atoms = n_atoms


def too_large_message(n_bytes: int, max_bytes: int) -> str:
    """Why a file of ``n_bytes`` bytes is refused (the same sentence whether or not it was read)."""
    return (
        f"file is {n_bytes / 1000:.0f} kB, larger than the {max_bytes / 1000:.0f} kB limit "
        "(check.max_file_bytes); a CIF that large is not a structure our DFT can compute"
    )


@dataclass
class CifTags:
    """What the CIF declares about itself, before any structure is built.

    Cell lengths in Å, angles in degrees, volume in Å³. ``None`` means absent or
    not a number.
    """

    data_name: str = ""
    space_group_symbol: str | None = None
    space_group_number: int | None = None
    formula_sum: str | None = None
    formula_structural: str | None = None
    cell_lengths_A: tuple[float | None, float | None, float | None] = (None, None, None)
    cell_angles_deg: tuple[float | None, float | None, float | None] = (None, None, None)
    volume_A3: float | None = None
    site_symbols: list[str] = field(default_factory=list)
    site_multiplicities: list[str] | None = None
    symmetry_operators: list[str] = field(default_factory=list)


@dataclass
class ReadResult:
    """A structure built from a CIF, with how it was built."""

    structure: Structure
    tags: CifTags
    rebuilt_from_asymmetric_unit: bool
    #: Space group whose operators were applied when rebuilding (pymatgen symbol).
    rebuild_space_group: str | None
    warnings: list[str]


def decode_cif_bytes(raw: bytes, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[str, list[str]]:
    """Turn file content into text; refuse what is clearly not a CIF.

    Returns the text and notes (e.g. that it was not UTF-8).

    Raises:
        StructureReadError: empty, too large or binary content.
    """
    if not raw.strip():
        raise StructureReadError("file is empty")
    if len(raw) > max_bytes:
        raise StructureReadError(too_large_message(len(raw), max_bytes))
    if b"\x00" in raw:
        raise StructureReadError("file is binary data (contains NUL bytes), not CIF text")
    notes = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Latin-1 maps every byte, so old CIFs with e.g. an accented author name still parse.
        text = raw.decode("latin-1")
        notes.append(f"file is not valid UTF-8 (byte {exc.start}); read as Latin-1")
    return text, notes


def normalise_cif_text(text: str) -> str:
    """Unify line endings and strip indentation outside semicolon text fields.

    CIF is whitespace-insensitive, but regex-based readers (CrystaLLM's) are
    not; normalising first makes indented and unindented files identical.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = []
    in_text_field = False
    for line in lines:
        if line.startswith(";"):
            in_text_field = not in_text_field
            out.append(line)
        elif in_text_field:
            out.append(line)
        else:
            out.append(line.strip())
    return "\n".join(out) + "\n"


def cif_number(value: object) -> float | None:
    """A CIF numeric value as float: standard uncertainty ``1.234(5)`` dropped; ``None`` if not a number."""
    if not isinstance(value, str):
        return None
    match = _NUMBER.match(value.strip())
    return float(match.group(0)) if match else None


def _first(data: dict[str, object], tags: tuple[str, ...]) -> object | None:
    for tag in tags:
        if tag in data:
            return data[tag]
    return None


def _text(value: object | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0] if value else ""
    text = str(value).strip().strip("'\"").strip()
    return text if text and text not in ("?", ".") else None


def read_tags(block: CifBlock) -> CifTags:
    """Collect the declared properties of one CIF block (tags matched case-insensitively)."""
    data = {key.lower(): value for key, value in block.data.items()}
    number = cif_number(_text(_first(data, NUMBER_TAGS)) or "")
    lengths = tuple(cif_number(_text(data.get(f"_cell_length_{x}")) or "") for x in "abc")
    angles = tuple(cif_number(_text(data.get(f"_cell_angle_{x}")) or "") for x in ("alpha", "beta", "gamma"))
    symbols = data.get("_atom_site_type_symbol") or data.get("_atom_site_label") or []
    multiplicities = data.get("_atom_site_symmetry_multiplicity")
    operators = _first(data, SYMOP_TAGS) or []
    return CifTags(
        data_name=block.header,
        space_group_symbol=_text(_first(data, SYMBOL_TAGS)),
        space_group_number=int(number) if number is not None and number == int(number) else None,
        formula_sum=_text(data.get("_chemical_formula_sum")),
        formula_structural=_text(data.get("_chemical_formula_structural")),
        cell_lengths_A=lengths,  # type: ignore[arg-type]
        cell_angles_deg=angles,  # type: ignore[arg-type]
        volume_A3=cif_number(_text(data.get("_cell_volume")) or ""),
        site_symbols=[str(s) for s in (symbols if isinstance(symbols, list) else [symbols])],
        site_multiplicities=(
            None
            if multiplicities is None
            else [str(m) for m in (multiplicities if isinstance(multiplicities, list) else [multiplicities])]
        ),
        symmetry_operators=[str(op) for op in (operators if isinstance(operators, list) else [operators])],
    )


@lru_cache(maxsize=1024)
def space_group_from_symbol(symbol: str) -> SpaceGroup | None:
    """pymatgen's space group for a Hermann-Mauguin symbol in any spacing; ``None`` if unknown.

    ``'P 1'``, ``'P1'``, ``'P 42/m n m'`` and ``'P4_2/mnm'`` are all understood.
    """
    candidates = [symbol, symbol.replace(" ", ""), re.sub(r"\s*:\s*\w+$", "", symbol)]
    for candidate in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return SpaceGroup(candidate)
        except Exception:  # pymatgen raises ValueError/KeyError for unknown symbols
            continue
    return None


@lru_cache(maxsize=256)
def space_group_from_number(number: int) -> SpaceGroup | None:
    """pymatgen's space group (standard setting) for an International Tables number; ``None`` if invalid."""
    if not 1 <= number <= 230:
        return None
    try:
        return SpaceGroup.from_int_number(number)
    except Exception:
        return None


@lru_cache(maxsize=1024)
def operator_strings(space_group: SpaceGroup) -> tuple[str, ...]:
    """Every symmetry operator of a space group as CIF ``'x, y, z'`` strings."""
    return tuple(op.as_xyz_str() for op in space_group.symmetry_ops)


def is_identity_only(operators: list[str]) -> bool:
    """True when the operator list is empty or only ``x, y, z`` (raw generator output)."""
    cleaned = [op.replace(" ", "").strip("'\"").lower() for op in operators]
    return all(op == "x,y,z" for op in cleaned)


def declared_space_group(tags: CifTags) -> tuple[SpaceGroup | None, str]:
    """The space group the file declares, preferring the symbol (it fixes the setting).

    Returns the group (or ``None``) and a note when symbol and number are
    unusable or disagree.
    """
    by_symbol = space_group_from_symbol(tags.space_group_symbol) if tags.space_group_symbol else None
    by_number = space_group_from_number(tags.space_group_number) if tags.space_group_number else None
    note = ""
    if tags.space_group_symbol and by_symbol is None:
        note = f"declared space-group symbol '{tags.space_group_symbol}' is not a known Hermann-Mauguin symbol"
        if by_number is not None:
            note += f"; using the declared number {tags.space_group_number} instead"
        return by_number, note
    if by_symbol is not None and by_number is not None and by_symbol.int_number != by_number.int_number:
        note = (
            f"declared symbol '{tags.space_group_symbol}' is group {by_symbol.int_number} "
            f"but the declared number is {tags.space_group_number}"
        )
    if tags.space_group_number is not None and by_number is None:
        note = f"declared space-group number {tags.space_group_number} is not between 1 and 230"
    return by_symbol or by_number, note


def _has_atoms(block: CifBlock) -> bool:
    lowered = {key.lower() for key in block.data}
    return bool(lowered & {"_atom_site_fract_x", "_atom_site_cartn_x"})


def parse_cif_block(text: str) -> CifBlock:
    """The data block of a CIF text that holds the structure, read by pymatgen.

    A file may carry blocks without atoms (e.g. a ``data_global`` block of
    publication details); the one block with atom sites is used. A file with
    several structures is refused: every structure needs its own row and id.

    Raises:
        StructureReadError: when pymatgen finds no data block, or several with atoms.
    """
    try:
        cif = CifFile.from_str(normalise_cif_text(text))
    except Exception as exc:  # pymatgen raises several types on malformed text
        raise StructureReadError(f"not a readable CIF: {str(exc).strip() or type(exc).__name__}") from exc
    if not cif.data:
        raise StructureReadError("no 'data_' block found: this is not CIF text")
    blocks = list(cif.data.values())
    with_atoms = [b for b in blocks if _has_atoms(b)]
    if len(with_atoms) > 1:
        names = ", ".join(f"data_{b.header}" for b in with_atoms[:5]) + (", ..." if len(with_atoms) > 5 else "")
        raise StructureReadError(
            f"the file holds {len(with_atoms)} structures (data blocks {names}); dftscreen reads one "
            "structure per file, so that each gets its own id and row: split it into one file per data_ block"
        )
    block = with_atoms[0] if with_atoms else blocks[0]
    if not block.data:
        raise StructureReadError("the CIF data block is empty")
    return block


#: pymatgen's CifParser defaults: images of sites closer than this on every fractional axis are one
#: site, and fractional coordinates this close (relative) to 1/3 or 2/3 are set to them first.
SITE_TOLERANCE = 1e-4


def _fractional_coordinates(block: CifBlock) -> np.ndarray | None:
    """The sites' fractional coordinates, 1/3 and 2/3 written with finite precision made exact (as pymatgen does).

    ``None`` when the block has no usable fractional coordinates.
    """
    data = {key.lower(): value for key, value in block.data.items()}
    columns = [data.get(f"_atom_site_fract_{x}") for x in "xyz"]
    if any(c is None for c in columns):
        return None
    columns = [c if isinstance(c, list) else [c] for c in columns]
    try:
        coords = np.array([[cif_number(v) for v in row] for row in zip(*columns)], dtype=float)
    except (TypeError, ValueError):
        return None
    if coords.size == 0 or not np.isfinite(coords).all():
        return None
    for ideal in (1 / 3, 2 / 3):
        coords = np.where(np.abs(coords / ideal - 1.0) <= SITE_TOLERANCE, ideal, coords)
    return coords


def distinct_points(points: np.ndarray) -> int:
    """How many points remain when points closer than :data:`SITE_TOLERANCE` on every axis are merged.

    ``points`` are fractional coordinates, periodic in the unit cell (0.99999 and 0 are one point).
    """
    wrapped = np.mod(points, 1.0)
    wrapped[wrapped >= 1.0] = 0.0  # np.mod(-1e-17, 1.0) is 1.0
    # Identical points first (exactly, on a 1e-7 grid), so a site on a high-symmetry position
    # does not give thousands of pairs; the tree then merges the near ones across grid lines.
    unique = np.unique(np.mod(np.round(wrapped * 1e7).astype(np.int64), 10**7), axis=0) / 1e7
    pairs = cKDTree(unique, boxsize=1.0).query_pairs(SITE_TOLERANCE, p=np.inf, output_type="ndarray")
    if len(pairs) == 0:
        return len(unique)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(unique), len(unique)))
    return int(connected_components(graph, directed=False)[0])


def expanded_site_count(block: CifBlock, operators: list[SymmOp]) -> int | None:
    """Atoms of the full cell: the distinct images of every site under ``operators``, as pymatgen merges them.

    Images within :data:`SITE_TOLERANCE` (fractional, on every axis) are one
    site, as in pymatgen's CifParser; one set for all sites, so a file listing
    every atom and every operator is not counted twice. Cheap (no structure, no
    neighbour list): sites times operators. ``None`` when the block has no usable
    fractional coordinates (then the structure is built and counted).
    """
    coords = _fractional_coordinates(block)
    if coords is None:
        return None
    if not operators:
        operators = [SymmOp.from_xyz_str("x, y, z")]
    rotations = np.array([op.rotation_matrix for op in operators])  # (n_ops, 3, 3)
    translations = np.array([op.translation_vector for op in operators])  # (n_ops, 3)
    images = np.einsum("oij,sj->soi", rotations, coords) + translations  # (n_sites, n_ops, 3)
    return distinct_points(images.reshape(-1, 3))


def parse_operator(text: str) -> SymmOp:
    """One ``'x, y, z'``-style symmetry operator, checked to be one.

    pymatgen's reader is lenient: ``'x,y'`` or ``'foo'`` become singular
    matrices, and one unreadable number makes it drop the file's whole operator
    list. Here an operator needs three comma-separated parts, readable numbers
    and a rotation part of determinant ±1 (every crystallographic operation has one).

    Raises:
        ValueError: why the text is not an operator.
    """
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError(f"it has {len(parts)} comma-separated part(s), not 3")
    try:
        operator = SymmOp.from_xyz_str(text)
    except Exception as exc:  # ValueError for '0.5.5', ZeroDivisionError for '1/0'
        raise ValueError(str(exc).strip() or type(exc).__name__) from exc
    if not np.isfinite(operator.affine_matrix).all():
        raise ValueError("it holds a number that is not finite")
    determinant = float(np.linalg.det(operator.rotation_matrix))
    if not np.isclose(abs(determinant), 1.0, atol=1e-6):
        raise ValueError(f"its rotation part has determinant {determinant:g}, not ±1")
    return operator


def file_operators(tags: CifTags) -> list[SymmOp]:
    """The file's own symmetry operators (its operator loop), every line checked by :func:`parse_operator`.

    Raises:
        StructureReadError: naming the first line that is not an operator. A file
            with a malformed operator list is refused: pymatgen would otherwise
            silently apply other operators (those of the space-group symbol) than
            the ones the atom count and the file itself describe.
    """
    operators = []
    total = len(tags.symmetry_operators)
    for number, text in enumerate(tags.symmetry_operators, start=1):
        stripped = text.strip().strip("'\"")
        try:
            operators.append(parse_operator(stripped))
        except ValueError as exc:
            raise StructureReadError(
                f"symmetry operator '{stripped}' (line {number} of {total} of the operator loop) is malformed: "
                f"{exc}; the full cell cannot be known from a malformed operator list, so the file is refused "
                "(pymatgen would silently build it with other operators)"
            ) from exc
    return operators


#: The operator-loop tags pymatgen's CifParser reads, in its order (exact case).
PYMATGEN_SYMOP_TAGS = (
    "_symmetry_equiv_pos_as_xyz",
    "_symmetry_equiv_pos_as_xyz_",
    "_space_group_symop_operation_xyz",
    "_space_group_symop_operation_xyz_",
)


def pymatgen_operators(parser: CifParser, block: CifBlock, tags: CifTags, listed: list[SymmOp]) -> list[SymmOp]:
    """The symmetry operators pymatgen's ``parser`` will apply to ``block`` when building it.

    ``listed`` (the file's own, from :func:`file_operators`) when pymatgen reads
    that same loop; otherwise pymatgen's own choice (its fallback to the
    space-group symbol or number, e.g. for a loop under a tag it does not read).
    """
    if not parser.feature_flags.get("magcif"):
        for label in PYMATGEN_SYMOP_TAGS:
            value = block.data.get(label)
            if value:
                if [str(v) for v in (value if isinstance(value, list) else [value])] == tags.symmetry_operators:
                    return listed
                break
    known = len(parser.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if parser.feature_flags.get("magcif"):
                return list(parser.get_magsymops(block))
            return list(parser.get_symops(block))
        finally:
            del parser.warnings[known:]  # building the structure asks again and notes them then


def with_operators(block: CifBlock, operators: tuple[str, ...]) -> CifBlock:
    """A copy of ``block`` whose symmetry-operator loop is ``operators``."""
    data = {k: v for k, v in block.data.items() if k.lower() not in SYMOP_TAGS + SYMOP_ID_TAGS}
    loops = [
        loop for loop in block.loops if not any(tag.lower() in SYMOP_TAGS + SYMOP_ID_TAGS for tag in loop)
    ]
    data["_symmetry_equiv_pos_site_id"] = [str(i) for i in range(1, len(operators) + 1)]
    data["_symmetry_equiv_pos_as_xyz"] = list(operators)
    loops.append(["_symmetry_equiv_pos_site_id", "_symmetry_equiv_pos_as_xyz"])
    return CifBlock(data, loops, block.header)


def _missing_element_message(block: CifBlock) -> str | None:
    """Name an unknown element symbol, if there is one, to explain a parse failure."""
    from pymatgen.core.periodic_table import Element

    for symbol in block.data.get("_atom_site_type_symbol", []) or []:
        letters = re.match(r"[A-Za-z]{1,2}", str(symbol))
        candidates = [letters.group(0), letters.group(0)[:1]] if letters else []
        if not any(Element.is_valid_symbol(c.capitalize()) for c in candidates):
            return f"unknown element symbol '{symbol}' in _atom_site_type_symbol"
    return None


def _refuse_unbuildable(block: CifBlock, tags: CifTags) -> None:
    """Refuse a cell with a length that is not positive, or a block without atom positions.

    Raises:
        StructureReadError: saying which.
    """
    for name, length in zip("abc", tags.cell_lengths_A):
        if length is not None and length <= 0:
            raise StructureReadError(f"cell length {name} = {length:g} Å: a cell needs positive lengths")
    lowered = {key.lower() for key in block.data}
    if not lowered & {"_atom_site_fract_x", "_atom_site_cartn_x"}:
        raise StructureReadError(
            "the CIF has no atom positions (no _atom_site_fract_x loop): nothing to build; "
            "the file may be truncated"
        )


def rebuild_group(tags: CifTags, notes: list[str]) -> SpaceGroup | None:
    """The space group whose operators rebuild raw generator output; ``None``: read the file as it is.

    Only a file with just the identity operator and a declared group other than
    P1 is rebuilt. Notes about the declared group are appended to ``notes``.

    Raises:
        StructureReadError: site multiplicities above 1 but no usable space group.
    """
    if not is_identity_only(tags.symmetry_operators):
        return None
    group, note = declared_space_group(tags)
    if note:
        notes.append(note)
    if group is not None and group.int_number != 1:
        return group
    if group is None and (tags.space_group_symbol or tags.space_group_number):
        if any((cif_number(m) or 1) > 1 for m in tags.site_multiplicities or []):
            raise StructureReadError(
                f"{note}: cannot rebuild the full cell from the asymmetric unit "
                "(site multiplicities > 1 but no usable space group)"
            )
    return None


def _pymatgen_failed(block: CifBlock, exc: Exception) -> StructureReadError:
    """The error for a CIF pymatgen could not read or build, naming an unknown element if that is why."""
    detail = _missing_element_message(block) or str(exc).strip() or type(exc).__name__
    return StructureReadError(f"pymatgen could not build a structure from the CIF: {detail}")


def refuse_too_many_atoms(
    block: CifBlock, operators: list[SymmOp], max_atoms: int, group_name: str | None
) -> None:
    """Count the full cell's atoms (:func:`expanded_site_count`) and refuse more than ``max_atoms``.

    ``group_name``: the group whose operators rebuild the asymmetric unit, if it is rebuilt.

    Raises:
        TooManyAtomsError: with the count and how it was found.
    """
    count = expanded_site_count(block, operators)
    if count is None or count <= max_atoms:
        return
    how = (
        f"the asymmetric unit expanded with the {len(operators)} operators of {group_name}"
        if group_name
        else f"{len(operators) or 1} symmetry operator(s) applied to the listed sites"
    )
    raise TooManyAtomsError(
        f"the full cell has {count} atoms ({how}), more than check.max_atoms = {max_atoms}: "
        "refused before building it (checking it would take minutes and gigabytes, DFT far more)",
        count,
    )


def build_structure(block: CifBlock, tags: CifTags, max_atoms: int | None = None) -> ReadResult:
    """Build the full unit cell from a parsed CIF block.

    A file with only the identity operator and a declared space group other
    than P1 is rebuilt with all operators of that group (site positions that
    coincide after applying them are merged by pymatgen within 1e-4 fractional).
    A file whose operator loop has a line that is not an operator is refused,
    naming the line (:func:`file_operators`).

    With ``max_atoms``, the atoms of the full cell are counted first, with the
    operators pymatgen will apply (see :func:`pymatgen_operators` and
    :func:`expanded_site_count`), and a larger cell is refused before pymatgen builds it.

    Raises:
        TooManyAtomsError: the full cell would have more than ``max_atoms`` atoms.
        StructureReadError: with a sentence a student understands.
    """
    notes: list[str] = []
    _refuse_unbuildable(block, tags)
    listed = file_operators(tags)
    group = rebuild_group(tags, notes)
    group_name = group.symbol if group is not None else None
    to_parse = with_operators(block, operator_strings(group)) if group is not None else block
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if max_atoms is not None and group is not None:
            # A rebuilt file's loop is exactly the group's operators (written by with_operators).
            refuse_too_many_atoms(block, list(group.symmetry_ops), max_atoms, group_name)
        try:
            parser = CifParser.from_str(str(to_parse))
            count_listed = max_atoms is not None and group is None
            operators = pymatgen_operators(parser, to_parse, tags, listed) if count_listed else []
        except Exception as exc:  # pymatgen raises many types for bad CIFs
            raise _pymatgen_failed(block, exc) from exc
        if max_atoms is not None and count_listed:
            refuse_too_many_atoms(block, operators, max_atoms, None)
        try:
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:  # pymatgen raises many types for bad CIFs
            raise _pymatgen_failed(block, exc) from exc
    messages = notes + sorted({str(w.message) for w in caught})
    if not structures:
        raise StructureReadError("no structure could be built from the CIF")
    structure = structures[0]
    if len(structure) == 0:
        raise StructureReadError("the CIF contains no atoms")
    if max_atoms is not None and len(structure) > max_atoms:
        raise TooManyAtomsError(
            f"the full cell has {len(structure)} atoms, more than check.max_atoms = {max_atoms}", len(structure)
        )
    unknown = sorted({sp.symbol for sp in structure.composition if isinstance(sp, DummySpecies)})
    if unknown:
        raise StructureReadError(f"unknown element symbol(s) {', '.join(unknown)}: not in the periodic table")
    return ReadResult(structure, tags, group is not None, group_name, messages)


def read_cif_text(text: str, max_atoms: int | None = None) -> ReadResult:
    """Parse CIF text and build its full unit cell (see :func:`build_structure`)."""
    block = parse_cif_block(text)
    return build_structure(block, read_tags(block), max_atoms)


def read_bounded(path: str | Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of a file, refusing a file larger than ``max_file_bytes`` before reading it.

    Raises:
        StructureReadError: the file cannot be read or is too large.
    """
    try:
        size = Path(path).stat().st_size
        if size > max_file_bytes:
            raise StructureReadError(too_large_message(size, max_file_bytes))
        with open(path, "rb") as handle:
            # Read at most one byte more than allowed: a file growing meanwhile is still caught.
            return handle.read(max_file_bytes + 1)
    except OSError as exc:
        raise StructureReadError(f"cannot read file: {exc.strerror}") from exc


def read_structure(path: str | Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[Structure, list[str]]:
    """Read the full unit cell of the first structure in a CIF file.

    Raw CrystaLLM output (asymmetric unit, one ``'x, y, z'`` operator) is
    rebuilt from its declared space group; expanded CIFs are read as they are
    (see :func:`build_structure`). Returns the structure and warnings as text.

    Raises:
        StructureReadError: with a sentence a student understands.
    """
    result, notes = read_file(path, max_file_bytes)
    messages = notes + result.warnings
    if result.rebuilt_from_asymmetric_unit:
        messages.insert(0, f"rebuilt from the asymmetric unit with the operators of {result.rebuild_space_group}")
    return result.structure, messages


def read_file(path: str | Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[ReadResult, list[str]]:
    """Read and build one CIF file; returns the build result and decoding notes."""
    raw = read_bounded(path, max_file_bytes)
    text, notes = decode_cif_bytes(raw, max_file_bytes)
    return read_cif_text(text), notes
