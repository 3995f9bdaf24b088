"""The ``dftscreen`` command.

``dftscreen status [RESULTS_DIR] [--configfile FILE]``
    How far a run got, per stage (done, failed with the top reasons and the logs
    of crashed jobs, running, pending), read from the results folder and the
    scheduler; never starts Snakemake. Then the core-hours spent per stage and what
    the pending structures will cost at the measured core-hours per atom. A run
    started with ``snakemake --configfile FILE`` is read with the same option.
    See :mod:`dftscreen.status`.
``dftscreen install-profile``
    Copy the repository's SLURM profile to Snakemake's per-user profile folder
    as ``slurm`` (or ``--name``: one folder name, no path), with your account,
    partition and QoS filled in, so that ``snakemake --profile slurm`` works as
    written from the repository root.
``dftscreen doctor [--configfile FILE] [--no-launch]``
    Whether this environment can run the workflow: GPAW's version (in the supported
    range?), MPI, ScaLAPACK and FFTW in its build, its PAW datasets, the ML model, and
    whether mpiexec (and srun) start two ranks; exit status 1 with a line per problem.
    See :mod:`dftscreen.doctor`.
``dftscreen known-phases fetch [--out FILE]``
    With network access and an MP API key (``MP_API_KEY``), write the Materials
    Project entries of the run's chemical systems and subsystems as a known set
    for ``known_materials.database.path``. See :mod:`dftscreen.fetch_known`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from dftscreen.io import atomic_write_text
from dftscreen.status import (
    configfile_run_config,
    cost_projection,
    format_cost_projection,
    format_status,
    run_config,
    run_status,
)

REPO = Path(__file__).resolve().parents[2]
SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"


def user_profile_dir() -> Path:
    """Snakemake's per-user profile folder (where a bare ``--profile NAME`` is looked up)."""
    from snakemake.cli import get_appdirs

    return Path(get_appdirs().user_config_dir)


def installed_profile_text(account: str | None, partition: str | None, qos: str | None) -> str:
    """The repository's SLURM profile with the site settings given on the command line added."""
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    defaults = dict(profile.get("default-resources") or {})
    if account:
        defaults["slurm_account"] = account
    if partition:
        defaults["slurm_partition"] = partition
    profile["default-resources"] = defaults
    if qos:
        profile["slurm-qos"] = qos
    header = (
        f"# Written by `dftscreen install-profile` from {SLURM_PROFILE}.\n"
        "# Rerun that command after updating the checkout; edit site settings here.\n"
    )
    return header + yaml.safe_dump(profile, sort_keys=False)


def check_profile_name(name: str) -> None:
    """A profile name must be one folder name inside the profile folder (how ``--profile NAME`` finds it).

    Raises:
        ValueError: the name is empty, ``.`` or ``..``, or holds a path separator (it would
            write outside the profile folder, or in the folder itself).
    """
    separators = {"/", os.sep, *([os.altsep] if os.altsep else [])}
    if not name.strip() or name in (".", "..") or any(sep in name for sep in separators) or "\0" in name:
        raise ValueError(
            f"profile name {name!r} is not a folder name: give one name without '/' such as slurm "
            "(it becomes a folder of Snakemake's profile folder)"
        )


def install_profile(name: str, account: str | None, partition: str | None, qos: str | None,
                    target_root: Path | None = None) -> Path:
    """Write the SLURM profile as ``<user profile folder>/<name>/config.yaml``; returns its path.

    Raises:
        ValueError: ``name`` is not one folder name (:func:`check_profile_name`); nothing is written.
    """
    check_profile_name(name)
    target = (target_root or user_profile_dir()) / name / "config.yaml"
    atomic_write_text(target, installed_profile_text(account, partition, qos))
    return target


def default_results_dir(run_folder: Path = Path("."), config: dict[str, Any] | None = None) -> Path:
    """The ``output_dir`` of ``config`` (default: the run's config/config.yaml, as the workflow reads it),
    else ``results``."""
    return run_folder / ((config or run_config(run_folder)).get("output_dir") or "results")


def _status(args: argparse.Namespace) -> int:
    """``dftscreen status``: 0 counted, 1 nothing to count (or an unreadable run), 2 an unreadable --configfile."""
    from dftscreen.config import ConfigError

    config = None
    if args.configfile:
        try:
            config = configfile_run_config(args.configfile, Path(args.workdir or "."))
        except ConfigError as exc:
            print(f"dftscreen status: {exc}", file=sys.stderr)
            return 2
    results_dir = args.results_dir or default_results_dir(config=config)
    try:
        status = run_status(results_dir, workdir=args.workdir, query_scheduler=not args.no_scheduler, config=config)
        cost = cost_projection(results_dir, workdir=args.workdir, config=config)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        # A wrongly typed file status does not know yet: one sentence, never a traceback.
        print(f"dftscreen status: cannot read the run in {results_dir} ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**status.to_dict(), "cost": cost}, indent=2))
    else:
        print(format_status(status, top=args.top, show_ids=args.ids))
        print(format_cost_projection(cost))
    # Nothing to count is an error for scripts; a run not finished yet is not.
    return 1 if status.problem and not status.problem.startswith("not finished") else 0


def _install_profile(args: argparse.Namespace) -> int:
    """``dftscreen install-profile``: 0 written, 2 a name that is not one folder name (nothing written)."""
    try:
        path = install_profile(args.name, args.account, args.partition, args.qos)
    except ValueError as exc:
        print(f"dftscreen install-profile: {exc}", file=sys.stderr)
        return 2
    print(f"installed {path}: run `snakemake --profile {args.name}` from the repository root")
    return 0


def _fetch_known_phases(args: argparse.Namespace) -> int:
    from dftscreen.config import ConfigError, read_run_config
    from dftscreen.fetch_known import FetchError, fetch_known_phases

    config_path = Path(args.config)
    try:
        config = read_run_config(config_path)
    except ConfigError as exc:
        print(f"dftscreen known-phases fetch: {exc}", file=sys.stderr)
        return 2
    try:
        systems, count = fetch_known_phases(config, Path(args.out), api_key=args.api_key,
                                            run_folder=config_path.parent.parent)
    except FetchError as exc:
        print(f"dftscreen known-phases fetch: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {count} entries of {', '.join('-'.join(s) for s in systems)} (and subsystems) to {args.out}; "
          f"set known_materials.database.path: {args.out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from dftscreen.compare_runs import RunNotComparable, compare

    try:
        index = compare(args.run_dirs, args.out, baseline=args.baseline, allow_mismatch=args.allow_mismatch)
    except RunNotComparable as exc:
        print(f"dftscreen compare: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {index} (and cohorts.csv, cohorts.json and the figures beside it)")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """``dftscreen doctor``: 0 when this environment can run dftscreen, 1 with a line per problem."""
    from dftscreen.config import ConfigError, read_run_config, with_defaults
    from dftscreen.doctor import diagnose, report

    path = Path(args.configfile or "config/config.yaml")
    try:
        config = read_run_config(path) if args.configfile or path.is_file() else with_defaults({})
    except ConfigError as exc:
        print(f"dftscreen doctor: {exc}", file=sys.stderr)
        return 2
    text, status = report(diagnose(config, launch=not args.no_launch))
    print(text)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dftscreen", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    status = commands.add_parser("status", help="how far a run got, per stage, without starting Snakemake")
    status.add_argument("results_dir", nargs="?", default=None,
                        help="the run's output_dir (default: output_dir of ./config/config.yaml, else results)")
    status.add_argument("--workdir", default=None,
                        help="folder Snakemake ran in (default: the parent of RESULTS_DIR)")
    status.add_argument("--configfile", default=None, metavar="FILE",
                        help="the run's config, as given to snakemake --configfile (merged over "
                        "config/config.yaml like Snakemake does; its output_dir is the default RESULTS_DIR)")
    status.add_argument("--json", action="store_true", help="print the counts as JSON")
    status.add_argument("--top", type=int, default=5, help="failure reasons shown per stage (default 5)")
    status.add_argument("--ids", type=int, default=10, metavar="N",
                        help="failed structure ids listed per stage (default 10; 0: none)")
    status.add_argument("--no-scheduler", action="store_true", help="do not ask sacct/squeue")
    status.set_defaults(func=_status)

    install = commands.add_parser("install-profile",
                                  help="make `snakemake --profile slurm` work (copies profiles/slurm)")
    install.add_argument("--name", default="slurm",
                         help="profile name: one folder name, no '/' (default: slurm)")
    install.add_argument("--account", help="SLURM account (sbatch -A)")
    install.add_argument("--partition", help="SLURM partition (sbatch -p)")
    install.add_argument("--qos", help="SLURM QoS (sbatch --qos)")
    install.set_defaults(func=_install_profile)

    compare = commands.add_parser(
        "compare", help="several finished runs side by side: per-cohort rates with intervals, differences, figures")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                         help="a folder Snakemake ran in (with config/config.yaml) or a results folder")
    compare.add_argument("--out", required=True, help="folder for cohorts.csv, cohorts.json, figures and index.html")
    compare.add_argument("--baseline", default=None,
                         help="the cohort the others are compared with (default: the first RUN_DIR's)")
    compare.add_argument("--allow-mismatch", action="store_true",
                         help="compare runs whose settings, versions, model, known set or thresholds differ "
                         "(the page says so at the top)")
    compare.set_defaults(func=_compare)

    doctor = commands.add_parser(
        "doctor", help="can this environment run dftscreen: GPAW, MPI, ScaLAPACK, FFTW, PAW data, ML model, launchers")
    doctor.add_argument("--configfile", default=None, metavar="FILE",
                        help="the run's config (default: ./config/config.yaml when there; its ml section)")
    doctor.add_argument("--no-launch", action="store_true", help="do not try to start two ranks with mpiexec/srun")
    doctor.set_defaults(func=_doctor)

    known = commands.add_parser("known-phases", help="known materials for novelty and the hull")
    known_commands = known.add_subparsers(dest="known_command", required=True)
    fetch = known_commands.add_parser(
        "fetch", help="write the Materials Project entries of the run's chemical systems (needs network, MP_API_KEY)")
    fetch.add_argument("--config", default="config/config.yaml", help="the run's config (default: config/config.yaml)")
    fetch.add_argument("--out", default="known/mp_entries.json.gz",
                       help="ComputedStructureEntry JSON(.gz) to write (default: known/mp_entries.json.gz)")
    fetch.add_argument("--api-key", default=None, help="Materials Project API key (default: $MP_API_KEY)")
    fetch.set_defaults(func=_fetch_known_phases)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
