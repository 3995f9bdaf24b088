# Input functions of the late stages, the table (rules/aggregate.smk) and phonons
# (rules/phonons.smk); common.smk holds the others. Functions only: rule files hold rules.
from dftscreen.dft_pack import phonon_pack_member, plan_phonon_packs, read_started_packs
from dftscreen.io import read_json
from dftscreen.phonon_results import dft_phonon_mode
from dftscreen.size_gate import MARGIN

PHONONS = config["phonons"]
# What changes a phonon result (not the choice of structures, nor ml/dft on-off).
PHONON_SETTINGS = {key: value for key, value in PHONONS.items() if key not in ("ml", "dft", "dft_by_preset")}
# candidates, all or none, with by_preset resolved for the run's preset (dftscreen.phonon_results).
PHONON_DFT_MODE = dft_phonon_mode(PHONONS, DFT["preset"])
ML_PHONONS = bool(ML["enabled"] and PHONONS["ml"])


def table_inputs(wildcards):
    """The records a results table is assembled from (dftscreen.table.TableSources)."""
    return {
        "checks": LAYOUT.checks_table,
        "targets": target_file(wildcards),
        "cohort_manifest": cohort_manifest(wildcards),
        "relax": all_relax_records(wildcards),
        "properties": all_properties_records(wildcards),
        "packs": all_pack_records(wildcards),
        "elements": all_element_records(wildcards),
        "phases": all_phase_records(wildcards),
        "ml": ml_screen_output(wildcards),
        "novelty": LAYOUT.novelty_table,
        "relaxed_novelty": relaxed_novelty_input(wildcards),
        "chosen_phases": LAYOUT.competing_phases,
        "known_phases": all_competing_phase_records(wildcards),
    }


TABLE_PARAMS = dict(
    with_formation_energies=STABILITY["elemental_references"],
    stable_threshold_eV_per_atom=STABILITY["stable_threshold_eV_per_atom"],
    targets=config["targets"],
    # For provenance (versions, settings hash) of the rows and summary.json.
    settings=global_settings_json,
    out_dir=lambda wildcards: OUT,
    ml_prerelax=ML["enabled"] and ML["prerelax"],
    # Each input's cohort (dftscreen.cohorts): cohort and cohort_<factor> columns, cohorts.csv.
    cohorts=COHORTS,
    # With the ML screen audited, rates are also weighted back (dftscreen.cohort_table.audit_rates).
    audit_fraction=SCREEN_AUDIT_FRACTION,
    # The DFT budget's sample, drawn again to mark what it left out (dftscreen.table.add_budget_columns).
    dft_budget={key: DFT[key] for key in ("max_structures_per_cohort", "budget_seed")},
    # Phases the size gate refused (dftscreen.plan.RunPlan.too_large): noted in the rows they would bound.
    too_large_phases=lambda wildcards: PLAN.too_large_phases,
)


def ml_phonon_batch_records(wildcards):
    if not ML_PHONONS:
        return []
    return expand(LAYOUT.ml_phonon_batch_record("{batch}"), batch=sorted(ml_batches()))


def phonon_plan():
    """The DFT phonon checkpoint's plan (its jobs, the structures left out and why)."""
    return read_json(checkpoints.phonon_candidates.get().output.plan)


def dft_phonon_records(wildcards):
    """A record per structure (rule dft_phonons), or with dft.structures_per_pack one per pack."""
    if PHONON_DFT_MODE == "none":
        return []
    if PACK_SIZE:
        return expand(LAYOUT.phonon_pack_record("{pack}"), pack=sorted(phonon_packs()))
    return [LAYOUT.phonon_record(sid) for sid in phonon_plan()["runnable"]]


def phonon_outputs(wildcards):
    """Every phonon output the aggregate reads (and the final target lists, see get_final_output)."""
    plan = [LAYOUT.phonon_candidates] if PHONON_DFT_MODE != "none" else []
    return [*ml_phonon_batch_records(wildcards), *plan, *dft_phonon_records(wildcards)]


def _phonon_job(wildcards):
    return phonon_plan()["jobs"][wildcards.sid]


def phonon_tasks(wildcards):
    return _phonon_job(wildcards)["tasks"]


def phonon_runtime_min(wildcards, attempt):
    job = _phonon_job(wildcards)
    return RESOURCES.runtime_min(job["n_supercell_atoms"], attempt, estimate_min=MARGIN * job["runtime_min"])


def phonon_mem_mb_per_task(wildcards, attempt):
    job = _phonon_job(wildcards)
    return RESOURCES.mem_mb_per_task(job["n_supercell_atoms"], attempt, estimate_mb=MARGIN * job["mem_mb_per_task"])


# --- DFT phonons in packs (dft.structures_per_pack: rule dft_phonon_pack, dftscreen.dft_pack) ----
def phonon_packs():
    """Pack name -> structure ids of the DFT phonon packs (started packs keep their members)."""
    return plan_phonon_packs(phonon_plan(), PACK_SIZE, read_started_packs(LAYOUT, phonons=True))


def _phonon_pack_members(wildcards):
    """The pack's members, each sized as its own dft_phonons job (its settings when overridden)."""
    jobs = phonon_plan()["jobs"]
    return [
        phonon_pack_member(
            sid,
            jobs[sid],
            LAYOUT.relaxed_cif(sid),
            dft_settings_json(SimpleNamespace(sid=sid)) if sid in DFT["structure_overrides"] else None,
        )
        for sid in phonon_packs()[wildcards.pack]
    ]


def phonon_pack_relax_records(wildcards):
    return [LAYOUT.relax_record(member.structure_id) for member in _phonon_pack_members(wildcards)]


def phonon_pack_plan_json(wildcards):
    """The pack's members and dft.resources, as dftscreen.dft_pack reads them (--plan)."""
    members = [dataclasses.asdict(member) for member in _phonon_pack_members(wildcards)]
    return json.dumps({"members": members, "resources": DFT["resources"]}, sort_keys=True)


def phonon_pack_tasks(wildcards):
    # At least 2, as pack_tasks: the SLURM plugin refuses an `mpi` job of one task.
    return max(2, pack_size(_phonon_pack_members(wildcards), RESOURCES, n_stages=1).tasks)


def phonon_pack_runtime_min(wildcards, attempt):
    return pack_size(_phonon_pack_members(wildcards), RESOURCES, attempt, n_stages=1).runtime_min


def phonon_pack_mem_mb_per_task(wildcards, attempt):
    return pack_size(_phonon_pack_members(wildcards), RESOURCES, attempt, n_stages=1).mem_mb_per_task
