"""dftscreen: screen generated crystal structures with checks and GPAW DFT.

Modules, one per workflow stage:

- :mod:`dftscreen.inputs`     find input CIFs and give each a path-safe structure id
- :mod:`dftscreen.cif_reader` read a CIF and build its full unit cell
- :mod:`dftscreen.check`      sanity-check one structure (pymatgen, spglib)
- :mod:`dftscreen.check_batch` check many files in parallel, then deduplicate
- :mod:`dftscreen.settings`   named DFT presets and their overrides
- :mod:`dftscreen.relax`      GPAW plane-wave PBE relaxation of cell and positions
- :mod:`dftscreen.properties` single point on the relaxed structure: energy, gap, moment
- :mod:`dftscreen.aggregate`  one results table row per input file
"""

__version__ = "0.1.0"
