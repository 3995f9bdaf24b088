"""The relaxation's progress line: one per ionic step in the job log (ASE's EMT stands in for GPAW)."""

from __future__ import annotations

import re

from ase.build import bulk
from ase.calculators.emt import EMT

from dftscreen.relax import print_progress

LINE = re.compile(r"^ionic step +(\d+) +energy (-?\d+\.\d+) eV +fmax (\d+\.\d+) eV/Å +max stress (\S+)(?: GPa)? "
                  r"+step time (\d+\.\d+) s$")


def test_one_line_with_energy_force_stress_and_step_time(capsys):
    atoms = bulk("Cu", "fcc", a=3.4, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    atoms.get_stress()  # what the cell filter asks for; the line only reads it
    print_progress(atoms, 7, 12.34)
    (line,) = capsys.readouterr().out.splitlines()
    step, energy, fmax, stress, seconds = LINE.match(line).groups()
    assert int(step) == 7 and float(seconds) == 12.3
    assert float(energy) == round(atoms.get_potential_energy(), 6)
    assert float(fmax) > 0 and float(stress) > 0


def test_stress_not_computed_shows_as_not_available(capsys):
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.calc = EMT()
    atoms.get_forces()
    atoms.calc.results.pop("stress", None)  # a positions-only relaxation never asks for it
    print_progress(atoms, 0, 1.0)
    assert "max stress n/a" in capsys.readouterr().out
