"""Check many input files in parallel: one result per file, byte-identical twins checked once, then dedupe.

The single-file checks are in :mod:`dftscreen.check`; this module owns the
process pool, the order of the results and the wiring into
:mod:`dftscreen.dedupe`.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from pymatgen.core import Structure

from dftscreen import status_codes
from dftscreen.check import CheckResult, CheckSettings, _check_item
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
        result, structure = _check_item(item, settings, available_elements)
        reduced = None
        if match is not None and result.dft_ready and structure is not None:
            reduced = structure if settings.reference_algorithms else reduced_for_matching(structure, match)
        out.append((result, reduced))
    return out


def _with_content(item: InputFile) -> InputFile:
    """The item with its bytes loaded (unchanged if the file cannot be read: the check reports that)."""
    if item.content is not None:
        return item
    try:
        return replace(item, content=Path(item.path).read_bytes())
    except OSError:
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


def _run_checks(
    items: list[InputFile],
    settings: CheckSettings,
    available_elements: set[str] | None,
    pool: ProcessPoolExecutor | None,
    match: MatchSettings | None,
) -> tuple[list[tuple[CheckResult, Structure | None]], dict[str, str]]:
    """Check every item once per distinct content.

    Generated sets are full of byte-identical files (CrystaLLM samples the same
    text many times): those are checked once and share the verdicts. Returns
    the results in input order (structures only for the checked copy) and, for
    every twin, the id of the copy that was checked (the smallest id, so
    dedupe's order by (volume, id) is unchanged).
    """
    loaded = [_with_content(item) for item in items]
    by_digest: dict[bytes, InputFile] = {}
    checked_as: dict[str, str] = {}
    digest_of: dict[str, bytes | None] = {}
    for item in sorted(loaded, key=lambda i: i.structure_id):
        digest = hashlib.sha256(item.content).digest() if item.content is not None else None
        digest_of[item.structure_id] = digest
        if digest is None:
            continue
        if settings.reference_algorithms:
            continue
        first = by_digest.setdefault(digest, item)
        if first is not item:
            checked_as[item.structure_id] = first.structure_id
    to_check = [item for item in loaded if item.structure_id not in checked_as]
    if pool is None:
        pairs = _check_chunk(to_check, settings, available_elements, match)
    else:
        # Many small strided chunks: slow structures spread over the workers and no core idles at the end.
        n_chunks = min(len(to_check), 64)
        chunks = [to_check[i::n_chunks] for i in range(n_chunks)]
        futures = [pool.submit(_check_chunk, chunk, settings, available_elements, match) for chunk in chunks]
        pairs = [pair for future in futures for pair in future.result()]
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
) -> list[CheckResult]:
    """Check every input file; one result per file, in input order (no deduplication).

    With ``workers > 1`` the files are split into chunks checked in that many
    processes (one process per worker, never one per file).
    """
    workers = _effective_workers(workers, len(items))
    if workers == 1:
        return [r for r, _ in _run_checks(items, settings, available_elements, None, None)[0]]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [r for r, _ in _run_checks(items, settings, available_elements, pool, None)[0]]


def check_and_deduplicate(
    items: list[InputFile],
    settings: CheckSettings = CheckSettings(),
    match: MatchSettings = MatchSettings(),
    available_elements: set[str] | None = None,
    workers: int = 1,
) -> list[CheckResult]:
    """Check every file, then mark duplicates among the dft_ready ones.

    A duplicate keeps ``dft_ready`` True but gets ``valid`` False, status
    ``duplicate`` and ``duplicate_of`` its representative's id, so only one
    structure per group goes to DFT. Uses ``workers`` processes for both stages.
    """
    workers = _effective_workers(workers, len(items))
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        pairs, checked_as = _run_checks(items, settings, available_elements, pool, match)
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
        if pool is None or len(groups) < 2:
            for group in groups:
                duplicate_of.update(grouping(group, match))
        else:
            # Largest formulas first so the two processes finish together.
            groups.sort(key=len, reverse=True)
            for future in [pool.submit(grouping, g, match) for g in groups]:
                duplicate_of.update(future.result())
    finally:
        if pool is not None:
            pool.shutdown()
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
