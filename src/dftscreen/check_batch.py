"""Check many input files in parallel: one result per file, byte-identical twins checked once, then dedupe.

The single-file checks are in :mod:`dftscreen.check`; this module owns the
process pool, the order of the results and the wiring into
:mod:`dftscreen.dedupe`.

No single file may sink the batch. A file's check that kills its worker process
(out of memory, a signal) breaks the pool; the files whose checks finished keep
their results, the others are checked again, and a file whose check kills a
worker even when it runs alone gets a row saying so. Workers end when the
parent process dies (no orphans left running).
"""

from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from pymatgen.core import Structure

from dftscreen import status_codes
from dftscreen.check import CheckResult, CheckSettings, check_item
from dftscreen.cif_reader import StructureReadError, read_bounded
from dftscreen.dedupe import (
    Candidate,
    MatchSettings,
    by_formula,
    duplicate_reason,
    group_one_formula,
    group_one_formula_plain,
    reduced_for_matching,
)
from dftscreen.inputs import InputFile

__all__ = ["check_all", "check_and_deduplicate"]

#: Reason of a file whose check killed its worker process even when run alone.
WORKER_DIED_REASON = (
    "the check of this file killed its worker process, also when run alone (most likely out of memory, "
    "or a signal from outside); every other file was checked"
)


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker once its parent is gone (checked every second)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: make sure a worker never outlives the process that started it.

    Python's pool workers wait forever for work when their parent is killed, so
    Linux's parent-death signal kills them at once, and a watchdog thread covers
    every other system.
    """
    if sys.platform.startswith("linux"):
        try:
            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def new_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process.

    Forked where the system can (workers start in milliseconds with pymatgen
    already imported), else the system's default start method.
    """
    context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_die_with_parent, initargs=(os.getpid(),)
    )


def _check_chunk(
    items: list[InputFile],
    settings: CheckSettings,
    available_elements: set[str] | None,
    match: MatchSettings | None,
) -> list[tuple[CheckResult, Structure | None]]:
    """Check a chunk of files in one process.

    With ``match`` settings, also return each dft_ready structure reduced for
    StructureMatcher (the costly part of dedupe, done here in parallel); else no structures.
    """
    out = []
    for item in items:
        result, structure = check_item(item, settings, available_elements)
        reduced = None
        # valid, not dft_ready: a structure the size gate refused cannot represent a group.
        if match is not None and result.valid and structure is not None:
            reduced = structure if settings.reference_algorithms else reduced_for_matching(structure, match)
        out.append((result, reduced))
    return out


def _with_content(item: InputFile, max_file_bytes: int) -> InputFile:
    """The item with its bytes loaded; unchanged if the file is too large or unreadable (the check reports that).

    A file larger than ``max_file_bytes`` is never read.
    """
    if item.content is not None:
        return item
    try:
        return replace(item, content=read_bounded(item.path, max_file_bytes))
    except StructureReadError:
        return item


def _twin_result(checked: CheckResult, item: InputFile) -> CheckResult:
    """The result of a byte-identical file, relabelled for ``item``."""
    return replace(
        checked,
        structure_id=item.structure_id,
        source_file=item.relative_path,
        id_note=item.id_note,
        input_columns=dict(item.extra_columns),
        parse_warnings=list(checked.parse_warnings),
    )


def _worker_died_result(item: InputFile) -> CheckResult:
    return CheckResult(
        structure_id=item.structure_id,
        source_file=item.relative_path,
        valid=False,
        status=status_codes.INVALID,
        id_note=item.id_note,
        reason=WORKER_DIED_REASON,
        crystallm_reason=WORKER_DIED_REASON,
        input_columns=dict(item.extra_columns),
    )


Pair = tuple[CheckResult, "Structure | None"]


def _one_file_per_task(
    indices: list[int], items: list[InputFile], workers: int, args: tuple
) -> tuple[dict[int, Pair], list[int]]:
    """Check ``items[i]`` for every index, one task each, in a fresh pool.

    Returns the results that came back and, in submission order, the indices
    whose task did not (the pool broke before or while running them).
    """
    done: dict[int, Pair] = {}
    unfinished = []
    pool = new_pool(workers)
    try:
        futures = [(i, pool.submit(_check_chunk, [items[i]], *args)) for i in indices]
        for i, future in futures:
            try:
                done[i] = future.result()[0]
            except BrokenProcessPool:
                unfinished.append(i)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return done, unfinished


def _check_isolated(items: list[InputFile], workers: int, args: tuple) -> list[Pair]:
    """Check ``items`` in ``workers`` processes so that a dying worker costs one file, not the batch.

    First many small strided chunks (slow structures spread over the workers and
    no core idles at the end). If a worker dies, the pool breaks and every
    unfinished chunk's files are checked again one file per task; after another
    break, the first ``2 * workers + 1`` unfinished files (those that may have
    been in a worker or its queue) are each checked alone in a one-worker pool,
    the rest again together. A file that kills a worker when alone gets
    :data:`WORKER_DIED_REASON`.
    """
    results: dict[int, Pair] = {}
    pending: list[int] = []
    n_chunks = min(len(items), 64)
    chunks = [list(range(len(items)))[i::n_chunks] for i in range(n_chunks)]
    pool = new_pool(workers)
    try:
        futures = [(chunk, pool.submit(_check_chunk, [items[i] for i in chunk], *args)) for chunk in chunks]
        for chunk, future in futures:
            try:
                results.update(zip(chunk, future.result()))
            except BrokenProcessPool:
                pending += chunk
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    pending.sort()
    while pending:
        done, unfinished = _one_file_per_task(pending, items, workers, args)
        results.update(done)
        in_flight = 2 * workers + 1
        for i in unfinished[:in_flight]:
            alone, died = _one_file_per_task([i], items, 1, args)
            results.update(alone)
            if died:
                results[i] = (_worker_died_result(items[i]), None)
        pending = unfinished[in_flight:]
    return [results[i] for i in range(len(items))]


def _run_checks(
    items: list[InputFile],
    settings: CheckSettings,
    available_elements: set[str] | None,
    workers: int,
    match: MatchSettings | None,
    isolate: bool = False,
) -> tuple[list[tuple[CheckResult, Structure | None]], dict[str, str]]:
    """Check every item once per distinct content, in ``workers`` processes (1: in this process, unless ``isolate``).

    Generated sets are full of byte-identical files (CrystaLLM samples the same
    text many times): those are checked once and share the verdicts. Returns
    the results in input order (structures only for the checked copy) and, for
    every twin, the id of the copy that was checked (the smallest id, so
    dedupe's order by (volume, id) is unchanged).
    """
    loaded = [_with_content(item, settings.max_file_bytes) for item in items]
    by_digest: dict[bytes, InputFile] = {}
    checked_as: dict[str, str] = {}
    for item in sorted(loaded, key=lambda i: i.structure_id):
        if item.content is None or settings.reference_algorithms:
            continue
        digest = hashlib.sha256(item.content).digest()
        first = by_digest.setdefault(digest, item)
        if first is not item:
            checked_as[item.structure_id] = first.structure_id
    to_check = [item for item in loaded if item.structure_id not in checked_as]
    args = (settings, available_elements, match)
    if workers <= 1 and not isolate:
        pairs = _check_chunk(to_check, *args)
    else:
        pairs = _check_isolated(to_check, max(workers, 1), args)
    by_id = {pair[0].structure_id: pair for pair in pairs}
    ordered = []
    for item in loaded:
        first_id = checked_as.get(item.structure_id)
        if first_id is None:
            ordered.append(by_id[item.structure_id])
        else:
            ordered.append((_twin_result(by_id[first_id][0], item), None))
    return ordered, checked_as


def _effective_workers(workers: int, n_items: int) -> int:
    return max(1, min(workers, os.cpu_count() or 1, n_items // 8 or 1))


def check_all(
    items: list[InputFile],
    available_elements: set[str] | None = None,
    settings: CheckSettings = CheckSettings(),
    workers: int = 1,
    isolate: bool = False,
) -> list[CheckResult]:
    """Check every input file; one result per file, in input order (no deduplication).

    With ``workers > 1`` the files are split into chunks checked in that many
    processes (one process per worker, never one per file). ``isolate``: never
    check in this process, so that a file that kills its process costs only its
    own row even with one worker (the workflow's check job does this).
    """
    workers = _effective_workers(workers, len(items))
    return [r for r, _ in _run_checks(items, settings, available_elements, workers, None, isolate)[0]]


def check_and_deduplicate(
    items: list[InputFile],
    settings: CheckSettings = CheckSettings(),
    match: MatchSettings = MatchSettings(),
    available_elements: set[str] | None = None,
    workers: int = 1,
    isolate: bool = False,
) -> list[CheckResult]:
    """Check every file, then mark duplicates among the dft_ready ones.

    A duplicate keeps ``dft_ready`` True but gets ``valid`` False, status
    ``duplicate`` and ``duplicate_of`` its representative's id, so only one
    structure per group goes to DFT. Uses ``workers`` processes for both stages;
    ``isolate`` as in :func:`check_all`.
    """
    workers = _effective_workers(workers, len(items))
    pairs, checked_as = _run_checks(items, settings, available_elements, workers, match, isolate)
    # Byte-identical twins take part once (as their smallest id) and share its outcome below.
    candidates = [
        Candidate(
            r.structure_id, r.reduced_formula or "", r.volume_per_formula_unit_A3 or 0.0, s,
            reduced=not settings.reference_algorithms,
        )
        for r, s in pairs
        if s is not None
    ]
    grouping = group_one_formula_plain if settings.reference_algorithms else group_one_formula
    groups = list(by_formula(candidates).values())
    duplicate_of: dict[str, str] = {}
    if workers == 1 or len(groups) < 2:
        for group in groups:
            duplicate_of.update(grouping(group, match))
    else:
        # Largest formulas first so the two processes finish together.
        groups.sort(key=len, reverse=True)
        pool = new_pool(workers)
        try:
            futures = [(g, pool.submit(grouping, g, match)) for g in groups]
            for group, future in futures:
                try:
                    duplicate_of.update(future.result())
                except BrokenProcessPool:  # a worker died: group this formula here instead
                    duplicate_of.update(grouping(group, match))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    results = [r for r, _ in pairs]
    in_dedupe = {c.structure_id for c in candidates}
    for twin, first in checked_as.items():
        if first in in_dedupe:
            # Same bytes, same crystal: pairwise matching would put it with its first copy's representative.
            duplicate_of[twin] = duplicate_of.get(first, first)
    for result in results:
        representative = duplicate_of.get(result.structure_id)
        if representative is not None:
            result.duplicate_of = representative
            result.valid = False
            result.status = status_codes.DUPLICATE
            result.reason = duplicate_reason(representative, match)
    return results
