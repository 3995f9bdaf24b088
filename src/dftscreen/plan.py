"""What jobs a run has: the one plan that the rule files and ``dftscreen status`` both read.

Which elements need a reference and under which library keys, which reference phases
and chosen known phases get a relaxation, which structures share a pack, how the ML
stage splits its batches: each is computed here, by one function, from the run's
config (schema defaults filled in) and the files the workflow writes. The rule files
(``workflow/rules/common.smk``) keep only Snakemake's input functions, which ask a
:class:`RunPlan` made once per Snakemake start; ``dftscreen status``
(:mod:`dftscreen.status`) makes one for the results folder it reads, so it counts the
very jobs Snakemake plans. Paths come from :mod:`dftscreen.layout`.

A :class:`RunPlan` reads each file once (or once per version of the file, where a file
changes while Snakemake runs) and keeps what it computed: a dry run over 100,000 inputs
asks the same questions hundreds of thousands of times.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

from dftscreen.cohorts import CohortSpec, assign_input, cohort_label
from dftscreen.dft_budget import BudgetSample, budget_sample
from dftscreen.dft_pack import PackMember, plan_packs, read_started_packs
from dftscreen.guards import input_manifest
from dftscreen.inputs import (
    InputFile,
    discover_cifs,
    discover_inputs,
    needs_workflow_copy,
    no_input_message,
    table_row_cif_path,
    workflow_paths,
)
from dftscreen.io import atomic_write_text
from dftscreen.layout import ReferenceLibrary, ResultsLayout
from dftscreen.reflib import element_reference_key, phases_to_relax, settings_key
from dftscreen.settings import deep_merge, resolve_settings
from dftscreen.size_gate import MARGIN, GateSettings, estimate_structure, gate_params, route, structure_gate_params


def formula_elements(formulas: Iterable[str | None]) -> set[str]:
    """The chemical elements of reduced formulas (pymatgen's ``Composition``); empty formulas add none."""
    from pymatgen.core import Composition  # seconds of import that only these questions need

    return {element.symbol for formula in formulas if formula for element in Composition(formula).elements}


def element_keys(
    element: str, reference_cifs: Mapping[str, str], folder: Path | None = None, gate: GateSettings | None = None
) -> list[str]:
    """Library keys of an element's candidate structures (``stability.elemental_reference_cifs``).

    ``cif-<hash>`` of the user's CIF for the element, else ``auto-<fingerprint>`` (plus
    ``delta-<fingerprint>`` when the Δ-test structure is another crystal, e.g. α-Sn beside
    β-Sn; :func:`dftscreen.references.automatic_candidate_keys`): a changed starting
    structure never reuses an old result. ``folder``: where relative CIF paths are read
    from (the run folder; None: the current folder). A CIF that cannot be read counts as
    not given (the workflow itself stops at start-up on a missing one). ``gate``: the run's size
    gate, which decides whether a published ground state (α-S, α-Mn) fits or its stand-in is used
    (``standin-<fingerprint>``).
    """
    cif = reference_cifs.get(element)
    if cif:
        try:
            return [element_reference_key(_in_folder(cif, folder))]
        except OSError:
            pass
    from dftscreen.references import automatic_candidate_keys  # ASE's structures: only when asked

    return automatic_candidate_keys(element, gate)


def structure_elements_and_size(path: str | os.PathLike[str]) -> tuple[frozenset[str], int]:
    """Elements and number of atoms of a CIF; none and 1 when it cannot be read (its own job says why)."""
    from dftscreen.cif_reader import read_structure

    try:
        structure, _ = read_structure(path)
    except Exception:  # noqa: BLE001 - any unreadable CIF: reported by its relaxation
        return frozenset(), 1
    return frozenset(el.symbol for el in structure.composition.elements), len(structure)


def cif_too_large(path: str | os.PathLike[str], gate: GateSettings) -> str | None:
    """The size gate's reason (:func:`dftscreen.size_gate.route`) when the DFT of the CIF at ``path`` would
    exceed the limits, with the settings its job uses; None when it fits or cannot be read (its job says why)."""
    from dftscreen.cif_reader import read_structure

    try:
        structure, _ = read_structure(path)
    except Exception:  # noqa: BLE001 - any unreadable CIF: reported by its relaxation
        return None
    symbols = [site.specie.symbol for site in structure]
    decision = route(estimate_structure(symbols, structure.lattice.matrix, gate), gate.policy)
    return decision.reason or None


def n_batches(n_structures: int, batch_size: int) -> int:
    """How many ML jobs share ``n_structures`` (at least one)."""
    return max(1, math.ceil(n_structures / max(1, batch_size)))


def batch_index(structure_id: str, batches: int) -> int:
    """The batch of ``structure_id``: a stable hash of the id, so others keep theirs when one is added."""
    return int(hashlib.sha256(structure_id.encode()).hexdigest()[:12], 16) % batches


def ml_batches(structure_ids: Sequence[str], batch_size: int) -> dict[int, list[str]]:
    """Batch index -> ids, in the order given, for every batch (an empty batch is possible and harmless).

    ``ceil(n / batch_size)`` batches (:func:`n_batches`); an id's batch is a stable hash of the id
    (:func:`batch_index`), so adding a structure moves no other one unless the number of batches grows.
    """
    count = n_batches(len(structure_ids), batch_size)
    batches: dict[int, list[str]] = {n: [] for n in range(count)}
    for sid in structure_ids:
        batches[batch_index(sid, count)].append(sid)
    return batches


def _in_folder(path: str | os.PathLike[str], folder: Path | None) -> Any:
    """``path`` as the run folder ``folder`` gives it (unchanged for None or an absolute path)."""
    if folder is None or os.path.isabs(path):
        return path
    return folder / path


def _version(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The modification time and size of a file or folder; None when it does not exist."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


class RunPlan:
    """The jobs of one run, from its config (schema defaults filled in) and its results folder.

    Args:
        config: the run's config as the workflow validated it (``dftscreen.config.read_run_config``
            for a config file read outside Snakemake).
        folder: the run folder, where relative paths of the config are read from (None: the
            current folder, as in Snakemake, which then gets the paths as the config spells them).
        layout: the results folder (default: the config's ``output_dir``).
        warnings: where to say, once each, which reference phase the size gate leaves without a job
            (Snakemake's main process: stderr; None: say nothing, e.g. in a cluster job or ``dftscreen status``).
    """

    def __init__(
        self, config: Mapping[str, Any], folder: str | os.PathLike[str] | None = None,
        layout: ResultsLayout | None = None, warnings: TextIO | None = None,
    ) -> None:
        self.config = config
        self.warnings = warnings
        #: Reference phases (label -> reason) the size gate left without a DFT job.
        #: Reference or known phases the size gate refused (no DFT job, left out of the hull): label ->
        #: reason and elements (the table notes it in the rows whose hull it would bound).
        self.too_large_phases: dict[str, dict[str, Any]] = {}
        self._gate_reasons: dict[str, str | None] = {}
        self.folder = None if folder is None else Path(folder)
        self.layout = layout or ResultsLayout(config["output_dir"])
        self._stability = config["stability"]
        self._phase_structures: dict[Any, tuple[frozenset[str], int]] = {}
        self._element_keys: dict[str, list[str]] = {}
        self._element_references: dict[tuple[str, str], Any] = {}
        self._element_estimates: dict[tuple[str, str], Any] = {}
        self._check_rows: dict[str, dict[str, Any]] | None = None
        self._chosen_phase_sites: dict[str, int] | None = None
        self._id_files: dict[tuple[str, Any], list[str]] = {}
        self._started: dict[str, Any] = {}
        self._packs: dict[str, Any] = {}
        self._budget: tuple[Sequence[str], list[str]] | None = None

    # --- inputs and settings ----------------------------------------------------------
    @cached_property
    def inputs(self) -> dict[str, InputFile]:
        """Structure id -> input (CIF file or table row), listed once (:func:`dftscreen.inputs.discover_inputs`)."""
        given = self.config["input"]
        # Relative paths as the run folder gives them (ids are relative to cif_dir: unchanged).
        section = {**given, **{k: _in_folder(given[k], self.folder) for k in ("cif_dir", "table") if given.get(k)}}
        out = _in_folder(self.config["output_dir"], self.folder)
        items = discover_inputs(section, out, workflow_paths(self.config, self.folder))
        return {item.structure_id: item for item in items}

    def no_input_message(self) -> str:
        """Why the run has no input (:func:`dftscreen.inputs.no_input_message`), as its folders are given."""
        given = self.config["input"]
        section = {**given, "cif_dir": _in_folder(given["cif_dir"], self.folder) if given.get("cif_dir") else None}
        out = _in_folder(self.config["output_dir"], self.folder)
        return no_input_message(section, out, workflow_paths(self.config, self.folder))

    def input_cif(self, structure_id: str) -> str:
        """The original CIF of one input; for a table row or a file whose path Snakemake cannot take,
        the copy the check job wrote (:func:`dftscreen.inputs.needs_workflow_copy`)."""
        item = self.inputs[structure_id]
        if needs_workflow_copy(item):
            return str(table_row_cif_path(self.layout.inputs_dir, structure_id))
        return str(item.path)

    @cached_property
    def input_manifest(self) -> str:
        """Size, mtime and path of every input file, listed once (:func:`dftscreen.guards.input_manifest`)."""
        return input_manifest(item.path for item in self.inputs.values())

    @cached_property
    def input_manifest_digest(self) -> str:
        """SHA-256 of :attr:`input_manifest`: a param of the job writing it, which then reruns when it changes."""
        return hashlib.sha256(self.input_manifest.encode()).hexdigest()

    @cached_property
    def input_manifest_outdated(self) -> bool:
        """Whether the manifest in the results folder is missing or differs from the inputs now (read once)."""
        try:
            return Path(self.layout.input_manifest).read_text() != self.input_manifest
        except (OSError, UnicodeDecodeError):
            return True

    @cached_property
    def input_manifest_flag(self) -> str | None:
        """The flag the manifest job declares as an output, when it must run and Snakemake cannot know.

        A new :attr:`input_manifest_digest` reruns the job through Snakemake's record of its
        params, but a results folder whose manifest was written before the job existed has
        no such record. There (no log of the job yet), when the manifest is outdated, the job
        declares this flag and the default target asks for it. Elsewhere None: an output
        without a record would keep Snakemake from comparing the params.
        """
        if not self.input_manifest_outdated or Path(self.layout.input_manifest_log).exists():
            return None
        return self.layout.input_manifest_flag

    def write_input_manifest(self, path: str, flag: str | None, log: str) -> None:
        """The job writing the manifest (rule input_manifest): the inputs as listed at start-up, its flag, its log."""
        atomic_write_text(path, self.input_manifest)
        if flag is not None:
            Path(flag).touch()
        else:
            Path(self.layout.input_manifest_flag).unlink(missing_ok=True)
        atomic_write_text(log, f"{len(self.inputs)} inputs (files and table rows) listed in {path}\n")

    @cached_property
    def settings(self) -> dict[str, Any]:
        """The run's DFT settings (preset, overrides, presets, SCF ladder), without per-structure overrides."""
        dft = self.config["dft"]
        return resolve_settings(dft["preset"], dft["overrides"], dft["presets"], dft["scf_ladder"])

    @cached_property
    def settings_json(self) -> str:
        return json.dumps(self.settings, sort_keys=True)

    def structure_settings_json(self, structure_id: str) -> str:
        """One structure's DFT settings as JSON (``dft.structure_overrides`` merged in).

        The same text object for every structure without an override (a dry run of 10,000
        structures asked 30,000 times).
        """
        override = self.config["dft"]["structure_overrides"].get(structure_id)
        if not override:
            return self.settings_json
        return json.dumps(deep_merge(self.settings, override), sort_keys=True)

    @cached_property
    def library(self) -> ReferenceLibrary:
        """The reference library of the run's settings (``stability.reference_library_dir``)."""
        root = self._stability["reference_library_dir"] or self.layout.default_reference_library
        return ReferenceLibrary(root, settings_key(self.settings))

    # --- what the check wrote ----------------------------------------------------------
    def check_row(self, structure_id: str) -> dict[str, Any]:
        """A structure's record of the check table, read once (``{}`` for an id it lacks)."""
        if self._check_rows is None:
            with open(self.layout.checks_table) as handle:
                self._check_rows = {row["structure_id"]: row for row in json.load(handle)}
        return self._check_rows.get(structure_id, {})

    @cached_property
    def size_gate_params(self) -> dict[str, Any]:
        """What the check's size gate needs: what it reads of the run's merged DFT settings (cutoff, k-points
        of relaxation and properties, spin keywords) and ``dft.resources`` (:func:`dftscreen.size_gate.gate_params`)."""
        return gate_params(self.settings, self.config["dft"]["resources"])

    @cached_property
    def check_size_gate_params(self) -> dict[str, Any]:
        """The check's size gate params: :attr:`size_gate_params`, and under ``structure_overrides`` those of each
        structure whose ``dft.structure_overrides`` change what the gate reads (the key only when one does, so the
        check of a run without such overrides keeps its params; :func:`dftscreen.size_gate.structure_gate_params`)."""
        dft = self.config["dft"]
        own = structure_gate_params(self.settings, dft["structure_overrides"], dft["resources"])
        return {**self.size_gate_params, "structure_overrides": own} if own else self.size_gate_params

    def size_estimate(self, structure_id: str, key: str) -> float | None:
        """The size gate's estimate ``key`` for a structure, with its margin (:mod:`dftscreen.size_gate`)."""
        value = self.check_row(structure_id).get(key)
        return None if value is None else MARGIN * value

    def formulas(self, structure_ids: Iterable[str]) -> list[str | None]:
        """Reduced formulas of the given structures from the check table as it is now (read each time)."""
        with open(self.layout.checks_table) as handle:
            checks = {row["structure_id"]: row for row in json.load(handle)}
        return [checks[sid].get("reduced_formula") for sid in structure_ids]

    def read_ids(self, path: str | os.PathLike[str]) -> list[str]:
        """The ids in a one-id-per-line file that are inputs of the run now, read once per version of the file.

        The same list object until the file changes: callers must not modify it. With packs,
        the input functions of 1,250 packs ask for the DFT ids about 9,000 times in a
        100,000-input dry run; reading 10,000 lines each time took 17 s. An id whose input
        has gone since the file was written (a file removed from ``cif_dir``, another
        ``cif_dir``) is left out: its jobs cannot be planned, and the check that reruns for
        the changed inputs writes the file anew.
        """
        stat = os.stat(path)
        key = (str(path), (stat.st_mtime_ns, stat.st_size))
        if key not in self._id_files:
            for old in [k for k in self._id_files if k[0] == key[0]]:
                del self._id_files[old]
            inputs = self.inputs
            with open(path) as handle:
                self._id_files[key] = [sid for line in handle if (sid := line.strip()) and sid in inputs]
        return self._id_files[key]

    # --- the DFT budget --------------------------------------------------------------------
    @cached_property
    def input_cohorts(self) -> dict[str, str]:
        """Structure id -> cohort label (config ``cohorts``; every input ``all`` without it)."""
        spec = CohortSpec.from_config(self.config["cohorts"])
        table = spec.source == "table"
        return {
            sid: cohort_label(
                spec, assign_input(spec, sid, item.relative_path, dict(item.extra_columns) if table else None)
            )
            for sid, item in self.inputs.items()
        }

    def dft_budget(self, candidates: Sequence[str]) -> BudgetSample:
        """The DFT budget's sample of ``candidates`` (:mod:`dftscreen.dft_budget`)."""
        dft = self.config["dft"]
        cohort_of = self.input_cohorts if dft["max_structures_per_cohort"] is not None else {}
        return budget_sample(
            candidates, cohort_of, max_per_cohort=dft["max_structures_per_cohort"], seed=dft["budget_seed"]
        )

    def within_dft_budget(self, candidates: Sequence[str]) -> Sequence[str]:
        """The ids of ``candidates`` that go to DFT: all of them without a budget (the same object).

        Computed once per candidates list (:meth:`read_ids` returns the same list until its
        file changes); callers must not modify the list returned.
        """
        if self.config["dft"]["max_structures_per_cohort"] is None:
            return candidates
        if self._budget is None or self._budget[0] is not candidates:
            self._budget = (candidates, list(self.dft_budget(candidates).selected))
        return self._budget[1]

    # --- references ----------------------------------------------------------------------
    @cached_property
    def gate(self) -> GateSettings:
        """The size gate with the run's merged DFT settings (what reference jobs use) and ``dft.resources``."""
        params = self.size_gate_params
        return GateSettings.from_dft_settings(params["settings"], params["resources"])

    def too_large(self, path: str | os.PathLike[str], label: str) -> bool:
        """Whether the size gate refuses the DFT of a reference CIF (:func:`cif_too_large`), asked once per file.

        A refused one is recorded in :attr:`too_large_phases` and said once on :attr:`warnings`:
        it gets no job, so the hull and formation energies go without it.
        """
        key = str(path)
        if not os.path.exists(key):  # not written yet (a known phase's start CIF) or missing: its job says why
            return False
        if key not in self._gate_reasons:
            reason = self._gate_reasons[key] = cif_too_large(path, self.gate)
            if reason:
                elements = sorted(structure_elements_and_size(path)[0])
                self.too_large_phases[label] = {"reason": reason, "elements": elements}
                if self.warnings is not None:
                    print(f"dftscreen: WARNING: {label} gets no DFT job, left out of the hull: {reason}",
                          file=self.warnings)
        return bool(self._gate_reasons[key])

    @cached_property
    def reference_phases(self) -> dict[str, InputFile]:
        """The user's reference phases (CIFs of ``stability.reference_cif_dir``) that get a relaxation, by
        structure id, listed once; one the size gate refuses is left out (:meth:`too_large`).

        Raises:
            FileNotFoundError: the folder does not exist.
        """
        cif_dir = self._stability["reference_cif_dir"]
        if not cif_dir:
            return {}
        found = {item.structure_id: item for item in discover_cifs(_in_folder(cif_dir, self.folder))}
        return {
            sid: item for sid, item in found.items()
            if not self.too_large(item.path, f"reference phase {sid} ({item.path}, stability.reference_cif_dir)")
        }

    def phase_structure(self, path: str | os.PathLike[str]) -> tuple[frozenset[str], int]:
        """Elements and atoms of a reference phase's CIF, read once (:func:`structure_elements_and_size`)."""
        if path not in self._phase_structures:
            self._phase_structures[path] = structure_elements_and_size(path)
        return self._phase_structures[path]

    def reference_phase_elements(self, phases: Mapping[str, InputFile] | None = None) -> set[str]:
        """Elements of the reference phases (default: the run's :attr:`reference_phases`)."""
        phases = self.reference_phases if phases is None else phases
        return {el for item in phases.values() for el in self.phase_structure(item.path)[0]}

    def elements_needed(
        self, formulas: Iterable[str | None], phases: Mapping[str, InputFile] | None = None
    ) -> list[str]:
        """Elements of the given structures' formulas and of the reference phases, sorted."""
        return sorted(formula_elements(formulas) | self.reference_phase_elements(phases))

    def element_keys(self, element: str) -> list[str]:
        """Library keys of an element's candidates (:func:`element_keys`), computed once per element."""
        if element not in self._element_keys:
            keys = self._element_keys[element] = element_keys(
                element, self._stability["elemental_reference_cifs"], self.folder, self.gate
            )
            if self.warnings is not None and any(key.startswith("standin-") for key in keys):
                from dftscreen.references import ground_state_stand_in, ground_state_too_large

                note = ground_state_stand_in(element, ground_state_too_large(element, self.gate)).note
                print(f"dftscreen: WARNING: {note}", file=self.warnings)
        return self._element_keys[element]

    def element_jobs(self, elements: Iterable[str]) -> list[tuple[str, str]]:
        """(element, library key) of every elemental reference job; none without ``stability.elemental_references``."""
        if not self._stability["elemental_references"]:
            return []
        return [
            (element, key) for element in elements for key in self.element_keys(element)
            if not self._element_cif_too_large(element, key)
        ]

    def _element_cif_too_large(self, element: str, reference_key: str) -> bool:
        """Whether the user's CIF for an element (a ``cif-`` key) is too large for DFT (:meth:`too_large`)."""
        if not reference_key.startswith("cif-"):
            return False
        cif = self._stability["elemental_reference_cifs"][element]
        return self.too_large(_in_folder(cif, self.folder), f"elemental reference {element} ({cif})")

    def element_reference_cifs(self, element: str, reference_key: str = "auto") -> list[str]:
        """The user's CIF standing for the element under a ``cif-`` key; nothing for an automatic candidate."""
        if not reference_key.startswith("cif-"):
            return []
        return [self._stability["elemental_reference_cifs"][element]]

    def _element_reference(self, element: str, reference_key: str) -> Any:
        """The :class:`dftscreen.references.ElementalReference` of an element's candidate (None when it
        has none: its job only writes why), built once per (element, key)."""
        key = (element, reference_key)
        if key not in self._element_references:
            from dftscreen.references import (
                NoElementalReference,
                delta_test_candidate,
                elemental_reference,
                ground_state_stand_in,
            )

            try:
                if reference_key.startswith("delta-"):
                    reference = delta_test_candidate(element)
                elif reference_key.startswith("standin-"):
                    reference = ground_state_stand_in(element)
                else:
                    cifs = self.element_reference_cifs(element, reference_key)
                    reference = elemental_reference(element, cif=cifs[0] if cifs else None, gate=self.gate)
            except NoElementalReference:
                reference = None
            self._element_references[key] = reference
        return self._element_references[key]

    def job_estimate(self, wildcards: Any, key: str) -> float | None:
        """:meth:`size_estimate` for a structure's job (wildcard ``sid``), :meth:`element_estimate` for an
        element's reference job (wildcards ``element`` and ``ekey``)."""
        if hasattr(wildcards, "ekey"):
            return self.element_estimate(wildcards.element, wildcards.ekey, key)
        return self.size_estimate(wildcards.sid, key)

    def element_n_atoms(self, element: str, reference_key: str = "auto") -> int:
        """Atoms in the cell of an element's candidate (what its job's resources scale with), computed once."""
        reference = self._element_reference(element, reference_key)
        return len(reference.atoms) if reference is not None else 1

    def element_estimate(self, element: str, reference_key: str, key: str) -> float | None:
        """The size gate's estimate ``key`` (the check table's ``dft_estimate_runtime_min`` or
        ``dft_estimate_mem_MB_per_rank``, as :meth:`size_estimate`) of an element candidate's DFT with
        its margin, which enlarges its job as a generated structure's (α-Mn at
        ``fast``: 11.8 h and 5.0 GB per rank where the per-atom rule gives 2.9 h and 2.4 GB); None for
        a molecule (Γ point only) or an element without a reference."""
        reference = self._element_reference(element, reference_key)
        if reference is None or reference.kind != "crystal":
            return None
        cell = (element, reference_key)
        if cell not in self._element_estimates:
            atoms = reference.atoms
            self._element_estimates[cell] = estimate_structure(atoms.get_chemical_symbols(), atoms.cell[:], self.gate)
        estimate = self._element_estimates[cell]
        return MARGIN * {"dft_estimate_runtime_min": estimate.runtime_min,
                         "dft_estimate_mem_MB_per_rank": estimate.mem_mb_per_task}[key]

    # --- known phases (known_materials) --------------------------------------------------
    @property
    def competing_phases_wanted(self) -> bool:
        """Whether compare_known chooses known phases to relax (a database, competing phases and elements on)."""
        known = self.config["known_materials"]
        return bool(known["database"]["path"]) and known["competing_phases"]["enabled"] and bool(
            self._stability["elemental_references"]
        )

    def competing_phase_keys(self, chosen: Mapping[str, Any]) -> list[str]:
        """Keys of the chosen known phases (``known/competing_phases.json``) that get a relaxation.

        An elemental phase with the very structure of one of its element's candidates is
        computed once, as the element (:func:`dftscreen.reflib.phases_to_relax`). A phase the size gate
        refuses (its start CIF in the library, :meth:`too_large`) gets none.
        """
        keys = phases_to_relax(chosen, self.element_keys, self._stability["elemental_references"])
        return [key for key in keys if not self.too_large(self.library.phase_start_cif(key), f"known phase {key}")]

    def competing_phase_n_atoms(self, phase_key: str) -> int:
        """Atoms of a chosen known phase, from compare_known's table (read once; 1 for a key it lacks)."""
        if self._chosen_phase_sites is None:
            with open(self.layout.competing_phases) as handle:
                self._chosen_phase_sites = {p["phase_key"]: p["n_sites"] for p in json.load(handle)["phases"]}
        return self._chosen_phase_sites.get(phase_key, 1)

    # --- packs (dft.structures_per_pack, dftscreen.dft_pack) -----------------------------
    def started_packs(self) -> tuple[Any, dict[str, list[str]]]:
        """The version of the packs' members folder and the members of every pack that started.

        Read again only when the folder changed (each members file is written by rename,
        which changes the folder's mtime): every pack's functions ask, 9,000 times in a
        100,000-input dry run.
        """
        version = _version(self.layout.pack_members_dir)
        if self._started.get("version", -1) != version:
            self._started.update(version=version, packs=read_started_packs(self.layout))
        return self._started["version"], self._started["packs"]

    def packs(self, structure_ids: Sequence[str]) -> dict[str, list[str]]:
        """Pack name -> structure ids (:func:`dftscreen.dft_pack.plan_packs`) of the structures going to DFT.

        Packs that started keep their structures; the others form new packs. Planned once per
        id list (the same object, :meth:`read_ids`) and version of the started packs.
        """
        version, started = self.started_packs()
        if self._packs.get("ids") is not structure_ids or self._packs.get("version") != version:
            packs = plan_packs(structure_ids, self.config["dft"]["structures_per_pack"], started)
            self._packs = {"ids": structure_ids, "version": version, "packs": packs, "members": {}}
        return self._packs["packs"]

    def pack_members(
        self, structure_ids: Sequence[str], pack: str, member: Callable[[str], PackMember]
    ) -> list[PackMember]:
        """The members of a pack, each made by ``member(structure id)`` once per plan of the packs."""
        packs = self.packs(structure_ids)
        members = self._packs["members"]
        if pack not in members:
            members[pack] = [member(sid) for sid in packs[pack]]
        return members[pack]

    # --- the ML stage ----------------------------------------------------------------------
    def ml_batches(self, structure_ids: Sequence[str]) -> dict[int, list[str]]:
        """The ML batches of the given (valid) ids (:func:`ml_batches`, ``ml.batch_size`` each)."""
        return ml_batches(structure_ids, self.config["ml"]["batch_size"])
