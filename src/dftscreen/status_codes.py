"""Status words of the JSON records the DFT jobs write and of the results table's rows.

One module, imported by the GPAW-side jobs, the aggregation and ``dftscreen status``
alike, so the words cannot drift apart. It imports nothing.
"""

from __future__ import annotations

# Relaxation records (relax.json).
RELAXED = "relaxed"
NOT_CONVERGED = "not_converged"
FAILED = "failed"

# Property records (properties.json); failures use FAILED.
DONE = "done"
SKIPPED = "skipped"

# Phonon records (dftscreen.phonons: ML and DFT); besides, SKIPPED, FAILED and TOO_LARGE.
COMPUTED = "computed"

# Rows of the results table; failures use FAILED and NOT_CONVERGED.
OK = "ok"
INVALID = "invalid"
NOT_FINISHED = "not_finished"
DUPLICATE = "duplicate"
#: Sound, but its DFT would exceed the memory or time a job may have (dftscreen.size_gate).
TOO_LARGE = "too_large"
#: Above the ML pre-screen threshold (ml.screen_e_above_hull_eV_per_atom): ML values only, no DFT.
SCREENED_OUT = "screened_out"
#: A DFT candidate the DFT budget (dft.max_structures_per_cohort) left out of its cohort's sample.
NOT_SAMPLED = "not_sampled"

#: Record statuses of a stage that count as finished without error.
FINISHED_OK: dict[str, tuple[str, ...]] = {
    "relax": (RELAXED, NOT_CONVERGED),
    "properties": (DONE,),
    # A phonon record that says why nothing was computed (an unconverged relaxation, too large a
    # supercell) is a finished job: rerunning it gives the same answer.
    "phonons": (COMPUTED, SKIPPED, TOO_LARGE),
}
