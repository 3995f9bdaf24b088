"""Parse a CIF and decide whether the structure is sane enough for DFT.

A structure is *invalid* (and goes no further) when pymatgen cannot build a
structure from the file, when it is disordered (partial occupancies cannot be
computed by our DFT), when two atoms are closer than ``min_distance_A``, or when
an element has no PAW dataset in the installed GPAW data. Everything else is
*valid* and is passed to the relaxation.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from dftscreen.inputs import InputFile

#: Default smallest allowed distance between two atoms (Å). Real bonds are
#: longer than ~0.74 Å (H2); anything much shorter is a generation artefact.
DEFAULT_MIN_DISTANCE_A = 0.5
#: Default spglib tolerance (Å), the value CrystaLLM's evaluation uses.
DEFAULT_SYMPREC_A = 0.1


class StructureReadError(ValueError):
    """Raised when a CIF cannot be turned into a structure; the message says why."""


@dataclass
class CheckResult:
    """Outcome of :func:`check_structure_file` for one input file.

    Distances are in Å, volumes in Å³, densities in g/cm³.
    """

    structure_id: str
    source_file: str
    valid: bool
    reason: str = ""
    id_note: str = ""
    reduced_formula: str | None = None
    n_sites: int | None = None
    spacegroup_symbol: str | None = None
    spacegroup_number: int | None = None
    min_distance_A: float | None = None
    volume_A3: float | None = None
    density_g_cm3: float | None = None
    parse_warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_structure(path: str | Path) -> tuple[Structure, list[str]]:
    """Read the first structure of a CIF file with pymatgen.

    Symmetry operators in the file are applied, so the returned structure is the
    full unit cell. Returns the structure and pymatgen's warnings as text.

    Raises:
        StructureReadError: with a sentence a student understands.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise StructureReadError(f"cannot read file: {exc.strerror}") from exc
    if not text.strip():
        raise StructureReadError("file is empty")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser = CifParser.from_str(text)
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:  # pymatgen raises many types for bad CIFs
            detail = str(exc).strip() or type(exc).__name__
            raise StructureReadError(f"pymatgen could not parse the CIF: {detail}") from exc
    messages = sorted({str(w.message) for w in caught})
    if not structures:
        raise StructureReadError("no structure could be built from the CIF")
    structure = structures[0]
    if len(structure) == 0:
        raise StructureReadError("the CIF contains no atoms")
    return structure, messages


def min_interatomic_distance(structure: Structure) -> float:
    """Smallest distance between two atoms, periodic images included (Å).

    For a one-atom cell this is the shortest lattice translation.
    """
    if len(structure) == 1:
        # Distance to the atom's own periodic images: the shortest lattice vector.
        lattice = structure.lattice
        neighbors = structure.get_neighbors(structure[0], r=max(lattice.abc) + 0.1)
        return float(min(n.nn_distance for n in neighbors))
    dm = structure.distance_matrix.copy()
    np.fill_diagonal(dm, np.inf)
    return float(dm.min())


def spacegroup(structure: Structure, symprec: float = DEFAULT_SYMPREC_A) -> tuple[str, int]:
    """Space group (Hermann-Mauguin symbol, number) that spglib finds at ``symprec`` (Å)."""
    analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
    return analyzer.get_space_group_symbol(), int(analyzer.get_space_group_number())


def check_structure_file(
    item: InputFile,
    min_distance_A: float = DEFAULT_MIN_DISTANCE_A,
    symprec: float = DEFAULT_SYMPREC_A,
    available_elements: set[str] | None = None,
) -> CheckResult:
    """Parse and check one input file; never raises for bad input.

    Args:
        item: the input file and its structure id.
        min_distance_A: atoms closer than this (Å) make the structure invalid.
        symprec: spglib tolerance (Å) for the reported space group.
        available_elements: elements with a PAW dataset; ``None`` skips that check.
    """
    result = CheckResult(
        structure_id=item.structure_id,
        source_file=item.relative_path,
        valid=False,
        id_note=item.id_note,
    )
    try:
        structure, messages = read_structure(item.path)
    except StructureReadError as exc:
        result.reason = str(exc)
        return result
    result.parse_warnings = messages
    result.n_sites = len(structure)
    result.reduced_formula = structure.composition.reduced_formula
    result.volume_A3 = float(structure.volume)
    result.density_g_cm3 = float(structure.density)

    if not structure.is_ordered:
        result.reason = (
            "structure is disordered (partial site occupancies); "
            "DFT needs every site fully occupied by one element"
        )
        return result
    result.min_distance_A = min_interatomic_distance(structure)
    if result.min_distance_A < min_distance_A:
        result.reason = (
            f"atoms are {result.min_distance_A:.3f} Å apart, closer than the "
            f"{min_distance_A} Å allowed: physically impossible"
        )
        return result
    try:
        result.spacegroup_symbol, result.spacegroup_number = spacegroup(structure, symprec)
    except Exception as exc:  # spglib can fail on degenerate cells
        result.reason = f"spglib could not determine the symmetry: {exc}"
        return result
    if available_elements is not None:
        missing = sorted({el.symbol for el in structure.composition} - available_elements)
        if missing:
            result.reason = (
                f"no PAW dataset installed for {', '.join(missing)}: GPAW cannot compute it"
            )
            return result
    result.valid = True
    return result


def check_all(
    items: list[InputFile],
    min_distance_A: float = DEFAULT_MIN_DISTANCE_A,
    symprec: float = DEFAULT_SYMPREC_A,
    available_elements: set[str] | None = None,
) -> list[CheckResult]:
    """Check every input file; one result per file, in input order."""
    return [
        check_structure_file(item, min_distance_A, symprec, available_elements)
        for item in items
    ]
