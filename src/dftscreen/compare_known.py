"""The compare_known job: every run's one look at its known sets (see workflow/rules/known.smk).

For the structures of a run it writes two tables:

- ``known/novelty.json``: per structure id, ``smact_valid`` (every row with a formula),
  and for every structure that parsed and is no duplicate (the DFT-bound ones and the
  others, e.g. one with an element without a PAW dataset: :func:`read_other_parsed`)
  ``novel`` / ``matches_known_id`` against the database and ``novel_vs_training`` /
  ``matches_training_id`` against the optional training set (a duplicate takes its
  representative's in the table);
- ``known/competing_phases.json``: the database phases chosen for the hull of the DFT
  structures' chemical systems (:mod:`dftscreen.competing`), the notes on what was left
  out, and the labels of the known sets. Each chosen phase's structure is written to the
  reference library as ``phases/<key>/start.cif``, the input of its relaxation.

Both name the known sets by label (with the count of unreadable entries skipped) and carry,
under ``notes``, one sentence per set with skipped entries (count, first ids, first reason);
:func:`job_log` gives the jobs their log and says a failure there in one sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pymatgen.core import Composition, Structure
from pymatgen.io.cif import CifWriter

from dftscreen.columns import NOVELTY_COLUMNS, RELAXED_NOVELTY_COLUMNS
from dftscreen.competing import choose_competing_phases
from dftscreen.dedupe import MatchSettings
from dftscreen.inputs import InputFile
from dftscreen.known import KnownSet, KnownSetError, one_line
from dftscreen.known_index import read_known_set
from dftscreen.layout import ReferenceLibrary
from dftscreen.novelty import match_against_known
from dftscreen.reflib import write_if_changed, write_settings_note
from dftscreen.smact_check import smact_valid


def _read_structures(dft_cifs: dict[str, str]) -> list[tuple[str, Any]]:
    from dftscreen.cif_reader import read_structure

    structures = []
    for structure_id, path in dft_cifs.items():
        structure, _ = read_structure(path)
        structures.append((structure_id, structure))
    return structures


def other_parsed_ids(checks: list[dict[str, Any]], dft_ids: Collection[str]) -> list[str]:
    """Ids of the structures that parsed (their check record has a formula), are no duplicate
    and are not in ``dft_ids``: not ``dft_ready`` (no PAW dataset, atoms too close, ...) or too large."""
    return [check["structure_id"] for check in checks
            if check.get("reduced_formula") and not check.get("duplicate_of") and check["structure_id"] not in dft_ids]


def read_input_structures(
    inputs: Mapping[str, InputFile], structure_ids: list[str], *, max_file_bytes: int, log: logging.Logger
) -> list[tuple[str, Structure]]:
    """The structures of the given inputs, read as the check read them (a file's bytes or a table row's text).

    One that cannot be read now (gone, changed since the check) is left out with a warning:
    it only loses its novelty, never the other rows theirs.
    """
    from dftscreen.cif_reader import decode_cif_bytes, read_bounded, read_cif_text

    structures = []
    for structure_id in structure_ids:
        item = inputs.get(structure_id)
        if item is None:
            log.warning("%s: no longer an input of the run, no novelty", structure_id)
            continue
        try:
            raw = item.content if item.content is not None else read_bounded(item.path, max_file_bytes)
            text, _ = decode_cif_bytes(raw, max_file_bytes)
            structures.append((structure_id, read_cif_text(text).structure))
        except Exception as exc:  # one unreadable input must not cost the other rows their novelty
            log.warning("%s: input not readable now (%s), no novelty", structure_id, one_line(exc))
    return structures


def read_other_parsed(
    checks: list[dict[str, Any]], dft_ids: Collection[str], run_config: dict[str, Any], log: logging.Logger
) -> list[tuple[str, Structure]]:
    """The structures of :func:`other_parsed_ids`, read from the run's inputs as the check found them.

    The inputs are listed as the check job lists them (``input``, ``output_dir`` and
    :func:`dftscreen.inputs.workflow_paths` of ``run_config``, the run's config), only when such
    a structure exists. No Snakemake input declares them: the check table, an input of the
    job, changes whenever they do.
    """
    from dftscreen.check import CheckSettings
    from dftscreen.inputs import discover_inputs, workflow_paths

    structure_ids = other_parsed_ids(checks, dft_ids)
    if not structure_ids:
        return []
    items = discover_inputs(dict(run_config["input"]), run_config["output_dir"], workflow_paths(run_config))
    inputs = {item.structure_id: item for item in items}
    max_file_bytes = CheckSettings.from_config(dict(run_config["check"])).max_file_bytes
    structures = read_input_structures(inputs, structure_ids, max_file_bytes=max_file_bytes, log=log)
    log.info("novelty also for %d parsed structures that do not go to DFT", len(structures))
    return structures


def compare_with_known(
    checks: list[dict[str, Any]],
    dft_cifs: dict[str, str],
    known_config: dict[str, Any],
    match: MatchSettings,
    choose_phases: bool,
    library_folder: str,
    settings: dict[str, Any],
    ml_energies_per_atom: dict[str, float] | None = None,
    workers: int = 1,
    log: logging.Logger | None = None,
    known_index_dir: str | None = None,
    other_structures: list[tuple[str, Structure]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Novelty table and chosen competing phases of one run (see the module docstring).

    Args:
        checks: the check records (checks.json).
        dft_cifs: structure id -> CIF path of every structure going to DFT (matched, and their
            chemical systems get competing phases).
        known_config: the config section ``known_materials``.
        library_folder: ``<library>/<settings key>`` of this run's DFT settings.
        settings: the run's DFT settings (kept beside the library's results as settings.json).
        ml_energies_per_atom: the ML stage's energies of database entries (eV/atom, by id), if any.
        known_index_dir: where JSON known sets keep their index (:mod:`dftscreen.known_index`);
            ``None``: the JSON is parsed every run.
        other_structures: ``(id, structure)`` of the other parsed structures (:func:`read_other_parsed`):
            matched too, but no competing phases are chosen for them.
    """
    log = log or logging.getLogger(__name__)
    rows: dict[str, dict[str, Any]] = {}
    for check in checks:
        formula = check.get("reduced_formula")
        rows[check["structure_id"]] = {"smact_valid": smact_valid(formula) if formula else None}
    structures = _read_structures(dft_cifs) if dft_cifs else []
    labels: dict[str, str | None] = {}
    known_notes: list[str] = []
    database: KnownSet | None = None
    for name, (novel_column, id_column) in NOVELTY_COLUMNS.items():
        known = read_known_set(known_config[name], index_dir=known_index_dir)
        labels[name] = known.label if known else None
        if known is None:
            continue
        if name == "database":
            database = known
        log.info("known set %s: %s", name, known.label)
        known_notes += [known.skipped_note] if known.skipped_note else []
        matched = structures + list(other_structures or [])
        for structure_id, result in match_against_known(matched, known, match, workers).items():
            rows[structure_id].update({novel_column: result.novel, id_column: result.match_id})
    novelty = {"known_set": labels["database"], "training_set": labels["training"], "notes": known_notes,
               "structures": rows}

    chosen, notes = [], []
    if choose_phases and database is not None:
        systems = [{el.symbol for el in structure.composition.elements} for _, structure in structures]
        systems += [{el.symbol for el in Composition(check["reduced_formula"]).elements}
                    for check in checks if check["structure_id"] in dft_cifs and check.get("reduced_formula")]
        phase_config = known_config["competing_phases"]
        chosen, notes = choose_competing_phases(
            systems, database,
            max_above_hull_eV_per_atom=phase_config["max_above_hull_eV_per_atom"],
            max_per_system=phase_config["max_per_system"],
            max_sites=phase_config["max_sites"],
            include_elements=phase_config["include_elements"],
            energies_per_atom=ml_energies_per_atom,
        )
        library = ReferenceLibrary.of_folder(library_folder)
        write_settings_note(Path(library_folder), settings)
        entries = {e.entry_id: e for e in database.entries}
        for phase in chosen:
            cif_text = str(CifWriter(entries[phase.entry_id].structure()))
            write_if_changed(Path(library.phase_start_cif(phase.phase_key)), cif_text)
        for note in notes:
            log.info("competing phases: %s", note)
    if database is not None and database.skipped_note:
        notes = [database.skipped_note, *notes]
    phases = {
        "known_set": labels["database"],
        "library": library_folder,
        "phases": [phase.to_dict() for phase in chosen],
        "notes": notes,
    }
    return novelty, phases


def relaxed_novelty(
    relax_records: dict[str, str],
    known_config: dict[str, Any],
    match: MatchSettings,
    workers: int = 1,
    known_index_dir: str | None = None,
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Novelty of every DFT-relaxed structure against the known database (``known/novelty_relaxed.json``).

    A generated structure may relax into a known crystal (a distorted rocksalt into
    rocksalt): novelty of the generated structure measures memorisation, novelty of the
    relaxed one is what S.U.N. rates count (MatterGen judges relaxed structures).
    Only relaxations with a relaxed CIF (``relaxed`` or ``not_converged``) are compared;
    the others are absent.

    Args:
        relax_records: structure id -> path of its relax.json (the relaxed CIF is beside it).
        known_config: the config section ``known_materials`` (its ``database`` is used).
    """
    from dftscreen.cif_reader import read_structure
    from dftscreen.io import read_json

    log = log or logging.getLogger(__name__)
    known = read_known_set(known_config["database"], index_dir=known_index_dir)
    structures: dict[str, dict[str, Any]] = {}
    if known is None:
        return {"known_set": None, "structures": structures}
    relaxed = []
    for structure_id, record_path in sorted(relax_records.items()):
        try:
            record = read_json(record_path)
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable relax record %s (%s)", structure_id, record_path, exc)
            continue
        if not record.get("relaxed_cif"):
            continue
        try:
            structure, _ = read_structure(Path(record_path).parent / record["relaxed_cif"])
        except Exception as exc:  # one unreadable file must not cost the other rows their novelty
            log.warning("%s: relaxed CIF not readable (%s)", structure_id, exc)
            continue
        relaxed.append((structure_id, structure))
    novel_column, id_column = RELAXED_NOVELTY_COLUMNS
    for structure_id, result in match_against_known(relaxed, known, match, workers).items():
        structures[structure_id] = {novel_column: result.novel, id_column: result.match_id}
    log.info("relaxed novelty: %d structures against %s", len(structures), known.label)
    return {"known_set": known.label, "notes": [known.skipped_note] if known.skipped_note else [],
            "structures": structures}


@contextmanager
def job_log(job: str, log_path: str | None) -> Iterator[logging.Logger]:
    """The logger of a known-stage job whose records (and the library's, INFO and up) go to ``log_path``.

    A failure is said in the log as one sentence: a known set that cannot be used
    (:class:`dftscreen.known.KnownSetError`) ends the job with that sentence on stderr too and
    no traceback (``SystemExit``); any other exception is logged so and raised on. The handler
    is removed on leaving (the process may go on, as under pytest).
    """
    root = logging.getLogger()
    handler = logging.FileHandler(log_path, encoding="utf-8") if log_path else None
    if handler is not None:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    log = logging.getLogger(job)
    try:
        yield log
    except KnownSetError as exc:
        message = f"{job} failed: {one_line(exc, 2000)}"
        log.error("%s", message)
        raise SystemExit(message) from None
    except Exception as exc:
        log.error("%s failed: %s: %s", job, type(exc).__name__, one_line(exc, 2000))
        raise
    finally:
        root.setLevel(level)
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
