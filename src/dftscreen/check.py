"""Check every input structure and give two verdicts: CrystaLLM's validity and readiness for DFT.

Each check is its own column of the results table (boolean or score; ``None``
means *not applicable*, e.g. a formula tag the file does not have):

``cell_sensible``            lengths and angles in a sensible range (CrystaLLM: 0.5-1000 Å, 10-170°)
``formula_consistent``       data_ name (if it is a formula), _chemical_formula_sum and
                             _chemical_formula_structural reduce to the same formula as the built structure
``multiplicity_consistent``  site multiplicities summed per element equal the _chemical_formula_sum counts
``spacegroup_consistent``    declared group number equals the one spglib finds at ``symprec``
``bond_length_score``        fraction of CrystalNN bonds with a reasonable length (see :mod:`dftscreen.bonds`)
``ordered``, ``min_distance_A``, ``paw_available``, declared/implied/built volumes

Verdicts:

``crystallm_valid``  CrystaLLM's metric (arXiv 2307.04340): formula, multiplicity,
                     bond score ≥ cutoff and space group all pass (not applicable = pass).
``dft_ready``        the gate for DFT: it parses, the cell is sensible, the built
                     composition matches the declared formula, it is ordered, no two
                     atoms are closer than ``min_distance_A`` and every element has a PAW
                     dataset. Bond score and space group gate only if the settings say so.

``valid`` (goes to DFT) is ``dft_ready``; deduplication (:mod:`dftscreen.dedupe`)
may later turn a ``dft_ready`` structure into a duplicate.

This module checks one file; reading lives in :mod:`dftscreen.cif_reader` and
the parallel batch over many files (with byte-identical twins and dedupe) in
:mod:`dftscreen.check_batch`.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.core.periodic_table import get_el_sp
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer, SymmetryUndeterminedError
from spglib import SpglibError

from dftscreen import status_codes
from dftscreen.bonds import DEFAULT_H_FACTOR, DEFAULT_TOLERANCE, bond_length_score
from dftscreen.cif_reader import (
    DEFAULT_MAX_ATOMS,
    DEFAULT_MAX_FILE_BYTES,
    CifTags,
    ReadResult,
    StructureReadError,
    TooManyAtomsError,
    cif_number,
    declared_space_group,
    decode_cif_bytes,
    read_bounded,
    read_cif_text,
)
from dftscreen.columns import INPUT_PREFIX, is_results_column
from dftscreen.inputs import InputFile
from dftscreen.size_gate import GateSettings, cell_only_estimate, estimate_structure, route

__all__ = [
    "CheckResult",
    "CheckSettings",
    "StructureReadError",
    "check_structure_file",
    "check_text",
    "min_interatomic_distance",
    "spacegroup",
]

#: Default smallest allowed distance between two atoms (Å). Real bonds are
#: longer than ~0.74 Å (H2); anything much shorter is a generation artefact.
DEFAULT_MIN_DISTANCE_A = 0.5
#: Default spglib tolerance (Å), the value CrystaLLM's evaluation uses.
DEFAULT_SYMPREC_A = 0.1


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds of the checks (config section ``check``). Lengths in Å, angles in degrees."""

    min_distance_A: float = DEFAULT_MIN_DISTANCE_A
    symprec_A: float = DEFAULT_SYMPREC_A
    cell_length_min_A: float = 0.5
    cell_length_max_A: float = 1000.0
    cell_angle_min_deg: float = 10.0
    cell_angle_max_deg: float = 170.0
    bond_tolerance: float = DEFAULT_TOLERANCE
    bond_h_factor: float = DEFAULT_H_FACTOR
    #: CrystaLLM's cutoff for crystallm_valid: every bond must be reasonable.
    bond_score_cutoff: float = 1.0
    #: If set, dft_ready also needs bond_length_score >= this value.
    dft_min_bond_score: float | None = None
    #: If true, dft_ready also needs the declared space group to be found.
    dft_require_spacegroup_match: bool = False
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    #: Most atoms in the full cell; larger cells are refused before they are built.
    max_atoms: int = DEFAULT_MAX_ATOMS
    #: Wall-clock limit (s) of one file's check in a worker process (dftscreen.check_batch);
    #: a file over it gets a row saying so. Files checked in the calling process have none.
    max_seconds_per_file: float = 60.0
    #: A gap between atomic planes wider than this (Å) along a cell axis is
    #: vacuum: a note (slab, wire, molecule in a box), not a failure.
    vacuum_gap_A: float = 7.0
    #: Cost gate before DFT (:mod:`dftscreen.size_gate`), set by the workflow
    #: from the DFT preset and dft.resources; ``None``: no gate. Not a check key.
    size_gate: GateSettings | None = None
    #: The gate of each structure whose ``dft.structure_overrides`` change what it reads, by id.
    #: Not a check key.
    structure_size_gates: Mapping[str, GateSettings] = field(default_factory=dict)
    #: Gate with :func:`dftscreen.size_gate.cell_only_estimate`, as a results folder does whose packs
    #: started with it (:func:`dftscreen.size_gate.keeps_cell_only_estimates`). Not a check key.
    size_gate_cell_only: bool = False
    #: Slow reference path for tests and benchmarks: pymatgen's CrystalNN per
    #: site, pairwise StructureMatcher on unreduced structures, and every file
    #: checked even when byte-identical to another. Not a config key.
    reference_algorithms: bool = False

    @classmethod
    def from_config(cls, check_config: dict[str, Any]) -> CheckSettings:
        """Settings from the ``check`` section of the workflow config (unknown keys ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in check_config.items() if k in known})


def with_size_gate(
    settings: CheckSettings, params: Mapping[str, Any] | None, *, cell_only: bool = False
) -> CheckSettings:
    """``settings`` with the size gate of the check rule's params (no params: no gate).

    The params (:meth:`dftscreen.plan.RunPlan.check_size_gate_params`) hold the run's merged DFT settings
    and ``dft.resources``, and under ``structure_overrides`` those of each structure whose
    ``dft.structure_overrides`` change what the gate reads. ``cell_only``: the estimate a results folder
    keeps (:func:`dftscreen.size_gate.keeps_cell_only_estimates`), with the run's settings for every
    structure, as then.
    """
    if not params:
        return settings
    overridden = {} if cell_only else params.get("structure_overrides") or {}
    return replace(
        settings,
        size_gate=GateSettings.from_dft_settings(params["settings"], params["resources"]),
        structure_size_gates={
            sid: GateSettings.from_dft_settings(own["settings"], own["resources"]) for sid, own in overridden.items()
        },
        size_gate_cell_only=cell_only,
    )


@dataclass
class CheckResult:
    """Outcome of the checks for one input file.

    Distances in Å, volumes in Å³, densities in g/cm³. ``None`` in a check
    column means the check was not applicable or could not be computed.
    """

    structure_id: str
    source_file: str
    valid: bool
    status: str = ""
    reason: str = ""
    id_note: str = ""
    reduced_formula: str | None = None
    n_sites: int | None = None
    rebuilt_from_asymmetric_unit: bool | None = None
    declared_spacegroup_symbol: str | None = None
    declared_spacegroup_number: int | None = None
    spacegroup_symbol: str | None = None
    spacegroup_number: int | None = None
    cell_sensible: bool | None = None
    formula_consistent: bool | None = None
    multiplicity_consistent: bool | None = None
    spacegroup_consistent: bool | None = None
    bond_length_score: float | None = None
    n_bonds: int | None = None
    ordered: bool | None = None
    min_distance_A: float | None = None
    paw_available: bool | None = None
    volume_declared_A3: float | None = None
    volume_implied_A3: float | None = None
    volume_generated_A3: float | None = None
    volume_per_formula_unit_A3: float | None = None
    density_generated_g_cm3: float | None = None
    crystallm_valid: bool = False
    crystallm_reason: str = ""
    dft_ready: bool = False
    check_notes: str = ""
    duplicate_of: str | None = None
    #: Estimated memory per MPI rank (MB) and wall time (min) of the structure's DFT, and the
    #: resources it goes with: policy, enlarged or refused (see dftscreen.size_gate).
    dft_estimate_mem_MB_per_rank: float | None = None
    dft_estimate_runtime_min: float | None = None
    dft_resources: str | None = None
    parse_warnings: list[str] = field(default_factory=list)
    #: Columns carried over from a table input (CSV/Parquet), by column name.
    input_columns: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """All fields, table-input columns flattened in.

        All but ``valid`` and ``parse_warnings`` become table columns. A table-input
        column named like a results-table column (:func:`dftscreen.columns.is_results_column`)
        is stored as ``input_<name>``.
        """
        record = asdict(self)
        columns = record.pop("input_columns")
        for name, value in columns.items():
            # A table column named like any results-table column (a check field, a DFT, ML, known-set,
            # target, verdict or cohort column; or like another's prefixed name) gets the prefix input_: it is
            # never shown as, nor overwritten by, a computed value.
            key = name
            while key in record or is_results_column(key) or (key != name and key in columns):
                key = f"{INPUT_PREFIX}{key}"
            record[key] = value
        return record


# --------------------------------------------------------------------------- single checks


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


def cell_problems(tags: CifTags, structure: Structure | None, settings: CheckSettings) -> list[str]:
    """Why the cell is not sensible (empty list: it is). Uses declared values, else the built lattice."""
    lengths = list(tags.cell_lengths_A)
    angles = list(tags.cell_angles_deg)
    if structure is not None:
        lengths = [x if x is not None else y for x, y in zip(lengths, structure.lattice.abc)]
        angles = [x if x is not None else y for x, y in zip(angles, structure.lattice.angles)]
    problems = []
    for name, value in zip("abc", lengths):
        if value is None:
            problems.append(f"cell length {name} is missing")
        elif not settings.cell_length_min_A <= value <= settings.cell_length_max_A:
            problems.append(
                f"cell length {name} = {value:g} Å is outside "
                f"{settings.cell_length_min_A:g}-{settings.cell_length_max_A:g} Å"
            )
    for name, value in zip(("alpha", "beta", "gamma"), angles):
        if value is None:
            problems.append(f"cell angle {name} is missing")
        elif not settings.cell_angle_min_deg <= value <= settings.cell_angle_max_deg:
            problems.append(
                f"cell angle {name} = {value:g}° is outside "
                f"{settings.cell_angle_min_deg:g}-{settings.cell_angle_max_deg:g}°"
            )
    return problems


def formula_or_none(text: str | None) -> Composition | None:
    """A composition from formula text, or ``None`` if it is not a chemical formula."""
    if not text:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            composition = Composition(text)
        if composition.num_atoms <= 0 or not all(el.Z > 0 for el in composition.elements):
            return None
        return composition
    except Exception:  # not a formula (e.g. a data_ name like 'mp-1234')
        return None


def declared_formulas(tags: CifTags) -> dict[str, Composition | None]:
    """The formulas a CIF declares: name -> composition (``None``: present but not a formula)."""
    found: dict[str, Composition | None] = {}
    if tags.formula_sum:
        found["_chemical_formula_sum"] = formula_or_none(tags.formula_sum)
    if tags.formula_structural:
        found["_chemical_formula_structural"] = formula_or_none(tags.formula_structural)
    return found


def formula_problems(tags: CifTags, structure: Structure, include_data_name: bool) -> list[str]:
    """Why declared formulas disagree with each other or with the built structure (empty: consistent)."""
    built = structure.composition.reduced_formula
    problems = []
    formulas = declared_formulas(tags)
    if include_data_name:
        name_formula = formula_or_none(tags.data_name)
        if name_formula is not None:
            formulas["data_ name"] = name_formula
    for source, composition in formulas.items():
        if composition is None:
            problems.append(f"{source} is not a chemical formula")
        elif composition.reduced_formula != built:
            problems.append(f"{source} says {composition.reduced_formula} but the structure built is {built}")
    return problems


def element_symbol(label: str) -> str:
    """The element of a site's type symbol, oxidation state dropped (``Fe2+`` -> ``Fe``); else the label."""
    try:
        species = get_el_sp(label.strip())
        return getattr(species, "element", species).symbol  # Species Fe2+ -> Element Fe
    except Exception:  # not an element: compared as written, which reports the mismatch
        element = formula_or_none(label)
        return element.elements[0].symbol if element is not None and len(element.elements) == 1 else label


#: Empty width (Å) a gap must leave between the van der Waals spheres of the atoms around it to
#: count as vacuum. Layers held by dispersion sit with their outer atoms' spheres about touching
#: (free width ~0); PBE, which lacks dispersion, opens such gaps by about 1 Å (graphite's layer
#: distance 4.4 Å in PBE against 3.35 Å measured): 3 Å of free width is no van der Waals gap.
VACUUM_MIN_FREE_WIDTH_A = 3.0


@dataclass(frozen=True)
class VacuumGap:
    """The widest empty slab between atomic planes along one cell axis."""

    axis: str
    #: Distance (Å) between the planes of the atom centres on either side.
    width_A: float
    #: ``width_A`` less the van der Waals radii reaching into it from both sides (Å).
    free_width_A: float


def _van_der_waals_radius_A(symbol: str) -> float:
    """pymatgen's tabulated van der Waals radius (Å; Bondi's and Mantina et al.'s values); 2 Å when it has none."""
    from pymatgen.core import Element

    try:
        return float(Element(symbol).van_der_waals_radius or 2.0)
    except (ValueError, AttributeError):
        return 2.0


def vacuum_gaps(structure: Structure) -> list[VacuumGap]:
    """The gap with the most free width along each cell axis a, b, c, periodic.

    Along axis i the atoms are projected on the normal of the planes spanned by the other
    two axes (height = fractional coordinate i x the plane spacing, cell volume / their
    cross-product's length). Each gap between consecutive heights is an empty slab with no
    atom centre in it. Its free width subtracts how far the van der Waals sphere of any atom
    reaches into it from below and from above, so a gap between layers whose outer atoms
    touch (a van der Waals gap) has a free width near 0. A bond crossing a slab is at least
    as long as the slab is wide, so no bond crosses a gap whose free width is positive.
    """
    matrix = structure.lattice.matrix
    fractional = np.mod(structure.frac_coords, 1.0)
    # A disordered site (partial occupancies) takes its largest species' radius.
    radii = np.array([max(_van_der_waals_radius_A(sp.symbol) for sp in site.species) for site in structure])
    gaps = []
    for axis in range(3):
        j, k = (axis + 1) % 3, (axis + 2) % 3
        period = abs(structure.volume) / float(np.linalg.norm(np.cross(matrix[j], matrix[k])))
        heights = fractional[:, axis] * period
        order = np.argsort(heights)
        sorted_heights = heights[order]
        widths = np.diff(np.append(sorted_heights, sorted_heights[0] + period))
        best = VacuumGap("abc"[axis], 0.0, -math.inf)
        for index in np.argsort(widths)[::-1]:
            width = float(widths[index])
            if width <= best.free_width_A:
                break  # the free width never exceeds the width: no narrower gap can do better
            bottom = sorted_heights[index]
            below = np.mod(bottom - heights, period)  # distance of each atom under the gap's floor
            above = np.mod(heights - (bottom + width), period)  # ... over its ceiling
            free = width - max(0.0, float(np.max(radii - below))) - max(0.0, float(np.max(radii - above)))
            if free > best.free_width_A:
                best = VacuumGap("abc"[axis], width, free)
        gaps.append(best)
    return gaps


def vacuum_note(structure: Structure, threshold_A: float) -> str:
    """A check note when the cell holds vacuum: slab, wire or molecule; else ``""``.

    A gap is vacuum when its width between atom centres exceeds ``threshold_A`` (Å,
    ``check.vacuum_gap_A``) and it leaves more than :data:`VACUUM_MIN_FREE_WIDTH_A` of free
    width beyond the van der Waals spheres around it (:func:`vacuum_gaps`): the gap between
    the layers of a layered crystal is not vacuum, however wide PBE or a generator made it.
    """
    axes = [gap for gap in vacuum_gaps(structure)
            if gap.width_A > threshold_A and gap.free_width_A > VACUUM_MIN_FREE_WIDTH_A]
    if not axes:
        return ""
    where = ", ".join(f"{gap.width_A:.1f} Å along {gap.axis}" for gap in axes)
    kind = {1: "a slab (2D layer)", 2: "a wire or chain (1D)", 3: "a molecule or cluster in a box (0D)"}[len(axes)]
    free = ", ".join(f"{gap.free_width_A:.1f} Å" for gap in axes)
    return (
        f"vacuum: {where} (wider than check.vacuum_gap_A = {threshold_A:g} Å, and {free} wider than "
        f"the van der Waals contact of the atoms around it): looks like {kind}, not a bulk "
        "crystal; DFT would pay for the empty space and the bulk properties do not apply"
    )


def multiplicity_problem(tags: CifTags) -> tuple[bool | None, str]:
    """Compare site multiplicities summed per element with _chemical_formula_sum.

    Returns (consistent or ``None`` if not applicable, explanation).
    """
    expected = formula_or_none(tags.formula_sum)
    if tags.site_multiplicities is None or expected is None:
        return None, ""
    if len(tags.site_multiplicities) != len(tags.site_symbols):
        return False, "site multiplicity column has a different length than the site list"
    counted: dict[str, float] = {}
    for symbol, text in zip(tags.site_symbols, tags.site_multiplicities):
        value = cif_number(text)
        if value is None:
            return False, f"site multiplicity '{text}' is not a number"
        key = element_symbol(symbol)
        counted[key] = counted.get(key, 0.0) + value
    wanted = {el.symbol: amount for el, amount in expected.items()}
    same = set(counted) == set(wanted) and all(math.isclose(counted[k], wanted[k], abs_tol=1e-6) for k in wanted)
    if same:
        return True, ""
    written = " ".join(f"{k}{v:g}" for k, v in counted.items())
    return False, f"site multiplicities add up to {written}, but _chemical_formula_sum is {tags.formula_sum}"


def implied_volume_A3(tags: CifTags) -> float | None:
    """Cell volume implied by the declared lengths and angles (Å³); ``None`` if they are incomplete."""
    values = [*tags.cell_lengths_A, *tags.cell_angles_deg]
    if any(v is None for v in values):
        return None
    try:
        volume = Lattice.from_parameters(*values).volume  # type: ignore[arg-type]
    except Exception:
        return None
    return float(volume) if np.isfinite(volume) else None


# --------------------------------------------------------------------------- one file


def check_read_result(
    result: CheckResult,
    read: ReadResult,
    settings: CheckSettings,
    available_elements: set[str] | None,
) -> CheckResult:
    """Fill ``result`` with every check and both verdicts for a built structure."""
    structure, tags = read.structure, read.tags
    dft_problems: list[str] = []
    crystallm_problems: list[str] = []
    result.rebuilt_from_asymmetric_unit = read.rebuilt_from_asymmetric_unit
    result.n_sites = len(structure)
    result.reduced_formula = structure.composition.reduced_formula
    result.volume_generated_A3 = float(structure.volume)
    result.volume_per_formula_unit_A3 = float(
        structure.volume / structure.composition.get_reduced_composition_and_factor()[1]
    )
    result.density_generated_g_cm3 = float(structure.density)
    result.volume_declared_A3 = tags.volume_A3
    result.volume_implied_A3 = implied_volume_A3(tags)
    result.declared_spacegroup_symbol = tags.space_group_symbol
    declared_group, _ = declared_space_group(tags)
    result.declared_spacegroup_number = (
        declared_group.int_number if declared_group is not None else tags.space_group_number
    )

    cell = cell_problems(tags, structure, settings)
    result.cell_sensible = not cell
    dft_problems += cell
    crystallm_problems += cell

    # CrystaLLM's formula check includes the data_ name; DFT only needs the explicit formula tags.
    crystallm_formula = formula_problems(tags, structure, include_data_name=True)
    result.formula_consistent = (
        None if not (declared_formulas(tags) or formula_or_none(tags.data_name)) else not crystallm_formula
    )
    crystallm_problems += crystallm_formula
    dft_problems += formula_problems(tags, structure, include_data_name=False)

    result.multiplicity_consistent, multiplicity_note = multiplicity_problem(tags)
    if multiplicity_note:
        crystallm_problems.append(multiplicity_note)

    result.ordered = bool(structure.is_ordered)
    if not result.ordered:
        dft_problems.append(
            "structure is disordered (partial site occupancies); DFT needs every site fully occupied by one element"
        )
        # Bonds and symmetry of a disordered structure are not what CrystaLLM scores.
        crystallm_problems.append("structure is disordered")
    else:
        result.min_distance_A = min_interatomic_distance(structure)
        if result.min_distance_A < settings.min_distance_A:
            dft_problems.append(
                f"atoms are {result.min_distance_A:.3f} Å apart, closer than the "
                f"{settings.min_distance_A} Å allowed: physically impossible"
            )
        try:
            result.spacegroup_symbol, result.spacegroup_number = spacegroup(structure, settings.symprec_A)
        except (SpglibError, SymmetryUndeterminedError) as exc:  # spglib can fail on degenerate cells
            crystallm_problems.append(f"spglib could not determine the symmetry: {exc}")
        if result.declared_spacegroup_number is not None and result.spacegroup_number is not None:
            result.spacegroup_consistent = result.declared_spacegroup_number == result.spacegroup_number
            if not result.spacegroup_consistent:
                crystallm_problems.append(
                    f"declared space group {tags.space_group_symbol or ''} ({result.declared_spacegroup_number}) "
                    f"but spglib finds {result.spacegroup_symbol} ({result.spacegroup_number}) "
                    f"at symprec {settings.symprec_A} Å"
                )
        bonds = bond_length_score(
            structure,
            settings.bond_tolerance,
            settings.bond_h_factor,
            use_pymatgen_crystalnn=settings.reference_algorithms,
        )
        result.bond_length_score, result.n_bonds = bonds.score, bonds.n_bonds
        if bonds.note:
            crystallm_problems.append(f"bond-length score: {bonds.note}")
        if bonds.score is not None and bonds.score < settings.bond_score_cutoff:
            crystallm_problems.append(
                f"bond-length score {bonds.score:.2f} below {settings.bond_score_cutoff:g} "
                f"({bonds.n_bonds - bonds.n_reasonable} of {bonds.n_bonds} bonds outside "
                f"1 ± {settings.bond_tolerance:g} of the expected length)"
            )

    if available_elements is not None:
        missing = sorted({el.symbol for el in structure.composition.elements} - available_elements)
        result.paw_available = not missing
        if missing:
            dft_problems.append(f"no PAW dataset installed for {', '.join(missing)}: GPAW cannot compute it")

    if settings.dft_min_bond_score is not None and (
        result.bond_length_score is None or result.bond_length_score < settings.dft_min_bond_score
    ):
        dft_problems.append(
            f"bond-length score {result.bond_length_score} below check.dft_min_bond_score "
            f"{settings.dft_min_bond_score:g}"
        )
    if settings.dft_require_spacegroup_match and result.spacegroup_consistent is False:
        dft_problems.append("declared space group not found by spglib (check.dft_require_spacegroup_match)")

    result.crystallm_valid = not crystallm_problems
    result.crystallm_reason = "; ".join(crystallm_problems)
    result.dft_ready = not dft_problems
    result.valid = result.dft_ready
    result.status = "" if result.valid else status_codes.INVALID
    result.reason = "; ".join(dft_problems)
    gate = settings.structure_size_gates.get(result.structure_id, settings.size_gate)
    if result.dft_ready and gate is not None:
        apply_size_gate(result, structure, gate, cell_only=settings.size_gate_cell_only)
    notes = [w for w in read.warnings if "declared" in w]
    vacuum = vacuum_note(structure, settings.vacuum_gap_A)
    if vacuum:
        notes.append(vacuum)
    if read.rebuilt_from_asymmetric_unit:
        notes.insert(0, f"rebuilt from the asymmetric unit with the operators of {read.rebuild_space_group}")
    result.check_notes = "; ".join(notes)
    return result


def apply_size_gate(result: CheckResult, structure: Structure, gate: GateSettings, cell_only: bool = False) -> None:
    """Estimate the DFT cost of a dft_ready structure; refuse it (status too_large) when it exceeds the limits.

    The estimate is the DFT's real inputs (:func:`dftscreen.size_gate.estimate_structure`: bands from
    the valence electrons, spin, the k-points of relaxation and properties, with ``gate`` the merged
    settings of this structure); ``cell_only``: :func:`dftscreen.size_gate.cell_only_estimate`. The
    column and the reason carry the same number. The structure stays ``dft_ready`` (nothing is
    wrong with it physically), but not ``valid``: it does not go to DFT, nor take part in deduplication.
    """
    if cell_only:
        estimate = cell_only_estimate(len(structure), structure.lattice.matrix, gate)
    else:
        estimate = estimate_structure([site.specie.symbol for site in structure], structure.lattice.matrix, gate)
    decision = route(estimate, gate.policy)
    result.dft_estimate_mem_MB_per_rank = round(estimate.mem_mb_per_task, 1)
    result.dft_estimate_runtime_min = round(estimate.runtime_min, 1)
    result.dft_resources = decision.resources
    if decision.resources == "refused":
        result.valid = False
        result.status = status_codes.TOO_LARGE
        result.reason = decision.reason


def check_text(
    raw: bytes,
    structure_id: str,
    source_file: str,
    id_note: str = "",
    settings: CheckSettings = CheckSettings(),
    available_elements: set[str] | None = None,
) -> CheckResult:
    """Check the content of one CIF file; never raises for bad input."""
    return check_text_and_structure(raw, structure_id, source_file, id_note, settings, available_elements)[0]


def check_text_and_structure(
    raw: bytes,
    structure_id: str,
    source_file: str,
    id_note: str = "",
    settings: CheckSettings = CheckSettings(),
    available_elements: set[str] | None = None,
) -> tuple[CheckResult, Structure | None]:
    """As :func:`check_text`, also returning the structure built (``None`` if none could be)."""
    result = CheckResult(
        structure_id=structure_id, source_file=source_file, valid=False, status=status_codes.INVALID, id_note=id_note
    )
    try:
        text, notes = decode_cif_bytes(raw, settings.max_file_bytes)
        read = read_cif_text(text, settings.max_atoms)
    except TooManyAtomsError as exc:
        result.reason = result.crystallm_reason = str(exc)
        result.n_sites = exc.n_atoms
        return result, None
    except StructureReadError as exc:
        result.reason = result.crystallm_reason = str(exc)
        return result, None
    except Exception as exc:  # last line of defence: a bad file must not stop the batch
        result.reason = result.crystallm_reason = f"unexpected error while reading: {type(exc).__name__}: {exc}"
        return result, None
    result.parse_warnings = notes + read.warnings
    try:
        return check_read_result(result, read, settings, available_elements), read.structure
    except Exception as exc:  # a check crashed on a strange structure: report, do not stop
        result.valid = result.dft_ready = result.crystallm_valid = False
        result.status = status_codes.INVALID
        result.reason = f"a check failed on this structure: {type(exc).__name__}: {exc}"
        return result, read.structure


def check_structure_file(
    item: InputFile,
    available_elements: set[str] | None = None,
    settings: CheckSettings = CheckSettings(),
) -> CheckResult:
    """Parse and check one input file; never raises for bad input.

    Args:
        item: the input file and its structure id.
        available_elements: elements with a PAW dataset; ``None`` skips that check.
        settings: every threshold of the checks.
    """
    return check_item(item, settings, available_elements)[0]


def check_item(
    item: InputFile, settings: CheckSettings, available_elements: set[str] | None
) -> tuple[CheckResult, Structure | None]:
    """Check one input (its bytes, or its file read only when not larger than the limit)."""
    try:
        raw = read_bounded(item.path, settings.max_file_bytes) if item.content is None else item.content
    except StructureReadError as exc:
        failed = CheckResult(
            structure_id=item.structure_id,
            source_file=item.relative_path,
            valid=False,
            status=status_codes.INVALID,
            id_note=item.id_note,
            reason=str(exc),
            crystallm_reason=str(exc),
        )
        failed.input_columns = dict(item.extra_columns)
        return failed, None
    result, structure = check_text_and_structure(
        raw, item.structure_id, item.relative_path, item.id_note, settings, available_elements
    )
    result.input_columns = dict(item.extra_columns)
    return result, structure


#: Sub-checks of CrystaLLM's validity, as the check log names them (:func:`crystallm_failure_summary`).
_CRYSTALLM_SUBCHECKS = ("cell_sensible", "formula_consistent", "multiplicity_consistent", "spacegroup_consistent")


def _crystallm_failures(result: CheckResult) -> list[str]:
    """The CrystaLLM sub-checks ``result`` failed (its columns, or its reason when no column says)."""
    failed = [name for name in _CRYSTALLM_SUBCHECKS if getattr(result, name) is False]
    reason = result.crystallm_reason or ""
    if "bond-length score" in reason:
        failed.append("bond_length_score")
    if result.ordered is False:
        failed.append("ordered")
    return failed or [reason.split(";")[0].split(":")[0].strip() or "not read"]


def crystallm_failure_summary(results: list[CheckResult], top: int = 4) -> list[str]:
    """Log lines: which CrystaLLM sub-checks the files that are not ``crystallm_valid`` failed, most
    common first, and a hint when most failed only on a declared P1 that spglib finds more symmetric in.

    CrystaLLM's metric needs the declared space group to be the one spglib finds: generated files
    that all declare P1 fail it although nothing is wrong with them for DFT. No failures: no lines.
    """
    failed = [result for result in results if not result.crystallm_valid]
    if not failed:
        return []
    counts = Counter(name for result in failed for name in _crystallm_failures(result))
    parts = ", ".join(f"{name} {count}" for name, count in counts.most_common(top))
    lines = [f"not crystallm_valid: {len(failed)} files; sub-checks failed: {parts}"]
    p1_only = sum(
        _crystallm_failures(result) == ["spacegroup_consistent"] and result.declared_spacegroup_number == 1
        for result in failed
    )
    if p1_only * 2 > len(failed):
        lines.append(
            f"{p1_only} of them fail only the space-group check: they declare P1 while spglib finds a higher "
            "symmetry, which CrystaLLM's metric counts as invalid; harmless for DFT (dft_ready does not need it "
            "unless check.dft_require_spacegroup_match)"
        )
    return lines
