"""Throughput of check + dedupe (CIFs/s) on a synthetic set built from real structures.

The set: the shared raw CrystaLLM outputs and perov_5 perovskites
(../shared/data), copied byte for byte (duplicates, as generators produce) and
as randomly perturbed P1 copies (every atom moved up to --perturb-A Å, cell
scaled by up to 2 %), until --n files. Runs dftscreen.check.check_and_deduplicate
with --workers processes and prints files per second. Not a test.

    .venv/bin/python bench/check_throughput.py --n 1000 --workers 2
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

from pymatgen.io.cif import CifWriter

from dftscreen.check import CheckSettings, check_and_deduplicate, read_structure
from dftscreen.inputs import discover_cifs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = [SHARED / "generated" / "crystallm", SHARED / "reference" / "perov5_sample50"]


def build_set(folder: Path, n: int, perturb_A: float, duplicate_fraction: float, seed: int) -> None:
    """Write ``n`` CIFs into ``folder``: byte copies and perturbed P1 copies of the sources."""
    rng = random.Random(seed)
    warnings.filterwarnings("ignore")  # CifWriter warns about repeated site labels
    originals = sorted(p for source in SOURCES for p in source.rglob("*.cif"))
    for i in range(n):
        source = rng.choice(originals)
        target = folder / f"{i:06d}_{source.stem}.cif"
        if rng.random() < duplicate_fraction:
            target.write_bytes(source.read_bytes())
            continue
        structure, _ = read_structure(source)
        structure = structure.copy()
        structure.perturb(rng.uniform(0, perturb_A))
        structure.scale_lattice(structure.volume * rng.uniform(0.98, 1.02))
        CifWriter(structure).write_file(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="number of CIFs in the set")
    parser.add_argument("--workers", type=int, default=2, help="processes for checks and dedupe")
    parser.add_argument("--perturb-A", type=float, default=0.05, help="largest atom displacement (Å)")
    parser.add_argument("--duplicate-fraction", type=float, default=0.5, help="share of byte-identical copies")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_set(folder, args.n, args.perturb_A, args.duplicate_fraction, args.seed)
        items = discover_cifs(folder)
        start = time.perf_counter()
        results = check_and_deduplicate(items, CheckSettings(), workers=args.workers)
        elapsed = time.perf_counter() - start
    statuses = Counter(r.status or "to DFT" for r in results)
    print(f"{len(results)} CIFs in {elapsed:.1f} s with {args.workers} workers: {len(results) / elapsed:.1f} CIFs/s")
    print(f"crystallm_valid {sum(r.crystallm_valid for r in results)}, dft_ready {sum(r.dft_ready for r in results)}, {dict(statuses)}")


if __name__ == "__main__":
    main()
