"""The initial Hessian of the relaxation's ``BFGS-MLHessian`` optimizer (issue 32, item 3).

ASE's BFGS starts from a Hessian ``alpha`` × identity (70 eV/Å²), a conservative guess that
the first steps have to correct. ``BFGS-MLHessian`` is the same BFGS on the same target (the
cell filter with ``FixSymmetry`` that :mod:`dftscreen.relax` builds) whose starting Hessian is
the machine-learned potential's at the start geometry (:func:`initial_hessian`): central finite
differences of the target's forces (:func:`finite_difference_hessian`), symmetrised and made
positive definite (:func:`positive_definite`). The DFT relaxation then corrects it as usual.

The ML calculator is made by a factory (:data:`MLCalculatorFactory`): SevenNet-0 by default
(:func:`sevennet_calculator`), ASE's EMT in the tests. Under MPI only rank 0 loads it and
computes the Hessian, which is broadcast to the other ranks. A factory or a force evaluation
that fails (a model lacking an element) leaves BFGS's default Hessian, and
:func:`initial_hessian` says why.

Units: the target's coordinates are Å for atoms and, for a cell filter, its dimensionless
cell coordinates (log-strain times the filter's ``exp_cell_factor``, the number of atoms);
Hessians are in eV per coordinate squared, eV/Å² for atoms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

#: Makes the ML calculator (an ASE calculator) the initial Hessian is computed with; a ``label``
#: attribute (a string) names the model in the record, else the calculator's class name does.
MLCalculatorFactory = Callable[[], Any]

#: Displacement of each coordinate of the target in the central differences: 0.01 Å for an atom;
#: for a cell coordinate of the filter 0.01 in its units, a strain of 0.01 / (number of atoms).
FD_DISPLACEMENT = 0.01

#: Eigenvalues of the ML Hessian below this (eV/Å²) are raised to it: 1/100 of ASE's default
#: ``alpha`` (70 eV/Å²). The curvatures of small metal cells in the filter's coordinates run
#: from about 1 to 16 eV/Å² (EMT Cu and Al), so the floor keeps every physical one; it replaces
#: the zero modes (rigid translations, which forces never drive: they sum to zero) and soft or
#: negative ML curvatures (a start off the ML minimum), along which a step is then at most
#: force / 0.7 and BFGS's maxstep (0.2) caps it anyway.
EIGENVALUE_FLOOR_EV_PER_A2 = 0.7

#: What the relaxation record's ``initial_hessian`` says when the ML Hessian was used.
ML_HESSIAN_NOTE = "ML ({model})"


def finite_difference_hessian(target: Any, displacement: float = FD_DISPLACEMENT) -> np.ndarray:
    """Hessian of ``target``'s energy by central differences of its forces, symmetrised.

    Args:
        target: atoms or a cell filter with a calculator (``get_positions``, ``set_positions``,
            ``get_forces``); its positions are restored on return.
        displacement: step of each coordinate (Å for atoms; the filter's units for its cell rows).

    Returns:
        The (3n, 3n) matrix (H + Hᵀ)/2 over the n rows of ``target.get_positions()`` flattened,
        in eV per coordinate squared (eV/Å² for atoms).
    """
    start = np.array(target.get_positions(), dtype=float)
    flat = start.ravel()
    hessian = np.zeros((flat.size, flat.size))
    try:
        for i in range(flat.size):
            for sign in (1.0, -1.0):
                displaced = flat.copy()
                displaced[i] += sign * displacement
                target.set_positions(displaced.reshape(start.shape))
                # H[:, i] = dG/dx_i = -dF/dx_i
                hessian[:, i] -= sign * np.asarray(target.get_forces(), dtype=float).ravel() / (2 * displacement)
    finally:
        target.set_positions(start)
    return (hessian + hessian.T) / 2


def positive_definite(hessian: np.ndarray, floor: float = EIGENVALUE_FLOOR_EV_PER_A2) -> np.ndarray:
    """``hessian`` (symmetric) with every eigenvalue below ``floor`` raised to it (same units, eV/Å²)."""
    eigenvalues, vectors = np.linalg.eigh(hessian)
    return (vectors * np.maximum(eigenvalues, floor)) @ vectors.T


def ml_twin(target: Any, calculator: Any) -> Any:
    """A copy of ``target`` (atoms or a ``FrechetCellFilter``) carrying ``calculator``, without constraints.

    The filter's copy has the same reference cell and cell-coordinate scale, so its coordinates
    are ``target``'s. ``FixSymmetry`` is left out: it would symmetrise each single-coordinate
    displacement of the finite differences; the Hessian at a symmetric geometry respects the
    symmetry anyway.
    """
    atoms = getattr(target, "atoms", target).copy()
    atoms.set_constraint()
    atoms.calc = calculator
    if target is getattr(target, "atoms", target):
        return atoms
    if not isinstance(target, FrechetCellFilter):
        raise TypeError(f"no ML twin for a {type(target).__name__}")
    twin = FrechetCellFilter(
        atoms,
        mask=target.mask,
        exp_cell_factor=target.exp_cell_factor,
        hydrostatic_strain=target.hydrostatic_strain,
        constant_volume=target.constant_volume,
        scalar_pressure=target.scalar_pressure,
    )
    twin.orig_cell = np.array(target.orig_cell, dtype=float)
    return twin


def sevennet_calculator() -> Any:
    """SevenNet-0 (:data:`dftscreen.ml_potential.DEFAULT_MODEL`) on the CPU with one torch thread."""
    from dftscreen.ml_potential import DEFAULT_MODEL, load_calculator

    return load_calculator(DEFAULT_MODEL, threads=1)


#: How the record names the default factory's model.
sevennet_calculator.label = "SevenNet-0"  # type: ignore[attr-defined]


def _rank0_hessian(target: Any, ml_calculator: MLCalculatorFactory) -> tuple[np.ndarray | None, str]:
    """The ML Hessian of ``target`` and the note for the record, or ``None`` and why not."""
    try:
        calculator = ml_calculator()
        label = getattr(ml_calculator, "label", None)
        model = label if isinstance(label, str) else type(calculator).__name__
        hessian = finite_difference_hessian(ml_twin(target, calculator))
        if not np.all(np.isfinite(hessian)):
            raise ValueError("the ML forces gave a Hessian that is not finite")
        return positive_definite(hessian), ML_HESSIAN_NOTE.format(model=model)
    except Exception as exc:  # noqa: BLE001 - any failure of the ML model leaves BFGS's default
        reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:200]
        return None, f"BFGS default ({reason})"


def initial_hessian(target: Any, ml_calculator: MLCalculatorFactory | None = None) -> tuple[np.ndarray | None, str]:
    """The ML potential's Hessian of ``target`` at its current geometry, for BFGS's start.

    Computed on MPI rank 0 only (where ``ml_calculator``, default :func:`sevennet_calculator`,
    is called) and broadcast, so every rank gets the same matrix.

    Returns:
        The positive-definite Hessian (eV per coordinate squared, see :func:`finite_difference_hessian`)
        and the record's note ``"ML (<model>)"``; or ``None`` and ``"BFGS default (<reason>)"``
        when the factory or the ML forces failed.
    """
    from ase.parallel import broadcast, world

    result = _rank0_hessian(target, ml_calculator or sevennet_calculator) if world.rank == 0 else None
    return broadcast(result, root=0, comm=world)


class MLHessianBFGS(BFGS):
    """ASE's BFGS whose state reads and writes as plain attributes, for the relaxation's checkpoint.

    ``hessian`` is the updated Hessian (``None`` before the first step); ``start_hessian`` the
    Hessian the first step uses (``H0``), reported only while no step has updated it.
    """

    @property
    def hessian(self) -> np.ndarray | None:
        return None if self.state is None else self.state.hessian

    @hessian.setter
    def hessian(self, value: np.ndarray | None) -> None:
        self.state = None
        if value is not None:
            # BFGS's first update only wraps H0 in its state, as a fresh start does.
            self.H0 = np.array(value, dtype=float)
            self.update(None, None, None, None)

    @property
    def start_hessian(self) -> np.ndarray | None:
        return self.H0 if self.state is None else None

    @start_hessian.setter
    def start_hessian(self, value: np.ndarray | None) -> None:
        if value is not None:
            self.H0 = np.array(value, dtype=float)
