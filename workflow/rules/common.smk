# Everything non-declarative: config validation, input discovery, input functions.
import json
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.utils import validate

from dftscreen.aggregate import table_from_results, write_table
from dftscreen.inputs import (
    STRUCTURE_ID_PATTERN,
    check_reference_cifs,
    discover_cifs,
    discover_inputs,
    table_row_cif_path,
)
from dftscreen.layout import ReferenceLibrary
from dftscreen.reflib import element_reference_key, settings_key
from dftscreen.resources import ResourcePolicy
from dftscreen.settings import deep_merge, resolve_settings


validate(config, workflow.source_path("../schemas/config.schema.yaml"))

OUT = config["output_dir"]
DFT = config["dft"]
# One listing of the input folder and one reading of the input table per Snakemake
# start; the check job re-derives the same ids with the same function.
INPUTS = {item.structure_id: item for item in discover_inputs(config["input"])}
DFT_SETTINGS = resolve_settings(DFT["preset"], DFT["overrides"], DFT["presets"], DFT["scf_ladder"])
RESOURCES = ResourcePolicy.from_config(DFT["resources"])
STABILITY = config["stability"]
check_reference_cifs(STABILITY["elemental_reference_cifs"])
# Competing phases for the hull (relaxed with the same preset); few files, listed once.
REFERENCE_PHASES = (
    {item.structure_id: item for item in discover_cifs(STABILITY["reference_cif_dir"])}
    if STABILITY["reference_cif_dir"]
    else {}
)
KNOWN = config["known_materials"]
# Elemental references and chosen known phases, reused by every run naming the same folder
# with the same DFT settings (see dftscreen.reflib).
LIBRARY = ReferenceLibrary(
    STABILITY["reference_library_dir"] or f"{OUT}/reference_library", settings_key(DFT_SETTINGS)
)
# GPAW's launcher from the environment running Snakemake (works without activating it).
GPAW_PYTHON = f"{sys.executable} -m gpaw python"
# Default MPI launcher (profiles may replace it, e.g. with srun). OpenMPI's mpiexec binds
# each rank to a core counted from core 0 in every job, so two 1-rank jobs running side
# by side on one machine both got core 0 and ran at half speed; the kernel places them.
MPIEXEC = "mpiexec --bind-to none"


wildcard_constraints:
    sid=STRUCTURE_ID_PATTERN,
    element="[A-Z][a-z]?",
    ekey="(auto|delta|cif)-[0-9a-f]{12}|auto",


def input_cif(wildcards):
    """The original CIF of one structure id; for a table row, the file the check job wrote its text to."""
    item = INPUTS[wildcards.sid]
    if item.content is not None:
        return str(table_row_cif_path(f"{OUT}/inputs", wildcards.sid))
    return str(item.path)


def reference_phase_cif(wildcards):
    """The CIF of one user-supplied reference phase."""
    return str(REFERENCE_PHASES[wildcards.sid].path)


def global_settings_json(wildcards):
    """The run's DFT settings (no per-structure override), for references."""
    return json.dumps(DFT_SETTINGS, sort_keys=True)


def dft_settings_json(wildcards):
    """Resolved DFT settings of one structure, as JSON.

    Passed to the GPAW jobs as params, so changing the preset (or this
    structure's override) reruns exactly the jobs it affects.
    """
    settings = DFT_SETTINGS
    override = DFT["structure_overrides"].get(wildcards.sid)
    if override:
        settings = deep_merge(settings, override)
    return json.dumps(settings, sort_keys=True)


_N_SITES = {}


def n_sites(wildcards):
    """Number of atoms of a structure, from the check checkpoint's table (read once).

    Read by path, not through checkpoints.check.get(): inside a cluster job the
    DAG holds only that job, the checkpoint counts as incomplete there, and
    Snakemake would then use 0 for threads and crash.
    """
    if not _N_SITES:
        with open(rules.check.output.table) as handle:
            _N_SITES.update({r["structure_id"]: r.get("n_sites") or 1 for r in json.load(handle)})
    return _N_SITES.get(wildcards.sid, 1)


def tasks_for(count_atoms):
    """MPI ranks of a job whose cell has count_atoms(wildcards) atoms."""
    return lambda wildcards: RESOURCES.tasks(count_atoms(wildcards))


def runtime_for(count_atoms):
    return lambda wildcards, attempt: RESOURCES.runtime_min(count_atoms(wildcards), attempt)


def mem_for(count_atoms):
    return lambda wildcards, attempt: RESOURCES.mem_mb_per_task(count_atoms(wildcards), attempt)


mpi_tasks = tasks_for(n_sites)
runtime_min = runtime_for(n_sites)
mem_mb_per_task = mem_for(n_sites)

_ELEMENT_N_ATOMS = {}


def element_n_atoms(wildcards):
    """Atoms in an element's candidate cell (imported here: building it needs ASE, not every parse)."""
    key = (wildcards.element, getattr(wildcards, "ekey", "auto"))
    if key not in _ELEMENT_N_ATOMS:
        from dftscreen.references import delta_test_candidate, reference_n_atoms

        if key[1].startswith("delta-"):
            candidate = delta_test_candidate(wildcards.element)
            _ELEMENT_N_ATOMS[key] = len(candidate.atoms) if candidate else 1
        else:
            cifs = element_reference_cif(wildcards)
            _ELEMENT_N_ATOMS[key] = reference_n_atoms(wildcards.element, cif=cifs[0] if cifs else None)
    return _ELEMENT_N_ATOMS[key]


def phase_n_atoms(wildcards):
    return _phase_structure(REFERENCE_PHASES[wildcards.sid].path)[1]


def valid_structure_ids():
    """Ids the check checkpoint passed on to DFT (re-evaluated after it ran)."""
    with open(checkpoints.check.get().output.valid_ids) as handle:
        return [line.strip() for line in handle if line.strip()]


def all_relax_records(wildcards):
    return expand(f"{OUT}/dft/{{sid}}/relax.json", sid=valid_structure_ids())


def all_properties_records(wildcards):
    return expand(f"{OUT}/dft/{{sid}}/properties.json", sid=valid_structure_ids())


def elements_needed():
    """Elements of every structure going to DFT and of every reference phase."""
    from pymatgen.core import Composition

    with open(checkpoints.check.get().output.table) as handle:
        checks = {r["structure_id"]: r for r in json.load(handle)}
    formulas = [checks[sid].get("reduced_formula") for sid in valid_structure_ids()]
    elements = {el.symbol for formula in formulas if formula for el in Composition(formula).elements}
    for item in REFERENCE_PHASES.values():
        elements |= reference_phase_elements(item.path)
    return sorted(elements)


_PHASE_STRUCTURES = {}


def _phase_structure(path):
    """Elements and number of atoms of a reference phase's CIF (read once)."""
    if path not in _PHASE_STRUCTURES:
        from dftscreen.check import read_structure

        try:
            structure, _ = read_structure(path)
            _PHASE_STRUCTURES[path] = ({el.symbol for el in structure.composition.elements}, len(structure))
        except Exception:
            # An unreadable reference phase fails in its own relax job, with the reason.
            _PHASE_STRUCTURES[path] = (set(), 1)
    return _PHASE_STRUCTURES[path]


def reference_phase_elements(path):
    return _phase_structure(path)[0]


_ELEMENT_KEYS = {}


def element_keys(element):
    """Library keys of an element's candidate structures: ``cif-<hash>`` of the user's CIF, or
    ``auto-<fingerprint>`` (plus ``delta-<fingerprint>`` when the Δ-test structure is another
    crystal, e.g. α-Sn beside β-Sn): a changed starting structure never reuses an old result."""
    if element not in _ELEMENT_KEYS:
        cif = STABILITY["elemental_reference_cifs"].get(element)
        if cif:
            _ELEMENT_KEYS[element] = [element_reference_key(cif)]
        else:
            from dftscreen.references import automatic_candidate_keys

            _ELEMENT_KEYS[element] = automatic_candidate_keys(element)
    return _ELEMENT_KEYS[element]


def all_element_records(wildcards):
    if not STABILITY["elemental_references"]:
        return []
    return [LIBRARY.element_record(el, key) for el in elements_needed() for key in element_keys(el)]


def element_reference_cif(wildcards):
    """The user's CIF for this element's reference, or nothing (automatic reference)."""
    if not getattr(wildcards, "ekey", "auto").startswith("cif-"):
        return []
    return [STABILITY["elemental_reference_cifs"][wildcards.element]]


def element_candidate_option(wildcards):
    """``--candidate delta`` for the Δ-test candidate; nothing otherwise."""
    return "--candidate delta" if wildcards.ekey.startswith("delta-") else ""


def dft_input_cifs(wildcards):
    """Input CIF of every structure going to DFT, in the order of valid_ids.txt."""
    return [input_cif(SimpleNamespace(sid=sid)) for sid in valid_structure_ids()]


def known_source_files(wildcards):
    """The known sets' files (a folder's CIFs), so that editing them reruns the comparison."""
    files = []
    for source in (KNOWN["database"], KNOWN["training"]):
        path = source["path"]
        if path and Path(path).is_dir():
            files += sorted(str(item.path) for item in discover_cifs(path))
        elif path:
            files.append(path)
    return files


def ml_known_phase_energies(wildcards):
    """Hook for the ML stage (issue 15): its energies of the known phases, a JSON {entry id: eV/atom}.

    When that stage exists, return its output here; compare_known then ranks the known
    phases on the ML hull instead of the known set's own energies. Nothing until then.
    """
    return []


def competing_phases_wanted():
    return bool(KNOWN["database"]["path"]) and KNOWN["competing_phases"]["enabled"] and STABILITY["elemental_references"]


def chosen_phase_keys():
    """Keys of the known phases compare_known chose (re-evaluated after it ran)."""
    if not competing_phases_wanted():
        return []
    with open(checkpoints.compare_known.get().output.phases) as handle:
        phases = json.load(handle)["phases"]
    # An elemental phase with the very structure of an element's candidate is computed once, as the element.
    return [
        phase["phase_key"]
        for phase in phases
        if not (
            "-" not in phase["chemical_system"]
            and STABILITY["elemental_references"]
            and any(key.endswith(phase["phase_key"].rsplit("-", 1)[1]) for key in element_keys(phase["chemical_system"]))
        )
    ]


def all_competing_phase_records(wildcards):
    return [LIBRARY.phase_record(key) for key in chosen_phase_keys()]


_CHOSEN_PHASE_SITES = {}


def competing_phase_n_atoms(wildcards):
    """Atoms of a chosen known phase, from compare_known's table (read by path, as n_sites)."""
    if not _CHOSEN_PHASE_SITES:
        with open(f"{OUT}/known/competing_phases.json") as handle:
            _CHOSEN_PHASE_SITES.update({p["phase_key"]: p["n_sites"] for p in json.load(handle)["phases"]})
    return _CHOSEN_PHASE_SITES.get(wildcards.sid, 1)


def element_reference_cif_option(wildcards):
    return " ".join(f"--cif {shlex.quote(cif)}" for cif in element_reference_cif(wildcards))


def all_phase_records(wildcards):
    return expand(f"{OUT}/references/phases/{{sid}}/relax.json", sid=sorted(REFERENCE_PHASES))


def target_file(wildcards):
    """The targets CSV, if one is configured (so editing it updates the table)."""
    return [config["targets"]["file"]] if config["targets"]["file"] else []


def get_final_output(wildcards):
    """The results table, and every per-structure record as an explicit target.

    Snakemake accepts missing intermediate files when the outputs downstream of
    them are newer (that is how temp() works), so deleting one structure's DFT
    folder would otherwise not rerun it.
    """
    return [
        f"{OUT}/results.csv",
        f"{OUT}/results.parquet",
        f"{OUT}/summary.json",
        *all_relax_records(wildcards),
        *all_properties_records(wildcards),
        *all_element_records(wildcards),
        *all_phase_records(wildcards),
        *all_competing_phase_records(wildcards),
    ]


def write_partial_table():
    """After a failed run, write every row we can (missing DFT results as not_finished)."""
    checks_path = Path(OUT) / "check" / "checks.json"
    if not checks_path.is_file():
        return
    table = table_from_results(
        OUT, STABILITY["elemental_references"], config["targets"], reference_library=LIBRARY.folder
    )
    write_table(table, Path(OUT) / "results_partial.csv", Path(OUT) / "results_partial.parquet")
    print(
        f"dftscreen: some jobs failed; partial table with every row written to {OUT}/results_partial.csv. "
        "Rerun the same command to redo only what failed.",
        file=sys.stderr,
    )
