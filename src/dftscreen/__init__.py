"""dftscreen: screen generated crystal structures with checks and GPAW DFT.

Modules, grouped by the workflow stage that uses them, in the order data flows
(README, "Architecture", holds the same groups; a test keeps the two equal). A module
imports at function level only from its own group or an earlier one, and no two
modules import each other, even through function-level imports (tests/unit/test_package_map.py).

- foundations: :mod:`io`, :mod:`layout`, :mod:`columns`, :mod:`config`, :mod:`status_codes`
- inputs and checks: :mod:`inputs`, :mod:`cif_reader`, :mod:`check`, :mod:`check_batch`,
  :mod:`bonds`, :mod:`dedupe`, :mod:`size_gate`, :mod:`guards`
- ML pre-relaxation: :mod:`ml_potential`, :mod:`ml`, :mod:`ml_hull`
- known materials: :mod:`known`, :mod:`known_index`, :mod:`novelty`, :mod:`competing`, :mod:`compare_known`,
  :mod:`smact_check`, :mod:`fetch_known`
- DFT: :mod:`relax`, :mod:`ml_hessian`, :mod:`recovery`, :mod:`dft`, :mod:`settings`, :mod:`properties`, :mod:`phonons`,
  :mod:`references`, :mod:`reflib`, :mod:`changes`, :mod:`resources`,
  :mod:`dft_budget`, :mod:`gpaw_support`
- table and summary: :mod:`table`, :mod:`aggregate`, :mod:`stability`, :mod:`targets`,
  :mod:`summary`, :mod:`verdict`, :mod:`cost`, :mod:`provenance`, :mod:`cohorts`, :mod:`cohort_stats`,
  :mod:`cohort_table`, :mod:`conditioning`, :mod:`phonon_results`
- report: :mod:`report`, :mod:`cohort_figures`, :mod:`phonon_figures`
- running and looking: :mod:`plan`, :mod:`status`, :mod:`cli`, :mod:`dft_pack`, :mod:`mpi_launch`,
  :mod:`dag_speed`, :mod:`compare_runs`, :mod:`doctor`
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
