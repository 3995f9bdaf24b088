"""ASE's EMT standing in for GPAW, so the relaxation driver's control flow runs in seconds.

:class:`EMTFactory` is a calculator factory for :func:`dftscreen.relax.relax_atoms`
(the way quacc tests its recipes with EMT). Its calculators fail the way GPAW
does when told to: an SCF that does not converge (GPAW's own
``KohnShamConvergenceError``) when an attempt's ``maxiter`` is below
:data:`SCF_ITERATIONS_NEEDED` or at a chosen evaluation, GPAW's legacy
"Broken symmetry!" error while point-group symmetry is on, or a kill
(:class:`Killed`, which no ``except Exception`` catches, like SIGKILL) at a
chosen evaluation. It records the GPAW settings and text-log path of every attempt.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT

#: An attempt whose GPAW ``maxiter`` is below this does not converge its "SCF".
SCF_ITERATIONS_NEEDED = 10


class Killed(BaseException):
    """The process died (SIGKILL, time limit): nothing after it runs, no handler sees it."""


class EMTFactory:
    """Attaches EMT calculators that fail like GPAW on request; counts the geometries evaluated.

    Args:
        scf_fails_at: evaluations (1 = the first geometry of the whole relaxation,
            counted across attempts) whose SCF does not converge.
        kill_at: the evaluation at which the process "dies" (raises :class:`Killed`).
        breaks_symmetry: raise GPAW's legacy symmetry error while point-group symmetry is on.
        seconds_per_evaluation: sleep this long in every evaluation (a slow SCF), and
            write the evaluation number to ``<log folder>/evaluation`` first.
    """

    def __init__(
        self,
        scf_fails_at: tuple[int, ...] = (),
        kill_at: int | None = None,
        breaks_symmetry: bool = False,
        seconds_per_evaluation: float = 0.0,
    ):
        self.scf_fails_at = set(scf_fails_at)
        self.kill_at = kill_at
        self.breaks_symmetry = breaks_symmetry
        self.seconds_per_evaluation = seconds_per_evaluation
        self.evaluations = 0
        #: (GPAW settings, text-log path) of every attempt, in order.
        self.attempts: list[tuple[dict[str, Any], Path]] = []

    def __call__(self, atoms: Atoms, gpaw_settings: dict[str, Any], txt: Path) -> EMT:
        self.attempts.append((copy.deepcopy(gpaw_settings), Path(txt)))
        atoms.calc = _FailingEMT(self, gpaw_settings, Path(txt))
        return atoms.calc


class _FailingEMT(EMT):
    def __init__(self, factory: EMTFactory, gpaw_settings: dict[str, Any], txt: Path):
        super().__init__()
        self.factory = factory
        self.gpaw_settings = gpaw_settings
        self.txt = txt

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from gpaw import KohnShamConvergenceError

        if system_changes:
            self.factory.evaluations += 1
        n = self.factory.evaluations
        if self.factory.seconds_per_evaluation:
            (self.txt.parent / "evaluation").write_text(str(n))
            time.sleep(self.factory.seconds_per_evaluation)
        if n == self.factory.kill_at:
            raise Killed(f"killed at evaluation {n}")
        if self.gpaw_settings.get("maxiter", 100) < SCF_ITERATIONS_NEEDED or n in self.factory.scf_fails_at:
            raise KohnShamConvergenceError("Did not converge!  See text output for help.")
        if self.factory.breaks_symmetry and self.gpaw_settings.get("symmetry") != {"point_group": False}:
            raise RuntimeError("Broken symmetry!")
        super().calculate(atoms, properties, system_changes)


def distorted_copper() -> Atoms:
    """Conventional fcc Cu (4 atoms, a = 3.61 Å) strained by 3 % and -1 % and with one atom moved ~0.06 Å.

    Low symmetry, so cell and positions both relax under EMT: 5 BFGS steps to the
    test preset's 0.1 eV/Å, 13 to 0.03 eV/Å.
    """
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.set_cell(atoms.cell[:] * np.array([[1.03], [0.99], [1.0]]), scale_atoms=True)
    atoms.positions[1] += [0.05, -0.03, 0.02]
    return atoms
