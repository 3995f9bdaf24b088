"""Where every file of a run lives under ``output_dir``: the one owner of the results-folder layout.

The rules, the table builder (:mod:`dftscreen.aggregate`) and ``dftscreen status``
(:mod:`dftscreen.status`) all ask this module for paths, so renaming a file here
renames it everywhere; spelled out in three places it once could drift apart and
``dftscreen status`` would silently call finished structures "pending".

Paths are returned as strings, because Snakemake rules take strings and a
wildcard such as ``"{sid}"`` may stand in for a structure id::

    layout = ResultsLayout("results")
    layout.relax_record("{sid}")       # 'results/dft/{sid}/relax.json'  (a rule output)
    layout.relax_record("NaCl_rank01") # 'results/dft/NaCl_rank01/relax.json'

::

    <output_dir>/
        check/checks.json, check/valid_ids.txt      the check checkpoint
        check/inputs.tsv                            the inputs the check read (size, mtime, path)
        check/size_estimate.txt                     the check gates with the real-input estimate here
        check/inputs_changed.flag                   made by the job writing inputs.tsv on its first run
        inputs/<id>.cif                             CIF text of table rows going to DFT
        ml/batches/batch_<n>.json                   one ML batch job's summary (its ids, reused or new)
        ml/structures/<id>/record.json, relaxed.cif ML relaxation of one structure (+ generated.cif)
        ml/structures/<id>/phonons.json             ML phonons of one structure (dftscreen.phonons)
        ml/phonon_batches/batch_<n>.json            one ML phonon batch job's summary
        ml/references/{elements,phases}/<name>.json ML-relaxed elemental references and phases
        ml/references.json                          the ML reference job's output (all of them)
        ml/screen.json, ml/dft_ids.txt              ML hull, pre-screen verdicts; ids sent to DFT
        dft/<id>/relax.json, relaxed.cif            relaxation (+ checkpoint.json, GPAW logs)
        dft/<id>/relaxed.gpw                        the relaxation's final GPAW state, until the single point is done
        dft/<id>/properties.json                    single point on the relaxed structure
        dft/<id>/phonons.json                       DFT phonons (dftscreen.phonons)
        dft/<id>/phonons/displacement-<nnn>.json    forces of one displaced supercell (000: undisplaced)
        packs/pack_<name>.json                      a pack job's record (with dft.structures_per_pack)
        packs/members/pack_<name>.txt               the structures of a pack that has started
        packs/phonons/pack_<name>.json              a DFT phonon pack job's record (same, for phonons)
        packs/phonons/members/pack_<name>.txt       the structures of a DFT phonon pack that has started
        references/elements/<El>/relax.json         elemental references of runs before the reference library
        references/phases/<id>/relax.json           user-supplied competing phases
        known/novelty.json                          novelty and SMACT validity per structure
        known/novelty_relaxed.json                  novelty of each DFT-relaxed structure
        known/competing_phases.json                 phases chosen from the known set for the hull
        logs/<stage>/<id>.log                       one log per job
        results.csv, results.parquet, summary.json  the table and its summary
        cohorts.csv, cohorts.json                   per-cohort rates, comparisons with the baseline, trends
        report/index.html, report/*.png             the HTML report
        results_partial.csv, .parquet               written when a run had failures

Elemental references and the competing phases chosen from a known set live in a
reference library (:class:`ReferenceLibrary`), by default ``<output_dir>/reference_library``,
shared by every run whose config names the same folder::

    <library>/<settings key>/
        elements/<El>/<reference key>/relax.json, relaxed.cif   one element's reference
        phases/<phase key>/start.cif, relax.json, relaxed.cif   one known phase
    <library>/known_index/   known sets' index and reduced cells (dftscreen.known_index)
    <library>/ml/<model key>/phases/<phase key>.json   a known phase relaxed by the ML model
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Top-level folders the workflow writes in ``output_dir`` (the tree above), and Snakemake's own.
OWN_FOLDERS = (
    "check", "inputs", "ml", "dft", "packs", "references", "known", "logs", "report", "reference_library", ".snakemake",
)  # fmt: skip

#: Sub-folder of a structure's DFT folder (its ``--workdir``) holding the phonon displacements.
PHONON_SUBDIR = "phonons"


def phonon_displacement_name(index: int) -> str:
    """File name of displaced supercell ``index``'s forces inside :data:`PHONON_SUBDIR` (0: undisplaced)."""
    return f"displacement-{int(index):03d}.json"


def phonon_displacement_gpaw_log(index: int) -> str:
    """GPAW's text output of displaced supercell ``index`` inside :data:`PHONON_SUBDIR`."""
    return f"displacement-{int(index):03d}_gpaw.txt"


#: Inside :data:`PHONON_SUBDIR`: the positions relaxation before the displacements (its result,
#: reused by a rerun; GPAW's text output; the optimizer's log).
PHONON_PRERELAXED = "prerelaxed.json"
PHONON_PRERELAX_GPAW_LOG = "prerelax_gpaw.txt"
PHONON_PRERELAX_OPTIMIZER_LOG = "prerelax_bfgs.log"


#: Names of the per-structure DFT stages, each writing ``dft/<id>/<stage>.json``.
DFT_STAGES = ("relax", "properties")

#: The relaxation's final GPAW state (density and wave functions) in a structure's DFT folder:
#: the single point starts from it (dftscreen.properties) and removes it once done.
RELAXATION_RESTART_NAME = "relaxed.gpw"


def relaxation_has_single_point(relax_record: str | os.PathLike[str]) -> bool:
    """Whether the relaxation writing ``relax_record`` is a structure's (``dft/<id>/relax.json``).

    Only those get a single point (:mod:`dftscreen.properties`), so only they keep their final
    GPAW state for it; the reference and known phases, relaxed by the same program, do not.
    """
    path = Path(relax_record)
    return path.name == "relax.json" and path.parent.parent.name == "dft"


@dataclass(frozen=True)
class ResultsLayout:
    """Paths of one run's results folder ``root`` (the config's ``output_dir``)."""

    root: str

    @classmethod
    def of(cls, root: str | Path) -> ResultsLayout:
        return cls(str(root))

    def _join(self, *parts: str) -> str:
        # Spelled exactly as the rules always wrote f"{OUT}/dft/..." (no normalisation):
        # Snakemake matches outputs by their text, so "./out" must stay "./out".
        return "/".join((self.root, *parts))

    # --- the check checkpoint --------------------------------------------------
    @property
    def checks_table(self) -> str:
        """Every input's check record (JSON list)."""
        return self._join("check", "checks.json")

    @property
    def valid_ids(self) -> str:
        """Ids of the unique dft_ready structures, one per line."""
        return self._join("check", "valid_ids.txt")

    @property
    def size_estimate_note(self) -> str:
        """Written by a check that gated with the real-input estimate (see
        :func:`dftscreen.size_gate.keeps_cell_only_estimates`)."""
        return self._join("check", "size_estimate.txt")

    @property
    def input_manifest(self) -> str:
        """Size, mtime and path of every input file: the check's input (rewritten only on change)."""
        return self._join("check", "inputs.tsv")

    @property
    def input_manifest_log(self) -> str:
        """Log of the job writing :attr:`input_manifest` (its existence: the job has run in this folder)."""
        return self.log("input_manifest")

    @property
    def input_manifest_flag(self) -> str:
        """A flag the job writing :attr:`input_manifest` declares in a results folder it has not run in yet."""
        return self._join("check", "inputs_changed.flag")

    @property
    def inputs_dir(self) -> str:
        """Where the CIF text of an input table's rows is written for DFT."""
        return self._join("inputs")

    # --- per-structure DFT ----------------------------------------------------
    @property
    def dft_dir(self) -> str:
        return self._join("dft")

    def structure_dir(self, structure_id: str) -> str:
        """Work folder of one structure's GPAW jobs (checkpoints, GPAW text logs)."""
        return self._join("dft", structure_id)

    def stage_record(self, structure_id: str, stage: str) -> str:
        """The record one DFT stage (``relax`` or ``properties``) writes when it finishes."""
        if stage not in DFT_STAGES:
            raise ValueError(f"unknown DFT stage {stage!r}; known: {', '.join(DFT_STAGES)}")
        return self._join("dft", structure_id, f"{stage}.json")

    def relax_record(self, structure_id: str) -> str:
        return self.stage_record(structure_id, "relax")

    def properties_record(self, structure_id: str) -> str:
        return self.stage_record(structure_id, "properties")

    def relaxed_cif(self, structure_id: str) -> str:
        return self._join("dft", structure_id, "relaxed.cif")

    def relaxation_restart(self, structure_id: str) -> str:
        """The relaxation's final GPAW state, read by the single point (:data:`RELAXATION_RESTART_NAME`)."""
        return self._join("dft", structure_id, RELAXATION_RESTART_NAME)

    @property
    def phonon_candidates(self) -> str:
        """Which structures get DFT phonons, with their supercell jobs
        (:func:`dftscreen.phonon_results.plan_dft_phonons`)."""
        return self._join("dft", "phonon_candidates.json")

    def phonon_record(self, structure_id: str) -> str:
        """DFT phonons of the relaxed structure (:func:`dftscreen.phonons.run_dft_phonons`)."""
        return self._join("dft", structure_id, "phonons.json")

    def phonon_dir(self, structure_id: str) -> str:
        """Work folder of the DFT phonons: one force record per displaced supercell, GPAW text logs."""
        return self._join("dft", structure_id, PHONON_SUBDIR)

    def phonon_displacement_record(self, structure_id: str, index: int) -> str:
        """Forces of displaced supercell ``index`` (0: the undisplaced supercell), reused by a rerun."""
        return self._join("dft", structure_id, PHONON_SUBDIR, phonon_displacement_name(index))

    def phonon_log(self, structure_id: str) -> str:
        return self.log("phonons", structure_id)

    def pack_record(self, pack: str) -> str:
        """Record of one pack job (``dft.structures_per_pack``): which structures it ran, in which SLURM job."""
        return self._join("packs", f"pack_{pack}.json")

    def pack_records(self) -> dict[str, Path]:
        """Pack name -> record (:meth:`pack_record`) of every pack that finished, sorted by name."""
        return _by_pack_name(Path(self.root).glob("packs/pack_*.json"))

    def pack_members(self, pack: str) -> str:
        """The structures of a pack that has started (one id per line), written before it runs them.

        Not a job output, so Snakemake never deletes it: a pack keeps its structures when it
        fails or reruns (:func:`dftscreen.dft_pack.plan_packs`).
        """
        return self._join("packs", "members", f"pack_{pack}.txt")

    @property
    def pack_members_dir(self) -> str:
        """The folder of the :meth:`pack_members` files (its mtime changes with each one written)."""
        return self._join("packs", "members")

    def pack_member_files(self) -> dict[str, Path]:
        """Pack name -> :meth:`pack_members` file of every pack that has started, sorted by name."""
        return _by_pack_name(Path(self.root).glob("packs/members/pack_*.txt"))

    def phonon_pack_record(self, pack: str) -> str:
        """Record of one DFT phonon pack job (``dft.structures_per_pack``), as :meth:`pack_record` for phonons."""
        return self._join("packs", "phonons", f"pack_{pack}.json")

    def phonon_pack_members(self, pack: str) -> str:
        """The structures of a DFT phonon pack that has started (as :meth:`pack_members`; its own folder,
        so relax packs and phonon packs never mix)."""
        return self._join("packs", "phonons", "members", f"pack_{pack}.txt")

    @property
    def phonon_pack_members_dir(self) -> str:
        return self._join("packs", "phonons", "members")

    def phonon_pack_member_files(self) -> dict[str, Path]:
        """Pack name -> :meth:`phonon_pack_members` file of every phonon pack that has started, sorted by name."""
        return _by_pack_name(Path(self.root).glob("packs/phonons/members/pack_*.txt"))

    # --- the machine-learned stage (dftscreen.ml) -------------------------------
    @property
    def ml_dir(self) -> str:
        return self._join("ml")

    def ml_batch_record(self, batch: int | str) -> str:
        """Summary one ML batch job writes when all its structures are done (a rule output)."""
        return self._join("ml", "batches", f"batch_{batch}.json")

    def ml_structure_dir(self, structure_id: str) -> str:
        return self._join("ml", "structures", structure_id)

    def ml_record(self, structure_id: str) -> str:
        """ML relaxation record of one structure, written as soon as it finishes (reused on rerun)."""
        return self._join("ml", "structures", structure_id, "record.json")

    def ml_relaxed_cif(self, structure_id: str) -> str:
        """The ML-relaxed geometry: DFT starts from it when ``ml.prerelax`` is on."""
        return self._join("ml", "structures", structure_id, "relaxed.cif")

    def ml_rejected_cif(self, structure_id: str) -> str:
        """An ML-relaxed geometry that must not start DFT (collapsed, or too large a volume change), kept to look at."""
        return self._join("ml", "structures", structure_id, "rejected.cif")

    def ml_generated_cif(self, structure_id: str) -> str:
        """Copy of the generated CIF beside the ML-relaxed one, so a DFT job started from the
        ML geometry still compares its result with the generated structure."""
        return self._join("ml", "structures", structure_id, "generated.cif")

    def ml_element_record(self, element: str) -> str:
        return self._join("ml", "references", "elements", f"{element}.json")

    def ml_phase_record(self, phase_id: str) -> str:
        return self._join("ml", "references", "phases", f"{phase_id}.json")

    def ml_phonon_record(self, structure_id: str) -> str:
        """ML phonons of one structure (:func:`dftscreen.phonons.run_ml_phonon_batch`), written as soon as
        they finish and reused on rerun."""
        return self._join("ml", "structures", structure_id, "phonons.json")

    def ml_phonon_batch_record(self, batch: int | str) -> str:
        """Summary one ML phonon batch job writes when all its structures are done (a rule output)."""
        return self._join("ml", "phonon_batches", f"batch_{batch}.json")

    @property
    def ml_references(self) -> str:
        """Every ML reference record of the run (the ML reference job's output)."""
        return self._join("ml", "references.json")

    @property
    def ml_screen(self) -> str:
        """ML formation energies, energies above the ML hull and screening verdict per structure."""
        return self._join("ml", "screen.json")

    @property
    def ml_dft_ids(self) -> str:
        """Ids that go on to DFT (all valid ids less those screened out), one per line."""
        return self._join("ml", "dft_ids.txt")

    # --- references ------------------------------------------------------------
    # Elemental references now live in the ReferenceLibrary (below); these paths are where
    # runs before it kept them (still read for their partial tables).
    def element_dir(self, element: str) -> str:
        return self._join("references", "elements", element)

    def element_record(self, element: str) -> str:
        return self._join("references", "elements", element, "relax.json")

    def phase_relaxed_cif(self, phase_id: str) -> str:
        return self._join("references", "phases", phase_id, "relaxed.cif")

    def phase_dir(self, phase_id: str) -> str:
        return self._join("references", "phases", phase_id)

    def phase_record(self, phase_id: str) -> str:
        return self._join("references", "phases", phase_id, "relax.json")

    def element_records(self) -> list[Path]:
        """Every elemental reference record present now, sorted."""
        return sorted(Path(self.root).glob("references/elements/*/relax.json"))

    def phase_records(self) -> list[Path]:
        """Every reference-phase record present now, sorted."""
        return sorted(Path(self.root).glob("references/phases/*/relax.json"))

    def own_folders(self) -> list[str]:
        """The folders the workflow writes in ``output_dir``: never read as inputs, wherever ``cif_dir`` is."""
        return [self._join(name) for name in OWN_FOLDERS]

    # --- known materials ----------------------------------------------------------

    @property
    def default_reference_library(self) -> str:
        """The reference library's folder when the config names none (``stability.reference_library_dir``)."""
        return self._join("reference_library")

    @property
    def novelty_table(self) -> str:
        """Novelty against the known sets and SMACT validity, per structure id (JSON)."""
        return self._join("known", "novelty.json")

    @property
    def relaxed_novelty_table(self) -> str:
        """Novelty of the DFT-relaxed structures against the known database, per structure id (JSON)."""
        return self._join("known", "novelty_relaxed.json")

    @property
    def competing_phases(self) -> str:
        """The known phases chosen for the hull, and why others were not (JSON)."""
        return self._join("known", "competing_phases.json")

    # --- logs ------------------------------------------------------------------
    def log(self, stage: str, name: str | None = None) -> str:
        """A job's log: ``logs/<stage>.log`` for a run-wide job, ``logs/<stage>/<name>.log`` per item."""
        return self._join("logs", f"{stage}.log") if name is None else self._join("logs", stage, f"{name}.log")

    def element_reference_log(self, element: str, reference_key: str) -> str:
        """Log of an elemental reference job (the record is in the :class:`ReferenceLibrary`)."""
        return self.log("references/elements", f"{element}-{reference_key}")

    def reference_phase_log(self, phase_id: str) -> str:
        """Log of the relaxation of a user's reference phase (``stability.reference_cif_dir``)."""
        return self.log("references/phases", phase_id)

    def known_phase_log(self, phase_key: str) -> str:
        """Log of the relaxation of a known phase compare_known chose."""
        return self.log("references/known_phases", phase_key)

    def pack_log(self, pack: str) -> str:
        """Log of a pack job (its members' GPAW runs log to :meth:`log` of their stage, as alone)."""
        return self.log("packs", f"pack_{pack}")

    def phonon_pack_log(self, pack: str) -> str:
        """Log of a DFT phonon pack job (its members' GPAW runs log to :meth:`phonon_log`, as alone)."""
        return self.log("packs/phonons", f"pack_{pack}")

    # --- the report ---------------------------------------------------------------
    @property
    def report_dir(self) -> str:
        """The HTML report and its figures (PNG files usable in a talk)."""
        return self._join("report")

    def report_file(self, name: str) -> str:
        return self._join("report", name)

    # --- the table --------------------------------------------------------------
    @property
    def results_csv(self) -> str:
        return self._join("results.csv")

    @property
    def results_parquet(self) -> str:
        return self._join("results.parquet")

    @property
    def summary(self) -> str:
        return self._join("summary.json")

    @property
    def cohorts_csv(self) -> str:
        """One row per cohort: counts, rates and intervals (:mod:`dftscreen.cohort_table`)."""
        return self._join("cohorts.csv")

    @property
    def cohorts_json(self) -> str:
        """The cohorts with their definitions, the comparisons with the baseline and the trends."""
        return self._join("cohorts.json")

    @property
    def partial_csv(self) -> str:
        return self._join("results_partial.csv")

    @property
    def partial_parquet(self) -> str:
        return self._join("results_partial.parquet")


@dataclass(frozen=True)
class ReferenceLibrary:
    """Reference results reused across runs: ``<root>/<settings_key>/{elements,phases}/...``.

    ``settings_key`` hashes the DFT settings (:func:`dftscreen.reflib.settings_key`), so
    results of other settings never mix; an element's ``reference_key`` says which structure
    stood for it (``auto``, or ``cif-<hash>`` of a CIF the user supplied), a phase's key its
    formula and structure fingerprint (:func:`dftscreen.competing.phase_key`).
    """

    root: str
    settings_key: str

    def _join(self, *parts: str) -> str:
        return "/".join((self.root, self.settings_key, *parts))

    @property
    def folder(self) -> str:
        return self._join()

    @property
    def known_index_dir(self) -> str:
        """Indexes of the known sets (:mod:`dftscreen.known_index`), shared by all settings: ``<root>/known_index``."""
        return "/".join((self.root, "known_index"))

    def ml_phase_record(self, model_key: str, phase_key: str) -> str:
        """A known phase relaxed by the ML model (:func:`dftscreen.ml.model_key`), shared by all DFT settings:
        ``<root>/ml/<model key>/phases/<phase key>.json``."""
        return "/".join((self.root, "ml", model_key, "phases", f"{phase_key}.json"))

    def element_relaxed_cif(self, element: str, reference_key: str) -> str:
        return self._join("elements", element, reference_key, "relaxed.cif")

    def phase_relaxed_cif(self, phase_key: str) -> str:
        return self._join("phases", phase_key, "relaxed.cif")

    def element_dir(self, element: str, reference_key: str) -> str:
        return self._join("elements", element, reference_key)

    def element_record(self, element: str, reference_key: str) -> str:
        return self._join("elements", element, reference_key, "relax.json")

    @property
    def phases_dir(self) -> str:
        return self._join("phases")

    def phase_dir(self, phase_key: str) -> str:
        return self._join("phases", phase_key)

    def phase_start_cif(self, phase_key: str) -> str:
        """The known structure as chosen (written by the compare_known job, read by the phase's relaxation)."""
        return self._join("phases", phase_key, "start.cif")

    def phase_record(self, phase_key: str) -> str:
        return self._join("phases", phase_key, "relax.json")

    @classmethod
    def of_folder(cls, folder: str | os.PathLike[str]) -> ReferenceLibrary:
        """The library whose :attr:`folder` (``<root>/<settings_key>``) is ``folder``."""
        path = Path(folder)
        return cls(str(path.parent), path.name)

    def element_records_on_disk(self) -> list[tuple[str, str, Path]]:
        """(element, reference key, record path) of every elemental reference record in the library, sorted."""
        records = sorted(Path(self._join("elements")).glob("*/*/relax.json"))
        return [(p.parent.parent.name, p.parent.name, p) for p in records]


def _by_pack_name(paths: Iterable[Path]) -> dict[str, Path]:
    """``pack_<name>.<ext>`` files by ``<name>``, sorted."""
    return {path.stem.removeprefix("pack_"): path for path in sorted(paths)}


def generated_cif_beside(start_cif: str | os.PathLike[str]) -> Path | None:
    """The generated CIF a DFT relaxation compares with, when it started from an ML-relaxed CIF.

    The ML stage writes ``relaxed.cif`` and a copy of the generated CIF,
    ``generated.cif``, in one folder (:meth:`ResultsLayout.ml_relaxed_cif`,
    :meth:`ResultsLayout.ml_generated_cif`); for any other start, ``None``
    (compare with the start itself).
    """
    start = Path(start_cif)
    beside = start.parent / "generated.cif"
    if start.name == "relaxed.cif" and start.parent.parent.name == "structures" and beside.is_file():
        return beside
    return None
