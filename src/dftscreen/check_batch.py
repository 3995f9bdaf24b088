"""Check many input files in parallel: one result per file, byte-identical twins checked once, then dedupe.

The single-file checks are in :mod:`dftscreen.check`; this module owns the
process pool, the order of the results and the wiring into
:mod:`dftscreen.dedupe`.

No single file may sink the batch. The files are handed out one at a time to
worker processes, so the parent always knows which file each worker is on and
since when. A file whose check kills its worker (out of memory, a signal) costs
only that worker, which is replaced; the file is checked again alone, and if it
kills a worker then too it gets a row saying so. A file whose check runs longer
than ``check.max_seconds_per_file`` has its worker killed and replaced and gets
a row saying so. Workers end when the parent process dies (no orphans left running).
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
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess

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


def timed_out_reason(max_seconds: float) -> str:
    """Reason of a file whose check ran longer than ``max_seconds`` (``check.max_seconds_per_file``)."""
    return (
        f"the check of this file took longer than check.max_seconds_per_file = {max_seconds:g} s and was "
        "stopped (its worker process was ended and replaced); every other file was checked"
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


def _context() -> BaseContext:
    """Fork where the system can (workers start in milliseconds with pymatgen imported), else the default."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def new_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process.

    Forked where the system can (workers start in milliseconds with pymatgen
    already imported), else the system's default start method.
    """
    context = _context()
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


def _lost_result(item: InputFile, reason: str) -> CheckResult:
    """The row of a file whose check gave no result (its worker died, or it ran out of time)."""
    return CheckResult(
        structure_id=item.structure_id,
        source_file=item.relative_path,
        valid=False,
        status=status_codes.INVALID,
        id_note=item.id_note,
        reason=reason,
        crystallm_reason=reason,
        input_columns=dict(item.extra_columns),
    )


Pair = tuple[CheckResult, "Structure | None"]


def _serve(conn: Connection, parent_pid: int, args: tuple) -> None:
    """Worker process: check each ``(index, item)`` received and send back ``(index, pair)``; runs until killed.

    A check that raises (check_item itself never does) is sent back as its message.
    """
    _die_with_parent(parent_pid)
    while True:
        try:
            index, item = conn.recv()
        except EOFError:
            return
        try:
            outcome: Pair | str = _check_chunk([item], *args)[0]
        except Exception as exc:
            outcome = f"the check of this file failed: {type(exc).__name__}: {exc}"
        conn.send((index, outcome))


@dataclass
class _Worker:
    """One worker process, its end of the pipe and the file it is checking (``index``, since ``started``)."""

    process: BaseProcess
    conn: Connection
    index: int | None = None
    started: float = 0.0


@dataclass
class _Outcome:
    """What became of the files of one :func:`_run_one_by_one`: results, and the files without one."""

    done: dict[int, Pair] = field(default_factory=dict)
    died: list[int] = field(default_factory=list)
    timed_out: list[int] = field(default_factory=list)


def _start_worker(context: BaseContext, args: tuple) -> _Worker:
    """A new worker process waiting for files."""
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_serve, args=(child_end, os.getpid(), args), daemon=True)
    process.start()
    child_end.close()  # only the worker holds it now: its death closes the pipe
    return _Worker(process, parent_end)


def _stop_worker(worker: _Worker) -> None:
    """Kill a worker (idle, dead or over time: nothing of it is kept) and reap it."""
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join()
    worker.conn.close()


def _assign(worker: _Worker, index: int, items: list[InputFile], outcome: _Outcome) -> bool:
    """Send file ``index`` to an idle worker; False (and the file counted as died) if the worker has gone."""
    try:
        worker.conn.send((index, items[index]))
    except OSError:
        outcome.died.append(index)
        return False
    worker.index, worker.started = index, time.monotonic()
    return True


def _collect(worker: _Worker, items: list[InputFile], outcome: _Outcome) -> bool:
    """Take the result of a worker whose pipe is readable; False if it died instead (its file counted as died)."""
    try:
        index, result = worker.conn.recv()
    except (EOFError, OSError):
        outcome.died.append(worker.index)  # type: ignore[arg-type]
        return False
    outcome.done[index] = result if isinstance(result, tuple) else (_lost_result(items[index], result), None)
    worker.index = None
    return True


def _run_one_by_one(
    indices: Iterable[int], items: list[InputFile], workers: int, args: tuple, *, max_seconds: float
) -> _Outcome:
    """Check ``items[i]`` for every index in up to ``workers`` processes, one file at a time per process.

    A worker that dies costs only its file (``died``); a file checked for more
    than ``max_seconds`` has its worker killed (``timed_out``). Either way the
    worker is replaced and the other files go on.
    """
    context = _context()
    queue = deque(indices)
    outcome = _Outcome()
    pool: list[_Worker] = []
    try:
        while queue or any(w.index is not None for w in pool):
            while queue and len(pool) < workers:
                pool.append(_start_worker(context, args))
            for worker in [w for w in pool if w.index is None]:
                if queue and not _assign(worker, queue.popleft(), items, outcome):
                    pool.remove(worker)
                    _stop_worker(worker)
            busy = [w for w in pool if w.index is not None]
            if not busy:
                continue
            deadline = min(w.started for w in busy) + max_seconds
            ready = wait([w.conn for w in busy], timeout=max(0.0, deadline - time.monotonic()))
            for worker in busy:
                if worker.conn in ready:
                    if _collect(worker, items, outcome):
                        continue
                elif time.monotonic() - worker.started > max_seconds:
                    outcome.timed_out.append(worker.index)  # type: ignore[arg-type]
                else:
                    continue
                pool.remove(worker)
                _stop_worker(worker)
    finally:
        for worker in pool:
            _stop_worker(worker)
    return outcome


def _check_isolated(items: list[InputFile], workers: int, args: tuple, *, max_seconds: float) -> list[Pair]:
    """Check ``items`` in ``workers`` processes so that one file costs at most its own row.

    The files go out one at a time (slow structures spread over the workers and
    no core idles at the end). A file whose worker died is checked again alone
    (its death may have been another file's memory); dying again it gets
    :data:`WORKER_DIED_REASON`. A file over ``max_seconds`` gets
    :func:`timed_out_reason` at once: a second try would cost as much again.
    """
    first = _run_one_by_one(range(len(items)), items, workers, args, max_seconds=max_seconds)
    alone = _run_one_by_one(sorted(first.died), items, 1, args, max_seconds=max_seconds)
    results = {**first.done, **alone.done}
    for i in alone.died:
        results[i] = (_lost_result(items[i], WORKER_DIED_REASON), None)
    for i in first.timed_out + alone.timed_out:
        results[i] = (_lost_result(items[i], timed_out_reason(max_seconds)), None)
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
        # A structure with DFT settings of its own has its own size estimate: checked on its own.
        if item.content is None or settings.reference_algorithms or item.structure_id in settings.structure_size_gates:
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
        pairs = _check_isolated(to_check, max(workers, 1), args, max_seconds=settings.max_seconds_per_file)
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

    With ``workers > 1`` the files are handed out one at a time to that many
    processes (a process is replaced only when its file killed it or ran over
    ``settings.max_seconds_per_file``). ``isolate``: never check in this process,
    so that a file that kills its process or runs too long costs only its own
    row even with one worker (the workflow's check job does this); files checked
    in this process have no time limit.
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
