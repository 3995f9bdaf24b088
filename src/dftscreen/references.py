"""Elemental reference states, computed by the workflow with the same DFT preset.

Formation energies need the energy per atom of every element in its standard
state, computed with exactly the settings used for the compounds (GPAW energies
are relative to GPAW's reference atoms and are not comparable with VASP or
Materials Project numbers). Each element gets one relaxation job.

Which structure stands for an element:

- crystals: ASE's reference state (``ase.data.reference_states``, e.g. bcc Fe,
  diamond Si, hcp Mg), built by ``ase.build.bulk`` and relaxed (cell + positions);
- gases and halogens: the diatomic molecule in a cubic box, positions relaxed,
  Γ point only. Bond lengths (Å) are the experimental ones from the NIST
  Computational Chemistry Comparison and Benchmark Database (CCCBDB); O2 is
  the spin triplet (2 µB).
- antiferromagnetic ground states (bcc Cr): the 2-atom conventional cell with
  opposite start moments on its two sublattices, since a 1-atom cell can only
  be ferro- or non-magnetic. PBE's Cr is the commensurate (CsCl-type)
  antiferromagnet, its stand-in for the measured incommensurate spin-density
  wave (Hafner et al., Phys. Rev. B 65, 184432 (2002));
- ground-state crystals with a basis ASE's ``bulk`` cannot build (α-B, black P,
  α-Ga, trigonal Se and Te), and the noble gases He and Rn, for which ASE has no
  crystal: the PBE equilibrium structures of the Δ-test set
  (K. Lejaeghere et al., Science 351, aad3000 (2016)) as shipped in ASE's
  ``ase.collections.dcdft``, relaxed again with the run's settings;
- ground states neither gives (:data:`PUBLISHED_CRYSTALS`): α-S (Fddd, S8 rings, 32-atom
  primitive cell), α-Mn (I-43m, 29-atom primitive cell, collinear start moments per
  Wyckoff site) and double-hcp La, Pr, Nd and Pm (ASE gives hcp, or nothing for Pm),
  built by pymatgen's ``Structure.from_spacegroup`` from published lattice parameters
  and Wyckoff positions, the source beside each. α-S and α-Mn start their DFT from the
  cell the ML potential (SevenNet-0, trained on PBE relaxations) relaxes the published one
  to (:func:`ml_relaxed_start`): their measured cells are 34 % (α-S, whose S8 rings PBE
  barely binds to each other) and 9 % off PBE's volume, more than a preset's step limit
  covers from there;
- where the run's size gate (:mod:`dftscreen.size_gate`, the DFT settings and
  ``dft.resources``) refuses such a ground state (α-Mn at ``standard`` with the shipped
  resources), its Δ-test structure stands in (:func:`ground_state_stand_in`: 1-atom S,
  antiferromagnetic fcc Mn) under a ``standin-`` library key, with a ``reference_note``
  that every row whose formation energy uses it carries in ``stability_note``. The ML
  stage, without size limits, always uses the ground state;
- any element, from a CIF the user supplies (config
  ``stability.elemental_reference_cifs``), which takes precedence.

Every element with a PAW dataset has a reference (a test keeps it so; the elements GPAW
has no dataset for are listed in config/README.md). Structures containing an element
without one get no formation energy, and the reason says which element is missing and
how to supply it.

Second candidates: where the Δ-test's PBE structure of an element (ASE's ``dcdft``) is
another crystal than the one above (α-Sn beside β-Sn, 9R Li and Na beside bcc, ...), it
is relaxed too (:func:`delta_test_candidate`), and the formation energies and hulls use
the lower energy per atom of the candidates (as well as any elemental phase of a known
set, see :mod:`dftscreen.competing`). Not for molecules, nor for S and Mn (their Δ-test
structures are the stand-ins above, not ground states). For carbon that is
graphite (the Δ-test's AB stacking, c = 8.84 Å) beside ASE's diamond: PBE hardly binds
graphite's layers, but its energy per atom is that of the layers, and PBE puts it
0.117 eV/atom below diamond (measured here at the ``test`` preset; experiment: 0.02,
ΔH 1.9 kJ/mol), so diamond as carbon's reference made every carbide's PBE formation
energy too negative by about that times its carbon fraction. Along c the energy is flat, so the cell
relaxation stops at the first c within the stress tolerance (6.75 Å at ``test``): the
volume means little, the energy is what the formation energies use.

Run one under MPI as ``mpiexec -n N gpaw python -m dftscreen.references --element Fe ...``.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ase import Atoms
from ase.build import bulk
from ase.collections import dcdft
from ase.data import atomic_numbers, reference_states

from dftscreen import status_codes
from dftscreen.dft import common_arguments, one_blas_thread_per_rank, parse_settings, write_on_master
from dftscreen.settings import deep_merge, initial_magmoms

if TYPE_CHECKING:
    from dftscreen.size_gate import GateSettings

#: Diatomic references: experimental bond length (Å, NIST CCCBDB) and total spin moment (µB).
DIATOMIC_REFERENCES: dict[str, tuple[float, float]] = {
    "H": (0.741, 0.0),
    "N": (1.098, 0.0),
    "O": (1.208, 2.0),
    "F": (1.412, 0.0),
    "Cl": (1.988, 0.0),
    "Br": (2.281, 0.0),
    "I": (2.666, 0.0),
}

#: Crystals taken from the Δ-test set (ASE's dcdft collection): ground states ``bulk`` cannot build.
#: Atom counts are of the primitive cell the workflow relaxes (:func:`primitive_cell`).
DELTA_TEST_CRYSTALS: dict[str, str] = {
    "B": "α-B (R-3m, 12 atoms)",
    "P": "black P (Cmce, 4 atoms)",
    "Ga": "α-Ga (Cmce, 4 atoms)",
    "Se": "trigonal Se (P3₁21, 3 atoms)",
    "Te": "trigonal Te (P3₁21, 3 atoms)",
    # Noble gases ASE gives no crystal for: the Δ-test's PBE crystals, like fcc Ne-Xe from ASE.
    "He": "hcp He (P6₃/mmc, 2 atoms)",
    "Rn": "fcc Rn (Fm-3m, 1 atom)",
}

#: Antiferromagnetic elemental ground states: lattice, and the start moment (µB) of the
#: two sublattices of its 2-atom conventional cell (+m on one atom, -m on the other).
ANTIFERROMAGNETIC_CRYSTALS: dict[str, tuple[str, float]] = {
    "Cr": ("bcc", 2.0),
}

#: Elements with a PAW dataset deliberately left without an automatic reference, and why
#: (none at present: α-S and α-Mn, once here, are :data:`PUBLISHED_CRYSTALS`). A test keeps
#: every element GPAW has a dataset for either buildable or listed here with its reason.
NO_AUTOMATIC_REFERENCE: dict[str, str] = {}

@dataclass(frozen=True)
class PublishedCrystal:
    """A ground-state crystal written from published crystallographic data.

    ``sites``: (Wyckoff label, fractional coordinates, start moment in µB) of the asymmetric
    unit in ``spacegroup`` (a pymatgen symbol; ``Fddd:2`` is origin choice 2); ``lattice``:
    (a, b, c, α, β, γ) in Å and degrees; ``density_g_cm3``: the source's density, which the
    built cell must reproduce; ``n_primitive``: atoms of the primitive cell the workflow relaxes;
    ``ml_start``: why its DFT starts from the ML-relaxed cell (empty: from the published one).
    """

    name: str
    spacegroup: str
    lattice: tuple[float, float, float, float, float, float]
    sites: tuple[tuple[str, tuple[float, float, float], float], ...]
    density_g_cm3: float
    n_primitive: int
    source: str
    cite: str  # short form of ``source`` for the results table
    magnetic_source: str = ""
    #: Why the DFT relaxation starts from the cell the ML potential relaxes (:func:`ml_relaxed_start`)
    #: rather than the published one; empty: from the published cell.
    ml_start: str = ""


def _dhcp(element: str, a: float, c: float, density: float, source: str) -> PublishedCrystal:
    """The double-hexagonal close-packed (La-type, A3') structure: P6₃/mmc, 2a + 2c, 4 atoms."""
    return PublishedCrystal(
        f"dhcp {element} (P6₃/mmc, 4 atoms)", "P6_3/mmc", (a, a, c, 90.0, 90.0, 120.0),
        (("2a", (0.0, 0.0, 0.0), 0.0), ("2c", (1 / 3, 2 / 3, 0.25), 0.0)), density, 4, source,
        "Beaudry & Gschneidner 1978",
    )


_RARE_EARTH_SOURCE = ("room-temperature lattice parameters and X-ray density of B. J. Beaudry and "
                      "K. A. Gschneidner Jr., Handbook on the Physics and Chemistry of Rare Earths, "
                      "vol. 1, ch. 2 (North-Holland, 1978)")

#: Ground states that neither ASE's ``bulk`` nor the Δ-test set gives, from published data (the
#: source beside each). α-S and α-Mn are large: where the run's size gate refuses one, its
#: Δ-test structure stands in (:func:`ground_state_stand_in`) with a note in every row it serves.
PUBLISHED_CRYSTALS: dict[str, PublishedCrystal] = {
    "S": PublishedCrystal(
        "α-S (Fddd, S8 rings, 32-atom primitive cell)", "Fddd:2",
        (10.4646, 12.8660, 24.4860, 90.0, 90.0, 90.0),
        (("32h", (0.14415, 0.04732, 0.04860), 0.0), ("32h", (0.29277, 0.22690, 0.25406), 0.0),
         ("32h", (0.21598, 0.28022, 0.32618), 0.0), ("32h", (0.21405, 0.15761, 0.37947), 0.0)),
        2.067, 32,
        "S. J. Rettig and J. Trotter, Acta Cryst. C43, 2260 (1987): lattice parameters and the four "
        "32h sites (origin choice 2) as tabulated in the AFLOW prototype A_oF128_70_4h (M. J. Mehl et "
        "al., Comp. Mat. Sci. 136, S1 (2017)); S-S bonds 2.04-2.06 Å",
        "Rettig & Trotter 1987",
        ml_start=(
            "PBE, without dispersion, barely binds the S8 rings to each other: from the measured cell "
            "α-S expands by about a third (SevenNet-0, trained on PBE relaxations: 824 to 1108 Å³ per "
            "32 atoms); from the measured cell GPAW moved under 2 % of volume per BFGS step (at the "
            "test preset: +4.6 % after 11 of its 20 steps, energy still falling 2.5 meV/atom per step; "
            "bench/README.md, formation energies)"
        ),
    ),
    "Mn": PublishedCrystal(
        "α-Mn (I-43m, 29-atom primitive cell, collinear ferrimagnetic start)", "I-43m",
        (8.911, 8.911, 8.911, 90.0, 90.0, 90.0),
        (("2a", (0.0, 0.0, 0.0), 3.0), ("8c", (0.31787, 0.31787, 0.31787), -2.5),
         ("24g", (0.35706, 0.35706, 0.03457), 1.0), ("24g", (0.08958, 0.08958, 0.28194), 0.0)),
        7.47, 29,
        "A. C. Lawson et al., J. Appl. Phys. 76, 7049 (1994) (neutron diffraction, room "
        "temperature): a and the 2a, 8c and two 24g sites (MnI-MnIV) as tabulated in the AFLOW "
        "prototype A_cI58_217_ac2g (Mehl et al., Comp. Mat. Sci. 136, S1 (2017))",
        "Lawson et al. 1994",
        "start moments per Wyckoff site, MnI (2a) +3, MnII (8c) -2.5, MnIII (24g) +1, MnIV (24g) "
        "0 µB: the collinear order PBE gives α-Mn at its PBE volume (D. Hobbs and J. Hafner, "
        "J. Phys.: Condens. Matter 13, L681 (2001): collinear below 12 Å³/atom, moments 0-3 µB by "
        "site, MnI and MnII antiparallel, no moment on MnIV); GPAW relaxes the moments from there. "
        "The Materials Project's per-site moments of its collinear α-Mn (mp-35) could not be read "
        "offline: these start values are Hobbs and Hafner's, not checked against them. The measured "
        "order is non-collinear (Lawson et al.): a collinear calculation cannot hold it",
        ml_start=(
            "the measured room-temperature cell (12.2 Å³/atom) is about 9 % larger than PBE's "
            "collinear α-Mn (SevenNet-0, trained on PBE relaxations: 11.1 Å³/atom), many BFGS steps "
            "of a 29-atom magnetic cell"
        ),
    ),
    "La": _dhcp("La", 3.7740, 12.171, 6.146, _RARE_EARTH_SOURCE),
    "Pr": _dhcp("Pr", 3.6721, 11.8326, 6.773, _RARE_EARTH_SOURCE),
    "Nd": _dhcp("Nd", 3.6582, 11.7966, 7.008, _RARE_EARTH_SOURCE),
    # The density is the source's, for the isotope 147Pm (ASE's mass is 145: 1.4 % lower).
    "Pm": _dhcp("Pm", 3.65, 11.65, 7.264, _RARE_EARTH_SOURCE + " (Pm: P. G. Pallmer and T. D. Chikalla, "
                "J. Less-Common Met. 24, 233 (1971))"),
}


def published_crystal(element: str) -> Atoms:
    """The primitive cell of ``element``'s :data:`PUBLISHED_CRYSTALS` entry, start moments per site.

    Built by pymatgen's ``Structure.from_spacegroup`` from the published lattice and Wyckoff
    positions; elements without site moments get the usual ones (:func:`initial_magmoms`).
    """
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    crystal = PUBLISHED_CRYSTALS[element]
    structure = Structure.from_spacegroup(
        crystal.spacegroup, Lattice.from_parameters(*crystal.lattice), [element] * len(crystal.sites),
        [coords for _, coords, _ in crystal.sites],
        site_properties={"magmom": [moment for _, _, moment in crystal.sites]}, tol=1e-3,
    )
    atoms = AseAtomsAdaptor.get_atoms(structure)
    if any(moment for _, _, moment in crystal.sites):
        atoms.set_initial_magnetic_moments(structure.site_properties["magmom"])
    else:
        atoms.set_initial_magnetic_moments(initial_magmoms(atoms.get_chemical_symbols()))
    return primitive_cell(atoms)


def ground_state_too_large(element: str, gate: GateSettings | None) -> str:
    """The size gate's reason (:func:`dftscreen.size_gate.route`) when ``element``'s published ground
    state is too large for the DFT with ``gate``'s settings; empty when it fits, or without a gate."""
    if gate is None or element not in PUBLISHED_CRYSTALS:
        return ""
    from dftscreen.size_gate import estimate_structure, route

    atoms = published_crystal(element)
    return route(estimate_structure(atoms.get_chemical_symbols(), atoms.cell[:], gate), gate.policy).reason


def ground_state_stand_in(element: str, reason: str = "") -> ElementalReference:
    """The Δ-test structure standing in for a published ground state the size gate refuses.

    ``reason``: the gate's; the reference's ``note`` says which ground state is missing and why,
    and reaches every row whose formation energy uses it.

    Raises:
        NoElementalReference: the element has no published ground state or no Δ-test structure.
    """
    if element not in PUBLISHED_CRYSTALS or element not in dcdft.names:
        raise NoElementalReference(f"{element} has no stand-in for a published ground state")
    atoms = primitive_cell(dcdft[element])
    if not atoms.has("initial_magmoms") or not atoms.get_initial_magnetic_moments().any():
        atoms.set_initial_magnetic_moments(initial_magmoms(atoms.get_chemical_symbols()))
    crystal = PUBLISHED_CRYSTALS[element]
    note = (f"{element} reference is a stand-in, the Δ-test structure ({len(atoms)} atoms), not its ground "
            f"state {crystal.name}" + (f", too large for DFT here: {reason}" if reason else "")
            + f"; formation energies with {element} are less reliable ({SUPPLY_HINT} to use another)")
    description = f"{element} stand-in: Δ-test PBE structure ({len(atoms)}-atom primitive cell, ASE dcdft)"
    return ElementalReference(element, atoms, "crystal", description, note)


SUPPLY_HINT = "supply a CIF of its ground state in stability.elemental_reference_cifs"

#: Edge of the cubic box (Å) around a reference molecule: ~6 Å of vacuum.
MOLECULE_BOX_A = 8.0


#: Symmetry tolerance (Å) for finding a primitive cell: the workflow's ``relax.symprec``
#: default. pymatgen's own 0.25 Å default would call A7 Bi (atoms 0.1 Å off the ideal
#: simple-cubic positions) a 1-atom cell.
PRIMITIVE_SYMPREC_A = 1e-3


def primitive_cell(atoms: Atoms) -> Atoms:
    """The primitive cell of ``atoms`` (spglib), with a site's start moment part of its kind.

    Several of the Δ-test's CIFs are conventional cells (α-Sn: 8 atoms, primitive 2; black P
    and α-Ga: 8, primitive 4). A plane-wave relaxation costs roughly the square of the atom
    count at a fixed k-point density, so the primitive cell is several times cheaper for
    the same energy per atom. Sites of one element with different start moments are
    different kinds, so an antiferromagnetic cell is not reduced to a non-magnetic one.
    Atoms already primitive are returned unchanged (the same object).
    """
    import spglib

    site_kinds = [(int(z), round(float(m), 3)) for z, m in zip(atoms.numbers, atoms.get_initial_magnetic_moments())]
    kinds = sorted(set(site_kinds))
    kind_of = {kind: index for index, kind in enumerate(kinds, start=1)}
    types = [kind_of[kind] for kind in site_kinds]
    found = spglib.standardize_cell(
        (atoms.cell[:], atoms.get_scaled_positions(), types),
        to_primitive=True, no_idealize=True, symprec=PRIMITIVE_SYMPREC_A,
    )
    if found is None or len(found[2]) >= len(atoms):
        return atoms
    lattice, positions, reduced_types = found
    return Atoms(
        numbers=[kinds[t - 1][0] for t in reduced_types],
        scaled_positions=positions, cell=lattice, pbc=True,
        magmoms=[kinds[t - 1][1] for t in reduced_types],
    )


class NoElementalReference(ValueError):
    """The element's standard state cannot be built automatically; the message says why."""


@dataclass
class ElementalReference:
    """The structure standing for one element and how to compute it."""

    element: str
    atoms: Atoms
    kind: str  # "crystal" or "molecule"
    description: str
    note: str = ""  # what a results row using it must say (a stand-in for a refused ground state)
    ml_start: str = ""  # why its DFT starts from the ML-relaxed cell (ml_relaxed_start); empty: from ``atoms``


def elemental_reference(
    element: str, box_A: float = MOLECULE_BOX_A, cif: Path | None = None, gate: GateSettings | None = None
) -> ElementalReference:
    """Reference structure of ``element`` (see the module docstring).

    Args:
        element: chemical symbol.
        box_A: edge (Å) of the cubic box around a diatomic reference.
        cif: a user-supplied CIF of the element's ground state; overrides the automatic choice.
        gate: the run's size gate (DFT settings and resources): a published ground state it
            refuses gives way to its stand-in (:func:`ground_state_stand_in`). ``None`` (the ML
            stage, which has no size limit): the ground state always.

    Raises:
        NoElementalReference: unknown element, an unusable CIF, or no automatic reference.
    """
    if element not in atomic_numbers:
        raise NoElementalReference(f"'{element}' is not a chemical element")
    if cif is not None:
        return reference_from_cif(element, cif)
    if element in DIATOMIC_REFERENCES:
        bond, moment = DIATOMIC_REFERENCES[element]
        atoms = Atoms(
            [element, element],
            positions=[[0, 0, 0], [0, 0, bond]],
            cell=[box_A, box_A, box_A],
            pbc=True,
        )
        atoms.center()
        atoms.set_initial_magnetic_moments([moment / 2, moment / 2])
        return ElementalReference(element, atoms, "molecule", f"{element}2 molecule in a {box_A:g} Å box")
    if element in NO_AUTOMATIC_REFERENCE:
        raise NoElementalReference(
            f"no automatic elemental reference for {element}: {NO_AUTOMATIC_REFERENCE[element]}; {SUPPLY_HINT}"
        )
    if element in PUBLISHED_CRYSTALS:
        reason = ground_state_too_large(element, gate)
        if reason:
            return ground_state_stand_in(element, reason)
        crystal = PUBLISHED_CRYSTALS[element]
        atoms = published_crystal(element)
        description = f"{crystal.name}, published structure ({crystal.cite})"
        return ElementalReference(element, atoms, "crystal", description, ml_start=crystal.ml_start)
    if element in ANTIFERROMAGNETIC_CRYSTALS:
        lattice, moment = ANTIFERROMAGNETIC_CRYSTALS[element]
        atoms = bulk(element, lattice, cubic=True)
        atoms.set_initial_magnetic_moments([moment, -moment])
        description = f"antiferromagnetic {lattice} {element} (2-atom cubic cell, start moments ±{moment:g} µB)"
        return ElementalReference(element, atoms, "crystal", description)
    if element in DELTA_TEST_CRYSTALS:
        atoms = primitive_cell(dcdft[element])
        description = f"{DELTA_TEST_CRYSTALS[element]}, Δ-test PBE structure (ASE dcdft collection)"
    else:
        state = reference_states[atomic_numbers[element]]
        symmetry = state.get("symmetry") if state else None
        try:
            atoms = bulk(element)
        except Exception as exc:
            raise NoElementalReference(
                f"no automatic elemental reference for {element} (its ground state, "
                f"'{symmetry}', is a crystal ASE cannot build); {SUPPLY_HINT}"
            ) from exc
        description = f"{symmetry} {element} (ASE reference state)"
    atoms.set_initial_magnetic_moments(initial_magmoms(atoms.get_chemical_symbols()))
    return ElementalReference(element, atoms, "crystal", description)


#: Δ-test structures never used as second candidates, and why (graphite, once here because
#: PBE does not bind its layers, is carbon's PBE ground state, see above).
NO_DELTA_TEST_CANDIDATE: dict[str, str] = {
    "S": "the Δ-test's 1-atom S is far above α-S: only its stand-in where α-S is too large",
    "Mn": "the Δ-test's antiferromagnetic fcc Mn is not α-Mn: only its stand-in where α-Mn is too large",
}


@lru_cache(maxsize=None)
def delta_test_candidate(element: str) -> ElementalReference | None:
    """The Δ-test structure of ``element`` as a second candidate, when it is another crystal.

    ``None`` when ASE's dcdft collection has no structure for it, when the automatic
    reference is a molecule, already the Δ-test structure, or missing, or for the
    elements of :data:`NO_DELTA_TEST_CANDIDATE`.
    """
    if element not in dcdft.names or element in NO_DELTA_TEST_CANDIDATE or element in DELTA_TEST_CRYSTALS:
        return None
    try:
        automatic = elemental_reference(element)
    except NoElementalReference:
        return None
    if automatic.kind != "crystal":
        return None
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = primitive_cell(dcdft[element])
    if StructureMatcher().fit(AseAtomsAdaptor.get_structure(automatic.atoms), AseAtomsAdaptor.get_structure(atoms)):
        return None
    atoms.set_initial_magnetic_moments(initial_magmoms(atoms.get_chemical_symbols()))
    description = f"{element}, Δ-test PBE structure ({len(atoms)}-atom primitive cell, ASE dcdft collection)"
    return ElementalReference(element, atoms, "crystal", description)


#: Elements whose cells GPAW's default band count leaves (almost) no empty band, and which
#: :func:`dftscreen.dft.attach_gpaw` gives more since that was found (bcc Ba's volume was 5 %
#: too large): :func:`dftscreen.dft.bands_beyond_gpaw_default` of their references; a test
#: keeps this set equal to what GPAW's setups give. Their candidates' keys hash that too, so
#: a reference library's results from before are computed again, not reused.
MORE_BANDS_ELEMENTS = frozenset({"K", "Ca", "Rb", "Sr", "Cs", "Ba", "He", "Ne", "Ar", "Kr", "Xe", "Rn"})


def _candidate_fingerprint(element: str, atoms: Atoms, ml_start: bool = False) -> str:
    """The library fingerprint of one of ``element``'s candidate cells (12 hex digits); ``ml_start``:
    its DFT starts from the ML-relaxed cell (:func:`ml_relaxed_start`), another start than ``atoms``."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from dftscreen.competing import structure_fingerprint

    fingerprint = structure_fingerprint(AseAtomsAdaptor.get_structure(atoms))
    if element in MORE_BANDS_ELEMENTS:
        fingerprint = hashlib.sha256(f"{fingerprint}|bands beyond GPAW's default".encode()).hexdigest()[:12]
    if ml_start:
        fingerprint = hashlib.sha256(f"{fingerprint}|{ML_START_TAG}".encode()).hexdigest()[:12]
    return fingerprint


def automatic_candidate_keys(element: str, gate: GateSettings | None = None) -> list[str]:
    """Reference-library keys of an element's automatic candidates: ``auto-<fingerprint>`` and,
    when there is a second candidate, ``delta-<fingerprint>`` (fingerprints of the starting
    structures, :func:`dftscreen.competing.structure_fingerprint`, and for
    :data:`MORE_BANDS_ELEMENTS` of their band count too). ``standin-<fingerprint>`` instead of
    ``auto-`` when ``gate`` refuses the element's published ground state (:func:`ground_state_stand_in`).
    ``auto`` alone when the element has no automatic reference (its job records why)."""
    try:
        automatic = elemental_reference(element, gate=gate)
    except NoElementalReference:
        return ["auto"]
    prefix = "standin" if automatic.note else "auto"
    keys = [f"{prefix}-{_candidate_fingerprint(element, automatic.atoms, bool(automatic.ml_start))}"]
    delta = delta_test_candidate(element)
    if delta is not None:
        keys.append(f"delta-{_candidate_fingerprint(element, delta.atoms)}")
    return keys


def reference_fingerprint(element: str) -> str:
    """The fingerprint of ``element``'s automatic reference structure as the ML stage relaxes it
    (the ground state, no size gate); empty when it has none."""
    try:
        return _candidate_fingerprint(element, elemental_reference(element).atoms)
    except NoElementalReference:
        return ""


def reference_n_atoms(element: str, cif: Path | None = None) -> int:
    """Atoms in the cell of ``element``'s reference (what its job's resources scale with).

    1 when the element has no reference: its job only writes the reason.
    """
    try:
        return len(elemental_reference(element, cif=cif).atoms)
    except NoElementalReference:
        return 1


def reference_from_cif(element: str, cif: Path) -> ElementalReference:
    """The user's CIF of ``element``'s ground state, checked to contain only that element.

    Raises:
        NoElementalReference: the CIF cannot be read or holds other elements.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    from dftscreen.cif_reader import read_structure

    try:
        structure, _ = read_structure(Path(cif))
    except Exception as exc:
        raise NoElementalReference(f"the elemental reference CIF for {element} ({cif}) cannot be read: {exc}") from exc
    found = sorted(el.symbol for el in structure.composition.elements)
    if found != [element]:
        raise NoElementalReference(
            f"the elemental reference CIF for {element} ({cif}) contains {', '.join(found)}, not only {element}"
        )
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.set_initial_magnetic_moments(initial_magmoms(atoms.get_chemical_symbols()))
    return ElementalReference(element, atoms, "crystal", f"{element} from the supplied CIF {Path(cif).name}")


def reference_settings(settings: dict[str, Any], kind: str) -> dict[str, Any]:
    """The run's DFT settings adapted to a reference of ``kind``.

    A molecule keeps its box (positions only, no symmetry constraint) and needs
    only the Γ point; a crystal relaxes on the dense mesh (``kpt_density_per_A``) whatever
    its gap: an element is one job per run, and the semiconductors among them converge
    slowly with k (Si 4.8 meV/atom off at 3.0 per Å⁻¹; bench/README.md, "Converged settings").
    """
    if kind != "molecule":
        if not (settings.get("gpaw") or {}).get("kpt_density_insulator_per_A"):
            return settings
        return deep_merge(settings, {"gpaw": {"kpt_density_insulator_per_A": None}})
    return deep_merge(
        settings,
        {"relax": {"relax_cell": False, "fix_symmetry": False}, "gpaw": {"kpts": {"size": [1, 1, 1], "gamma": True}}},
    )


#: What the ML start adds to a reference's library fingerprint: the model and the relaxation settings
#: of :func:`ml_relaxed_start` (change either, change this, and the references start afresh).
ML_START_TAG = "DFT from the cell SevenNet-0 relaxes: BFGS, fmax 0.02 eV/Å, symmetry kept"
#: The ML-relaxed start in a reference job's work folder: a resumed job starts from the same cell.
ML_START_FILE = "ml_start.json"


def ml_relaxed_start(
    atoms: Atoms, workdir: Path, calculator_factory: Callable[[], Any] | None = None
) -> tuple[Atoms, str]:
    """The DFT start of a reference whose published cell is far from PBE's minimum (``ml_start``):
    ``atoms`` with the cell and positions the ML potential relaxes them to (SevenNet-0, symmetry
    kept, start moments unchanged), and a sentence for the record.

    Computed once, on MPI rank 0, and kept in ``workdir`` (:data:`ML_START_FILE`): a resumed job
    starts from the very same cell, so its checkpoint fits. Where the potential cannot be loaded
    or fails, the published cell is the start and the sentence says why.
    ``calculator_factory``: the calculator (tests); default SevenNet-0 on one thread.
    """
    from ase.parallel import world

    from dftscreen.io import atomic_write_json, read_json

    path = Path(workdir) / ML_START_FILE
    if world.rank == 0 and not path.is_file():
        from dftscreen import ml_potential

        settings = ml_potential.MLSettings(optimizer="BFGS", fmax_eV_per_A=0.02, max_steps=500)
        try:
            calculator = (calculator_factory or (lambda: ml_potential.load_calculator(settings.model)))()
            relaxed, record = ml_potential.relax_atoms(atoms, calculator, settings)
            saved: dict[str, Any] = {"cell": relaxed.cell[:].tolist(), "positions": relaxed.positions.tolist(),
                                     "record": record, "model": settings.model}
        except Exception as exc:  # the published cell is still a valid start
            saved = {"error": f"{type(exc).__name__}: {exc}".strip()}
        Path(workdir).mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, saved)
    world.barrier()
    saved = read_json(path)
    if "error" in saved:
        return atoms, f"DFT started from the published cell: the ML start failed ({saved['error']})"
    start = atoms.copy()
    start.set_cell(saved["cell"])
    start.set_positions(saved["positions"])
    record = saved["record"]
    return start, (
        f"DFT started from the cell {saved['model']} relaxed the published one to "
        f"({record['initial_volume_A3']:.1f} to {record['final_volume_A3']:.1f} Å³, {record['n_steps']} steps)"
    )


def main(argv: list[str] | None = None) -> int:
    from dftscreen import relax

    one_blas_thread_per_rank()
    parser = common_arguments("GPAW relaxation of one elemental reference")
    parser.add_argument("--element", required=True)
    parser.add_argument("--out-cif", required=True, type=Path)
    parser.add_argument("--cif", type=Path, default=None, help="user-supplied CIF of the element's ground state")
    parser.add_argument("--candidate", choices=("auto", "delta", "standin"), default="auto",
                        help="auto: the reference described above; delta: the Δ-test structure as second "
                             "candidate; standin: the Δ-test structure for a ground state the size gate refuses")
    args = parser.parse_args(argv)
    settings = parse_settings(args.settings)
    try:
        if args.candidate == "delta":
            reference = delta_test_candidate(args.element)
            if reference is None:
                raise NoElementalReference(f"{args.element} has no Δ-test structure other than its reference")
        elif args.candidate == "standin":
            reference = ground_state_stand_in(args.element, "refused by the size gate (dftscreen.size_gate)")
        else:
            reference = elemental_reference(args.element, cif=args.cif)
    except NoElementalReference as exc:
        write_on_master(args.out_json, {
            "structure_id": args.structure_id, "element": args.element,
            "status": status_codes.FAILED, "reason": str(exc),
        })
        return 0
    start, start_note = reference.atoms, ""
    if reference.ml_start:
        start, start_note = ml_relaxed_start(reference.atoms, args.workdir)
    record = relax.run(
        cif=None,
        structure_id=args.structure_id,
        settings=reference_settings(settings, reference.kind),
        out_json=args.out_json,
        out_cif=args.out_cif,
        workdir=args.workdir,
        load_atoms=lambda: start,
        extra={"element": args.element, "reference_kind": reference.kind,
               "reference_description": reference.description,
               **({"reference_note": reference.note} if reference.note else {}),
               **({"reference_start": start_note} if start_note else {})},
    )
    return 0 if record else 1


if __name__ == "__main__":
    sys.exit(main())
