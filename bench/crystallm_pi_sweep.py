"""CrystaLLM-pi band-gap sweep: our per-condition rates beside the authors' (issue 30, run (a)).

    PYTHONPATH=src .venv/bin/python bench/crystallm_pi_sweep.py --config /work/runs/pi_known.yaml \
        [--check-log /work/runs/pi_check.log] [--known-log /work/runs/pi_known.log] [--out /work/runs/pi_sweep] \
        [--rescore-radii]

Reads a run folder (the config's ``output_dir``) after the check stage and ``compare_known``
into the results table the way a partial table is built (``write_partial_table`` of
``workflow/rules/common.smk``: :func:`dftscreen.table.table_from_results` with the run's plan),
so every row not yet through ML or DFT is ``not_finished``. Then, per condition value (the
cohort, factor ``target_Bandgap_eV``), :func:`dftscreen.cohort_table.cohort_rates` at the
config's thresholds and alpha gives n, crystallm_valid, dft_ready, unique_in_cohort and novel
with Wilson intervals; beside them the authors' own ``is_valid``, ``is_unique``, ``is_novel`` and
``is_stable_orb`` from the Parquet, recomputed per condition, over all 1,000 of the condition
(their ``VUN_metrics.py`` reports them so: valid, "V+unique", "V+U+novel" over the total; their
``is_unique`` is set only on valid rows and ``is_novel`` only on unique ones; the script checks
that nesting and also prints their uniqueness among valid and novelty among unique).
Cochran-Armitage trends over the condition value (:func:`dftscreen.cohort_table.trend_rows`,
scores = the condition values in eV) for ours, :func:`dftscreen.cohort_stats.trend_test` for theirs.

Also: where ``crystallm_valid`` and their ``is_valid`` disagree, why (our check's reason,
grouped), the novelty matches against the known set, the time ``cohort_rates`` takes on this
table against the check stage's wall time (from the Snakemake log of the check run), and
cohorts.csv / cohorts.json (:func:`dftscreen.cohort_table.write_run_cohorts`) with two figures
(:mod:`dftscreen.cohort_figures`) in ``--out``. With ``--rescore-radii``, the bond-length score
of every structure containing Mn (Cr and Fe as controls) is computed again with the element's
average cationic radius taken over all its oxidation states (the radius the authors' pymatgen
appears to have used, see bench/README.md), to test where ``crystallm_valid`` and ``is_valid`` part.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
import warnings
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from cohort_run import partial_table  # the bench scripts' one partial-table builder

from dftscreen.cohort_figures import forest_plot, response_curve
from dftscreen.cohort_stats import trend_test, wilson_intervals
from dftscreen.cohort_table import cohort_rates, trend_rows, write_run_cohorts
from dftscreen.cohorts import CohortSpec
from dftscreen.config import read_run_config
from dftscreen.layout import ResultsLayout

FACTOR = "target_Bandgap_eV"
FACTOR_COLUMN = f"cohort_{FACTOR}"
CONDITION = "target_Bandgap (eV)"
OURS = ("crystallm_valid", "dft_ready", "unique_in_cohort", "novel")
THEIRS = ("is_valid", "is_unique", "is_novel", "is_stable_orb")
SNAKEMAKE_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def rule_wall_seconds(log_path: Path, rule: str) -> float | None:
    """Wall time of one rule's job in a Snakemake log: from the stamp before ``<kind> <rule>:`` to
    the stamp before ``Finished jobid: <n> (Rule: <rule>)``; None when the log does not say."""
    if not log_path.is_file():
        return None
    stamp, start, end = None, None, None
    for line in log_path.read_text(errors="replace").splitlines():
        match = SNAKEMAKE_STAMP.match(line.strip())
        if match:
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif re.match(rf"^local(rule|checkpoint) {re.escape(rule)}:$|^(rule|checkpoint) {re.escape(rule)}:$",
                      line.strip()):
            start = stamp
        elif f"(Rule: {rule})" in line and line.strip().startswith("Finished jobid"):
            end = stamp
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def authors_rates(parquet: Path, alpha: float) -> pd.DataFrame:
    """Per condition: n and count / rate / Wilson interval of each of the authors' flags, over all rows."""
    frame = pd.read_parquet(parquet, columns=["Material ID", CONDITION, *THEIRS])
    nested = {
        "is_unique only on valid rows": bool((~frame["is_unique"] | frame["is_valid"]).all()),
        "is_novel only on unique rows": bool((~frame["is_novel"] | frame["is_unique"]).all()),
        "is_stable_orb only on valid rows": bool((~frame["is_stable_orb"] | frame["is_valid"]).all()),
    }
    grouped = frame.groupby(CONDITION, sort=True)
    out = pd.DataFrame({"n": grouped.size()})
    for flag in THEIRS:
        count = grouped[flag].sum().astype(int)
        low, high = wilson_intervals(count.to_numpy(), out["n"].to_numpy(), alpha)
        out[f"{flag}_count"], out[f"{flag}_rate"] = count, count / out["n"]
        out[f"{flag}_low"], out[f"{flag}_high"] = low, high
    out.attrs["nested"] = nested
    return out


def cell(row: pd.Series, metric: str) -> str:
    return f"{row[f'{metric}_rate']:.3f} [{row[f'{metric}_low']:.3f}, {row[f'{metric}_high']:.3f}]"


def print_side_by_side(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    print("\nper condition value: rate [95 % Wilson interval], every rate over all n generations of the condition")
    header = f"{'target eV':>9} {'n':>5} | " + " | ".join(f"{m:^22}" for m in OURS) + " || " + " | ".join(
        f"{m:^22}" for m in THEIRS)
    print(header)
    print("-" * len(header))
    for _, row in ours.iterrows():
        value = float(row[FACTOR_COLUMN])
        match = theirs.index[np.isclose(theirs.index.to_numpy(dtype=float), value, rtol=0, atol=5e-4)]
        if len(match) != 1:
            raise SystemExit(f"condition {value} of the run matches {len(match)} conditions of the Parquet")
        other = theirs.loc[match[0]]
        if int(other["n"]) != int(row["n"]):
            raise SystemExit(f"condition {value}: run has n={row['n']}, Parquet n={other['n']}")
        print(f"{value:9.3f} {int(row['n']):5d} | " + " | ".join(f"{cell(row, m):^22}" for m in OURS) + " || "
              + " | ".join(f"{cell(other, m):^22}" for m in THEIRS))
    total_n = int(ours["n"].sum())
    ours_total = {m: int(ours[f"{m}_count"].sum()) for m in OURS}
    theirs_total = {m: int(theirs[f"{m}_count"].sum()) for m in THEIRS}
    print(f"{'all':>9} {total_n:5d} | " + " | ".join(f"{f'{c} ({c / total_n:.3f})':^22}" for c in ours_total.values())
          + " || " + " | ".join(f"{f'{c} ({c / total_n:.3f})':^22}" for c in theirs_total.values()))
    print("\nthe authors' conditional rates (their uniqueness among their valid, novelty among their unique):")
    for value, other in theirs.iterrows():
        print(f"  {value:7.3f} eV: is_unique / is_valid {other['is_unique_count'] / other['is_valid_count']:.3f}, "
              f"is_novel / is_unique {other['is_novel_count'] / other['is_unique_count']:.3f}")
    print("ours, same way (unique among dft_ready, novel among unique):")
    for _, row in ours.iterrows():
        print(f"  {float(row[FACTOR_COLUMN]):7.3f} eV: unique_in_cohort / dft_ready "
              f"{row['unique_in_cohort_count'] / row['dft_ready_count']:.3f}, "
              f"novel / unique_in_cohort {row['novel_count'] / row['unique_in_cohort_count']:.3f}")


def print_trends(rates: pd.DataFrame, theirs: pd.DataFrame) -> None:
    print(f"\nCochran-Armitage trend over the condition value (scores = {FACTOR} in eV; z > 0: rate rises):")
    trends = trend_rows(rates, FACTOR, metrics=list(OURS))
    for row in trends.itertuples():
        print(f"  ours   {row.metric:<17} z = {row.z:+7.2f}, p = {row.p:.2g}, Holm p = {row.holm_p:.2g}"
              f" ({row.direction})")
    scores = theirs.index.to_numpy(dtype=float)
    for flag in THEIRS:
        z, p = trend_test(theirs[f"{flag}_count"].to_numpy(), theirs["n"].to_numpy(), scores)
        print(f"  theirs {flag:<17} z = {z:+7.2f}, p = {p:.2g}")


def reason_kind(reason: str) -> str:
    if not reason:
        return "none (we call it valid)"
    kinds = []
    if "but the structure built is" in reason:
        kinds.append("declared formula differs from the structure built")
    if "bond-length score" in reason:
        kinds.append("bond-length score below 1")
    if "declared space group" in reason or "spglib could not" in reason:
        kinds.append("space group not found")
    if "multiplicit" in reason:
        kinds.append("site multiplicities differ from the formula")
    if "disordered" in reason:
        kinds.append("disordered")
    return " + ".join(kinds) or reason[:80]


def print_validity_disagreement(table: pd.DataFrame) -> None:
    ours = table["crystallm_valid"] == True  # noqa: E712
    theirs = table["input_is_valid"] == True if "input_is_valid" in table else table["is_valid"] == True  # noqa: E712
    both = int((ours & theirs).sum())
    print(f"\ncrystallm_valid (ours) against is_valid (theirs), all {len(table)}: both valid {both}, "
          f"both invalid {int((~ours & ~theirs).sum())}, only ours valid {int((ours & ~theirs).sum())}, "
          f"only theirs valid {int((~ours & theirs).sum())}")
    formulas = table.get("reduced_formula", pd.Series("", index=table.index)).fillna("").astype(str)
    for label, rows in (("only theirs valid", ~ours & theirs), ("only ours valid", ours & ~theirs)):
        kinds = Counter(reason_kind(str(r or "")) for r in table.loc[rows, "crystallm_reason"])
        with_mn = int(formulas[rows].str.contains(r"Mn(?![a-z])").sum())
        print(f"  {label} ({int(rows.sum())}; {with_mn} contain Mn): "
              + "; ".join(f"{count} x {kind}" for kind, count in kinds.most_common()))


def print_uniqueness_scope(table: pd.DataFrame) -> None:
    """Is the authors' is_unique per condition or over the whole file? Our duplicate groups (StructureMatcher
    over the run) with two or more of their valid members: how many of them they mark unique."""
    valid = table["input_is_valid"] if "input_is_valid" in table else table["is_valid"]
    unique = table["input_is_unique"] if "input_is_unique" in table else table["is_unique"]
    representative = table["duplicate_of"]
    group = representative.where(representative.notna() & (representative != ""), table["structure_id"])
    ready = table.assign(group=group, valid=valid == True, unique=unique == True)  # noqa: E712
    ready = ready[ready["dft_ready"] == True]  # noqa: E712
    groups = ready.groupby("group").agg(conditions=(FACTOR_COLUMN, "nunique"), valid=("valid", "sum"),
                                        unique=("unique", "sum"))
    groups = groups[groups["valid"] >= 2]
    for label, part in (("across conditions", groups[groups["conditions"] > 1]),
                        ("within one condition", groups[groups["conditions"] == 1])):
        print(f"  our duplicate groups {label} with >= 2 of their valid members: {len(part)}; members they mark"
              f" is_unique per group: {dict(sorted(Counter(part['unique'].astype(int)).items()))}")
    run_unique = ready[ready["status"] != "duplicate"]
    too_large = int((run_unique["status"] == "too_large").sum())
    print(f"  unique dft_ready crystals over the whole run: {len(run_unique)} ({too_large} of them too_large for DFT);"
          f" summed over cohorts (unique_in_cohort): {int(ready.groupby(FACTOR_COLUMN)['group'].nunique().sum())}")


def print_bond_disagreements(config: dict, table: pd.DataFrame) -> None:
    """Each bond outside tolerance of the structures only the authors call valid for a bond-length reason:
    its length as we measure it (to the CrystalNN neighbour's image) and as CrystaLLM's code does
    (``site.distance``: the minimum-image distance between the two sites), and the expected length."""
    from dftscreen.bonds import DEFAULT_TOLERANCE, crystalnn_neighbours, expected_bond_length_A
    from dftscreen.cif_reader import read_cif_text

    theirs = table["input_is_valid"] if "input_is_valid" in table else table["is_valid"]
    rows = table[(table["crystallm_valid"] != True) & (theirs == True)  # noqa: E712
                 & table["crystallm_reason"].fillna("").str.startswith("bond-length score")]
    texts = pd.read_parquet(config["input"]["table"], columns=["Generated CIF"])["Generated CIF"]
    print("\nbonds outside 1 +- tolerance where only the authors call the structure valid (bond-length reason):")
    for _, row in rows.iterrows():
        structure = read_cif_text(texts.iloc[int(str(row["source_file"]).rsplit(" ", 1)[1])]).structure
        neighbours = crystalnn_neighbours(structure, list(range(len(structure))), False)
        seen = Counter()
        for i, found in neighbours.items():
            for neighbour in found:
                if neighbour.site_index == i:
                    continue
                a, b = structure[i].specie.symbol, structure[neighbour.site_index].specie.symbol
                expected = expected_bond_length_A(a, b)
                ours = float(np.linalg.norm(structure[i].coords - neighbour.coords))
                if expected and not 1 - DEFAULT_TOLERANCE < ours / expected < 1 + DEFAULT_TOLERANCE:
                    minimum_image = structure[i].distance(structure[neighbour.site_index])
                    seen[(*sorted((a, b)), round(ours, 3), round(minimum_image, 3), round(expected, 3))] += 1
        print(f"  {row['structure_id']} ({row['reduced_formula']}): " + "; ".join(
            f"{n} x {a}-{b} {ours} A (minimum image {mi} A), expected {exp} A"
            for (a, b, ours, mi, exp), n in sorted(seen.items())))


def print_novelty(out_dir: Path, table: pd.DataFrame) -> None:
    novelty = json.loads(Path(ResultsLayout(str(out_dir)).novelty_table).read_text())
    rows = novelty["structures"]
    matched = Counter(r.get("matches_known_id") for r in rows.values() if r.get("novel") is False)
    compared = sum(1 for r in rows.values() if r.get("novel") is not None)
    print(f"\nnovelty against {novelty['known_set']}: {compared} unique dft_ready structures compared, "
          f"{sum(matched.values())} match a known entry ({len(matched)} distinct entries)")
    print("  most matched: " + ", ".join(f"{entry} x {count}" for entry, count in matched.most_common(8)))


def merged_average_cationic_radius(symbol: str) -> float:
    """Mean of every positive-oxidation-state radius pymatgen lists for ``symbol``, high spin where it
    lists both spins (this pymatgen's ``average_cationic_radius`` averages only its "Ionic radii",
    which for Cr, Mn, Fe, Co and Ni are the high-spin ones: Mn 2+ and 3+ only)."""
    import gzip

    import pymatgen.core

    data = json.loads(gzip.decompress((Path(pymatgen.core.__file__).parent / "periodic_table.json.gz").read_bytes()))
    element = data[symbol]
    merged = {**element.get("Ionic radii ls", {}), **element.get("Ionic radii hs", {}), **element["Ionic radii"]}
    return float(np.mean([radius for state, radius in merged.items() if int(state) > 0]))


def rescore_bonds(config: dict, checks: list[dict], symbol: str, radius: float) -> Counter:
    """Our bond-length score again with ``symbol``'s average cationic radius set to ``radius``, for every
    structure containing it whose other CrystaLLM checks pass; counts of (ours now, ours rescored, theirs)."""
    from pymatgen.core import Element

    import dftscreen.bonds as bonds
    from dftscreen.cif_reader import read_cif_text

    texts = pd.read_parquet(config["input"]["table"], columns=["Generated CIF"])["Generated CIF"]
    original = bonds.expected_bond_length_A

    def expected(a: str, b: str) -> float | None:
        first, second = Element(a), Element(b)
        if symbol in (a, b) and abs(first.X - second.X) >= bonds.IONIC_ELECTRONEGATIVITY_DIFFERENCE:
            cation, anion = (first, second) if first.X < second.X else (second, first)
            if cation.symbol == symbol:
                return float(radius + anion.average_anionic_radius)
        return original(a, b)

    element = re.compile(rf"{symbol}(?![a-z])")
    outcome: Counter = Counter()
    bonds.expected_bond_length_A = expected
    try:
        for record in checks:
            if not element.search(record.get("reduced_formula") or ""):
                continue
            reasons = [r for r in (record.get("crystallm_reason") or "").split("; ") if r]
            if not all(r.startswith("bond-length score") for r in reasons):
                continue  # another CrystaLLM check fails: the bond score does not decide
            row = int(str(record["source_file"]).rsplit(" ", 1)[1])
            score = bonds.bond_length_score(read_cif_text(texts.iloc[row]).structure).score
            outcome[(bool(record["crystallm_valid"]), bool(score is not None and score >= 1.0),
                     bool(record["is_valid"]))] += 1
    finally:
        bonds.expected_bond_length_A = original
    return outcome


def print_rescored(config: dict) -> None:
    from pymatgen.core import Element

    checks = json.loads(Path(ResultsLayout(config["output_dir"]).checks_table).read_text())
    print("\nbond-length score with another average cationic radius (structures with the element whose other"
          " CrystaLLM checks pass):")
    for symbol in ("Mn", "Cr", "Fe"):
        radius = merged_average_cationic_radius(symbol)
        started = time.perf_counter()
        outcome = rescore_bonds(config, checks, symbol, radius)
        total = sum(outcome.values())
        agree_now = sum(v for (now, _, theirs), v in outcome.items() if now == theirs)
        agree_alt = sum(v for (_, alt, theirs), v in outcome.items() if alt == theirs)
        print(f"  {symbol}: radius {Element(symbol).average_cationic_radius:.4f} -> {radius:.4f} A; {total} structures "
              f"({time.perf_counter() - started:.0f} s); agree with is_valid: now {agree_now}, rescored {agree_alt}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/work/runs/pi_known.yaml")
    parser.add_argument("--check-log", default="/work/runs/pi_check.log",
                        help="Snakemake log of the run that did the check stage")
    parser.add_argument("--known-log", default="/work/runs/pi_known.log",
                        help="Snakemake log of the run that did compare_known")
    parser.add_argument("--out", default="/work/runs/pi_sweep", help="cohorts.csv/json and figures go here")
    parser.add_argument("--repeat", type=int, default=5, help="times cohort_rates is timed (median reported)")
    parser.add_argument("--rescore-radii", action="store_true",
                        help="also rescore bonds of Mn (and Cr, Fe as controls) with every oxidation state's radius"
                        " averaged (about 70 s)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    config = read_run_config(args.config)
    spec = CohortSpec.from_config(config["cohorts"])
    started = time.perf_counter()
    table = partial_table(config)
    table_seconds = time.perf_counter() - started
    print(f"results table of {config['output_dir']}: {len(table)} rows, {table.shape[1]} columns, "
          f"built in {table_seconds:.1f} s; statuses {dict(Counter(table['status'].astype(str)))}")

    settings = {"stable_threshold_eV_per_atom": spec.stable_threshold_eV_per_atom,
                "metastable_threshold_eV_per_atom": spec.metastable_threshold_eV_per_atom, "alpha": spec.alpha}
    seconds = []
    for _ in range(max(1, args.repeat)):
        started = time.perf_counter()
        rates = cohort_rates(table, **settings)
        seconds.append(time.perf_counter() - started)
    rates = rates.sort_values(FACTOR_COLUMN, key=lambda s: pd.to_numeric(s)).reset_index(drop=True)
    theirs = authors_rates(Path(config["input"]["table"]), spec.alpha)
    print(f"authors' flags nested as assumed: {theirs.attrs['nested']}")

    print_side_by_side(rates, theirs)
    print_trends(rates, theirs)
    print_validity_disagreement(table)
    print("\nuniqueness scope:")
    print_uniqueness_scope(table)
    print_bond_disagreements(config, table)
    print_novelty(Path(config["output_dir"]), table)
    if args.rescore_radii:
        print_rescored(config)

    median = statistics.median(seconds)
    check_seconds = rule_wall_seconds(Path(args.check_log), "check")
    known_seconds = rule_wall_seconds(Path(args.known_log), "compare_known")
    print(f"\ncohort_rates on {len(table)} rows: median {median:.3f} s of {len(seconds)} "
          f"(min {min(seconds):.3f}, max {max(seconds):.3f}); building the table {table_seconds:.1f} s")
    if check_seconds:
        print(f"check stage wall time (Snakemake log {args.check_log}): {check_seconds:.0f} s; "
              f"cohort_rates / check = {median / check_seconds:.2e}; "
              f"(table + cohort_rates) / check = {(table_seconds + median) / check_seconds:.3f}")
    else:
        print(f"check stage wall time: not in {args.check_log}; cohort_rates alone is {median:.3f} s")
    if known_seconds:
        print(f"compare_known wall time (Snakemake log {args.known_log}): {known_seconds:.0f} s")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_run_cohorts(table, config["cohorts"], out / "cohorts.csv", out / "cohorts.json",
                      targets_config=config["targets"])
    forest_plot(rates, list(OURS), out / "cohort_rates.png", title="CrystaLLM-pi band-gap sweep, per condition")
    response_curve(rates, FACTOR_COLUMN, "novel", out / "novel_vs_condition.png")
    print(f"\nwrote {out / 'cohorts.csv'}, cohorts.json, cohort_rates.png, novel_vs_condition.png")


if __name__ == "__main__":
    main()
