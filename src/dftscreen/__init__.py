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

import os as _os

__version__ = "0.1.0"

# spglib 2.7-2.8 asks every caller to choose between its old error handling
# (return None, warn with a DeprecationWarning on every call, even a successful
# one) and raising spglib.error.SpglibError, which spglib 3 will always do.
# Opt in to the exceptions for this process and the Snakemake jobs and MPI ranks
# it starts (spglib's documented switch; a value the user set is kept). Callers
# catch SpglibError, and pymatgen's SymmetryUndeterminedError, which its
# SpacegroupAnalyzer raises with spglib's message.
_os.environ.setdefault("SPGLIB_OLD_ERROR_HANDLING", "false")
