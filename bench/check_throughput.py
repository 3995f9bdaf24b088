"""Throughput of check + dedupe (CIFs/s) on a synthetic set built from real structures.

The set: the shared raw CrystaLLM outputs and perov_5 perovskites
(../shared/data), copied byte for byte (duplicates, as generators produce) and
as randomly perturbed P1 copies (every atom moved by up to --perturb-A Å, cell
volume scaled by up to ±2 %), until --n files. Runs
dftscreen.check_batch.check_and_deduplicate with --workers processes and prints files
per second; then, on a random sample of --baseline-n files of the same set, the
reference algorithms (pymatgen's CrystalNN per site, pairwise StructureMatcher
on unreduced structures, no cache for byte-identical files), the speed before
the optimisations. Not a test.

    .venv/bin/python bench/check_throughput.py --n 10000 --workers 2 --baseline-n 300
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

from pymatgen.io.cif import CifWriter

from dftscreen.check import CheckResult, CheckSettings
from dftscreen.check_batch import check_and_deduplicate
from dftscreen.cif_reader import read_structure
from dftscreen.inputs import discover_cifs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = [SHARED / "generated" / "crystallm", SHARED / "reference" / "perov5_sample50"]


def build_set(folder: Path, n: int, perturb_A: float, duplicate_fraction: float, seed: int) -> None:
    """Write ``n`` CIFs into ``folder``: byte copies and perturbed P1 copies of the sources (reproducible per seed)."""
    rng = random.Random(seed)
    # Structure.perturb draws from its own generator: it gets a seed from rng per copy.
    warnings.filterwarnings("ignore")  # CifWriter warns about repeated site labels
    originals = sorted(p for source in SOURCES for p in source.rglob("*.cif"))
    structures = {}
    for i in range(n):
        source = rng.choice(originals)
        target = folder / f"{i:06d}_{source.stem}.cif"
        if rng.random() < duplicate_fraction:
            target.write_bytes(source.read_bytes())
            continue
        if source not in structures:
            structures[source] = read_structure(source)[0]
        structure = structures[source].copy()
        structure.perturb(rng.uniform(0, perturb_A), seed=rng.randrange(2**32))
        structure.scale_lattice(structure.volume * rng.uniform(0.98, 1.02))
        CifWriter(structure).write_file(target)


def run(folder: Path, workers: int, settings: CheckSettings) -> tuple[list[CheckResult], float]:
    """Check + dedupe every CIF in ``folder``; returns the results and the wall time (s)."""
    items = discover_cifs(folder)
    start = time.perf_counter()
    results = check_and_deduplicate(items, settings, workers=workers)
    return results, time.perf_counter() - start


def summary(results: list[CheckResult]) -> str:
    statuses = Counter(r.status or "to DFT" for r in results)
    return (
        f"crystallm_valid {sum(r.crystallm_valid for r in results)}, "
        f"dft_ready {sum(r.dft_ready for r in results)}, {dict(statuses)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="number of CIFs in the set")
    parser.add_argument("--workers", type=int, default=2, help="processes for checks and dedupe")
    parser.add_argument("--perturb-A", type=float, default=0.05, help="largest atom displacement (Å)")
    parser.add_argument("--duplicate-fraction", type=float, default=0.5, help="share of byte-identical copies")
    parser.add_argument("--baseline-n", type=int, default=200, help="files for the reference run (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "set"
        folder.mkdir()
        build_set(folder, args.n, args.perturb_A, args.duplicate_fraction, args.seed)
        results, elapsed = run(folder, args.workers, CheckSettings())
        n_distinct = len({p.read_bytes() for p in folder.iterdir()})
        print(f"{len(results)} CIFs ({n_distinct} byte-distinct) in {elapsed:.1f} s with {args.workers} workers: "
              f"{len(results) / elapsed:.1f} CIFs/s")
        print(summary(results))
        if args.baseline_n:
            sample = Path(tmp) / "sample"
            sample.mkdir()
            for path in random.Random(args.seed + 1).sample(sorted(folder.iterdir()), min(args.baseline_n, args.n)):
                shutil.copy(path, sample / path.name)
            reference, ref_elapsed = run(sample, args.workers, CheckSettings(reference_algorithms=True))
            fast, fast_elapsed = run(sample, args.workers, CheckSettings())
            same = [r.to_dict() for r in reference] == [r.to_dict() for r in fast]
            print(f"baseline (reference algorithms) on {len(reference)} of them: {ref_elapsed:.1f} s, "
                  f"{len(reference) / ref_elapsed:.1f} CIFs/s; fast path on the same files "
                  f"{len(fast) / fast_elapsed:.1f} CIFs/s; every column identical: {same}")


if __name__ == "__main__":
    main()
