"""One BLAS thread per MPI rank against what Snakemake's environment gives (not run in CI).

Snakemake exports ``OPENBLAS_NUM_THREADS`` equal to a job's ``threads`` (for a
GPAW job: its rank count), and OpenBLAS without it starts one thread per core.
This times the same GPAW SCF (energy and forces of one perovskite from the
shared perov_5 sample, spin-polarized CoPdN3 by default) three ways in one run:

- ``2 ranks, BLAS unlimited``: ``mpiexec -n 2`` with ``OPENBLAS_NUM_THREADS=2``,
  as every 2-rank job ran before ``dftscreen.dft.one_blas_thread_per_rank``;
- ``2 ranks, 1 BLAS thread``: the same with the limit the entry points now set;
- ``1 rank``: the baseline a 2-rank job has to beat.

and prints wall-time ratios (the machine is shared, so absolute times mean little).

Usage: python bench/blas_threads.py [--preset fast] [--cif ../shared/.../perov5_17437.cif]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CIF = REPO.parent / "shared" / "data" / "reference" / "perov5_sample50" / "perov5_17437.cif"


def scf(cif: Path, preset: str, limit: bool, txt: Path) -> None:
    """Inside each rank: one GPAW SCF with forces, optionally with one BLAS thread."""
    from pymatgen.core import Structure

    from dftscreen.dft import attach_gpaw, one_blas_thread_per_rank, structure_to_atoms
    from dftscreen.settings import resolve_settings

    if limit:
        one_blas_thread_per_rank()
    atoms = structure_to_atoms(Structure.from_file(cif))
    attach_gpaw(atoms, resolve_settings(preset)["gpaw"], txt=txt)
    atoms.get_forces()


def timed_run(cif: Path, preset: str, ranks: int, blas_threads: int, limit: bool, workdir: Path) -> float:
    """Wall time (s) of one SCF under ``mpiexec -n ranks`` with OPENBLAS_NUM_THREADS=blas_threads."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS=str(blas_threads))
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    txt = workdir / f"gpaw_{ranks}ranks_{blas_threads}blas_limit{int(limit)}.txt"
    inner = json.dumps({"cif": str(cif), "preset": preset, "limit": limit, "txt": str(txt)})
    command = ["mpiexec", "--bind-to", "none", "-n", str(ranks), sys.executable, "-m", "gpaw", "python",
               __file__, "--", "--inner", inner]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--cif", type=Path, default=DEFAULT_CIF)
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        spec = json.loads(args.inner)
        scf(Path(spec["cif"]), spec["preset"], spec["limit"], Path(spec["txt"]))
        return
    with tempfile.TemporaryDirectory(prefix="blas_threads_") as tmp:
        workdir = Path(tmp)
        cases = {
            "2 ranks, BLAS unlimited": timed_run(args.cif, args.preset, 2, 2, False, workdir),
            "2 ranks, 1 BLAS thread": timed_run(args.cif, args.preset, 2, 2, True, workdir),
            "1 rank": timed_run(args.cif, args.preset, 1, 1, False, workdir),
        }
    print(f"{args.cif.name}, preset {args.preset}, {os.cpu_count()} cores")
    for name, seconds in cases.items():
        print(f"  {name:24s} {seconds:7.1f} s")
    baseline = cases["1 rank"]
    print(f"speed-up over 1 rank: unlimited {baseline / cases['2 ranks, BLAS unlimited']:.2f}x, "
          f"one BLAS thread {baseline / cases['2 ranks, 1 BLAS thread']:.2f}x; "
          f"limit vs unlimited {cases['2 ranks, BLAS unlimited'] / cases['2 ranks, 1 BLAS thread']:.2f}x")


if __name__ == "__main__":
    main()
