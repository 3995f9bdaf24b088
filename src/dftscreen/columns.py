"""The results table's vocabulary: every column name the workflow writes, in one place.

Each stage's module computes values; this module names them. A new stage adds its
column names here (and to ``docs/columns.md``, whose test resolves every name), and
its values through a function of :mod:`dftscreen.table`, the one assembler of the
table. Units are part of the names (``_eV``, ``_A`` for Å, ``_A3``, ``_GPa``,
``_pct``, ``_s``, ``_muB``, ``_g_cm3``, ``_core_hours``, ``_eV_per_atom``).

A table input (:mod:`dftscreen.inputs`) carries its other columns into the results
table; a column named like one of these gets the prefix ``input_`` (see
:meth:`dftscreen.check.CheckResult.to_dict`), so it is never taken for, nor
overwritten by, a computed value, and a target's ``source_column`` naming it
finds the prefixed column (:mod:`dftscreen.targets`).

This module imports nothing of dftscreen: every other module may import it.
"""

from __future__ import annotations

from functools import lru_cache

#: Prefix of a table-input column whose name is a results-table column.
INPUT_PREFIX = "input_"

# --- checks of the generated structure (dftscreen.check.CheckResult) ----------------------

#: Columns of every check record, in the order of :class:`dftscreen.check.CheckResult`'s fields
#: (its bookkeeping fields ``valid``, ``parse_warnings`` and ``input_columns`` are no columns;
#: a test holds the two equal).
CHECK_COLUMNS = (
    "structure_id",
    "source_file",
    "status",
    "reason",
    "id_note",
    "reduced_formula",
    "n_sites",
    "rebuilt_from_asymmetric_unit",
    "declared_spacegroup_symbol",
    "declared_spacegroup_number",
    "spacegroup_symbol",
    "spacegroup_number",
    "cell_sensible",
    "formula_consistent",
    "multiplicity_consistent",
    "spacegroup_consistent",
    "bond_length_score",
    "n_bonds",
    "ordered",
    "min_distance_A",
    "paw_available",
    "volume_declared_A3",
    "volume_implied_A3",
    "volume_generated_A3",
    "volume_per_formula_unit_A3",
    "density_generated_g_cm3",
    "crystallm_valid",
    "crystallm_reason",
    "dft_ready",
    "check_notes",
    "duplicate_of",
    "dft_estimate_mem_MB_per_rank",
    "dft_estimate_runtime_min",
    "dft_resources",
)

#: Fields of a check record that are not table columns.
CHECK_FIELDS_NOT_IN_TABLE = frozenset({"valid", "parse_warnings"})

# --- provenance (dftscreen.provenance) ------------------------------------------------------

#: Installed packages whose versions are recorded: column name -> distribution name.
PACKAGE_COLUMNS: dict[str, str] = {
    "gpaw_version": "gpaw",
    # The PAW datasets (setups) GPAW reads: a new dataset release changes energies.
    "gpaw_data_version": "gpaw-data",
    "pymatgen_version": "pymatgen",
    "ase_version": "ase",
}

#: Provenance columns of the results table, in order.
PROVENANCE_COLUMNS = [
    "dftscreen_version",
    *PACKAGE_COLUMNS,
    "xc_functional",
    "settings_sha256",
]

# --- DFT relaxation, properties and cost (dftscreen.aggregate) -----------------------------

#: Columns copied from the relaxation record's comparison of generated and relaxed structure.
CHANGE_COLUMNS = [
    "relaxed_matches_generated",
    "structure_matcher_rms_norm",
    "rms_displacement_A",
    "spacegroup_symbol_generated",
    "spacegroup_number_generated",
    "spacegroup_number_relaxed",
    "spacegroup_symbol_relaxed",
    "spacegroup_changed",
]

#: Cost columns: empty in a duplicate's row (its DFT ran, and was paid for, once: in its representative's row).
COST_COLUMNS = ["relax_core_hours", "properties_core_hours", "total_core_hours"]

#: Column order of the results table (columns absent from every record are still written).
COLUMNS = [
    "structure_id",
    "source_file",
    "status",
    "verdict",
    "reason",
    "failure_category",
    "id_note",
    "reduced_formula",
    "n_sites",
    "spacegroup_symbol",
    "spacegroup_number",
    "min_distance_A",
    "volume_generated_A3",
    "density_generated_g_cm3",
    "dft_preset",
    "relax_converged",
    "n_ionic_steps",
    "energy_eV",
    "energy_per_atom_eV",
    "max_force_eV_per_A",
    "max_stress_GPa",
    "volume_relaxed_A3",
    "volume_change_pct",
    "density_relaxed_g_cm3",
    *CHANGE_COLUMNS,
    "formation_energy_eV_per_atom",
    "hull_reference",
    "elemental_references",
    "decomposition_products",
    "band_gap_eV",
    "direct_band_gap_eV",
    "gap_is_direct",
    "band_gap_gllbsc_eV",
    "gllbsc_note",
    "vbm_kpoint_frac",
    "cbm_kpoint_frac",
    "magnetic_moment_muB",
    "is_magnetic",
    "magnetic_ordering",
    "scf_strategy",
    "relax_kpt_density_per_A",
    "relax_n_starts",
    "relax_resumed_from_step",
    "relax_wall_time_s",
    "relax_wall_time_all_starts_s",
    "properties_wall_time_s",
    "mpi_ranks",
    *COST_COLUMNS,
    "relaxed_cif",
    *PROVENANCE_COLUMNS,
]

# --- stability (dftscreen.stability, dftscreen.aggregate.add_stability) ---------------------

#: Energy above the hull (eV/atom) when the hull has reference phases (compounds) ...
E_HULL_COLUMN = "e_above_hull_eV_per_atom"
#: ... and when it has only the elements and the generated structures themselves.
E_HULL_COLUMN_NO_PHASES = "e_above_hull_vs_generated_only_eV_per_atom"
FORMATION_ENERGY_COLUMN = "formation_energy_eV_per_atom"

#: Columns only a run with elemental references writes.
STABILITY_COLUMNS = [E_HULL_COLUMN, E_HULL_COLUMN_NO_PHASES, "stability_note"]

# --- known materials (dftscreen.compare_known) ---------------------------------------------

SMACT_COLUMN = "smact_valid"
#: Whether the generated structure matches the known database, and the id it matches.
NOVEL_COLUMN = "novel"
KNOWN_MATCH_COLUMN = "matches_known_id"
#: Column names of the two known sets' novelty results.
NOVELTY_COLUMNS = {
    "database": (NOVEL_COLUMN, KNOWN_MATCH_COLUMN),
    "training": ("novel_vs_training", "matches_training_id"),
}
#: The same for the DFT-relaxed structure (a generated crystal may relax into a known one).
RELAXED_NOVEL_COLUMN = "relaxed_novel"
RELAXED_KNOWN_MATCH_COLUMN = "relaxed_matches_known_id"
RELAXED_NOVELTY_COLUMNS = (RELAXED_NOVEL_COLUMN, RELAXED_KNOWN_MATCH_COLUMN)

# --- the ML stage (dftscreen.ml, dftscreen.ml_hull) -----------------------------------------

#: The ML stage's own status: its presence in a table means the ML stage ran.
ML_STATUS_COLUMN = "ml_status"
#: Column names of the ML energies (the DFT names with an ``ml_`` prefix).
ML_FORMATION_COLUMN = f"ml_{FORMATION_ENERGY_COLUMN}"
ML_E_HULL_COLUMN = f"ml_{E_HULL_COLUMN}"
ML_E_HULL_COLUMN_NO_PHASES = f"ml_{E_HULL_COLUMN_NO_PHASES}"

#: Columns copied from the ML record's comparison of generated and ML-relaxed structure.
ML_CHANGE_COLUMNS = (
    "relaxed_matches_generated",
    "structure_matcher_rms_norm",
    "rms_displacement_A",
    "spacegroup_number_relaxed",
    "spacegroup_changed",
)

#: Whether the ML screen put a structure above its threshold, and whether the audit sent it to DFT anyway.
ML_SCREENED_OUT_COLUMN = "ml_screened_out"
ML_AUDITED_COLUMN = "ml_audited"
#: The probability that a structure's DFT ran given the screen and its audit (Horvitz-Thompson weights: 1 / p).
DFT_INCLUSION_PROBABILITY_COLUMN = "dft_inclusion_probability"

#: Whether the DFT budget (dft.max_structures_per_cohort) sampled a DFT candidate; empty for the other rows.
DFT_SAMPLED_COLUMN = "dft_sampled"

#: ML table columns, in order (the ML hull column is one of the two names above).
ML_COLUMNS = (
    ML_STATUS_COLUMN,
    "ml_reason",
    "ml_model",
    "ml_package_version",
    "ml_checkpoint_sha256",
    "ml_energy_per_atom_eV",
    ML_FORMATION_COLUMN,
    "ml_hull_reference",
    "ml_decomposition_products",
    "ml_n_steps",
    "ml_max_force_eV_per_A",
    "ml_volume_relaxed_A3",
    "ml_volume_change_pct",
    *(f"ml_{c}" for c in ML_CHANGE_COLUMNS),
    "ml_wall_time_s",
    "ml_relaxed_cif",
    "dft_start_geometry",
    ML_SCREENED_OUT_COLUMN,
    ML_AUDITED_COLUMN,
    DFT_INCLUSION_PROBABILITY_COLUMN,
)

# --- phonons (dftscreen.phonons, dftscreen.phonon_results) -----------------------------------

#: Dynamical stability from the ML potential's phonons (every ML-relaxed structure) and from
#: GPAW's (the candidates of ``phonons.dft``). ``*_qpoint`` is fractional (reciprocal lattice of
#: the relaxed cell), ``*_qpoint_label`` its high-symmetry name when it is one (``Γ``, ``M``, ``R``).
ML_PHONON_STATUS_COLUMN = "ml_phonon_status"
ML_DYNAMICALLY_STABLE_COLUMN = "ml_dynamically_stable"
ML_MIN_PHONON_COLUMN = "ml_min_phonon_frequency_THz"
PHONON_STATUS_COLUMN = "phonon_status"
DYNAMICALLY_STABLE_COLUMN = "dynamically_stable"
MIN_PHONON_COLUMN = "min_phonon_frequency_THz"
PHONON_CORE_HOURS_COLUMN = "phonon_core_hours"
ML_PHONON_COLUMNS = (
    ML_PHONON_STATUS_COLUMN,
    "ml_phonon_reason",
    ML_MIN_PHONON_COLUMN,
    "ml_min_phonon_qpoint",
    "ml_min_phonon_qpoint_label",
    "ml_n_imaginary_phonon_modes",
    ML_DYNAMICALLY_STABLE_COLUMN,
    "ml_phonon_wall_time_s",
)
PHONON_COLUMNS = (
    PHONON_STATUS_COLUMN,
    "phonon_reason",
    MIN_PHONON_COLUMN,
    "min_phonon_qpoint",
    "min_phonon_qpoint_label",
    "n_imaginary_phonon_modes",
    DYNAMICALLY_STABLE_COLUMN,
    "phonon_supercell",
    "phonon_n_displacements",
    PHONON_CORE_HOURS_COLUMN,
)


# --- targets (dftscreen.targets) ------------------------------------------------------------

#: Unit (as written in column names) of every target property, by target name.
TARGET_UNITS: dict[str, str] = {
    "band_gap": "eV",
    "e_above_hull": "eV_per_atom",
    "formation_energy": "eV_per_atom",
    "density": "g_cm3",
    "magnetic_moment": "muB",
}


# --- cohorts (dftscreen.cohorts) -------------------------------------------------------------

#: The cohort label of each input: ``<factor>=<value>`` joined by ``, `` (pooled factors left out),
#: ``all`` without cohorts, ``unassigned`` for an input no source assigns.
COHORT_COLUMN = "cohort"
#: Prefix of a factor's column (``cohort_<factor>``): the whole prefix is the workflow's, so a
#: table-input column starting with it gets the prefix ``input_`` (:func:`is_results_column`).
COHORT_FACTOR_PREFIX = "cohort_"


def cohort_factor_column(factor: str) -> str:
    """Name of the column holding factor ``factor``'s value (``cohort_model``)."""
    return f"{COHORT_FACTOR_PREFIX}{factor}"


def target_columns(name: str) -> tuple[str, str, str]:
    """Names of the (target, error, hit) columns for target ``name`` (a key of :data:`TARGET_UNITS`)."""
    unit = TARGET_UNITS[name]
    return f"target_{name}_{unit}", f"{name}_error_{unit}", f"{name}_hit"


@lru_cache(maxsize=1)
def results_columns() -> frozenset[str]:
    """Every column name the workflow itself can write into the results table (table-input columns aside)."""
    ml = {*ML_COLUMNS, ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES}
    known = {SMACT_COLUMN, *RELAXED_NOVELTY_COLUMNS, *(c for columns in NOVELTY_COLUMNS.values() for c in columns)}
    target = {c for name in TARGET_UNITS for c in target_columns(name)}
    # The check record's bookkeeping fields too: a table-input column must not take their names either.
    return frozenset(
        {*COLUMNS, *STABILITY_COLUMNS, *CHECK_COLUMNS, *CHECK_FIELDS_NOT_IN_TABLE, *ml, *known, *target}
        | {COHORT_COLUMN, DFT_SAMPLED_COLUMN, *ML_PHONON_COLUMNS, *PHONON_COLUMNS}
    )


def is_results_column(name: str) -> bool:
    """Whether the workflow may write a column ``name``: one of :func:`results_columns`, or a
    factor's ``cohort_<factor>`` (whose names depend on the run's config)."""
    return name in results_columns() or name.startswith(COHORT_FACTOR_PREFIX)
