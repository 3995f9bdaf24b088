"""Figures that compare cohorts (issue 30): each rate with its interval, side by side.

Every function draws one PNG (written atomically) from the per-cohort table of
:mod:`dftscreen.cohort_table` (one row per cohort: ``cohort``, and per metric
``<metric>_rate``, ``<metric>_low``, ``<metric>_high``, ``<metric>_count``) or from
the results table itself (one row per input, with its ``cohort`` column). A figure
without data says so in the image, as the report's other figures do. Rates are
fractions of every input of the cohort; intervals are 95 % Wilson intervals unless the
table says otherwise. :func:`conditioning_plot` draws from the points and rows of
:mod:`dftscreen.conditioning` (computed against requested target values).

It also holds the helpers every figure of the report is drawn with (:func:`new_figure`,
:func:`save_figure`, :func:`draw_no_data`): :mod:`dftscreen.report` imports them from here, so
that it can draw the cohort figures without the two modules importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dftscreen.io import atomic_write_with

FIGURE_DPI = 200
FIGURE_SIZE_IN = (6.4, 4.0)

#: Colour of the baseline cohort and of the others.
BASELINE_COLOR = "#c0392b"
COHORT_COLOR = "#2c6fbb"


def new_figure():
    """A new matplotlib figure on the Agg canvas (no pyplot state, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI, layout="constrained")
    return figure, figure.add_subplot()


def save_figure(figure, path: Path) -> None:
    """Write ``figure`` as a PNG, atomically (:mod:`dftscreen.io`)."""
    atomic_write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=FIGURE_DPI))


def draw_no_data(ax, message: str) -> None:
    """Say in the image why a figure has nothing to show."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=13, wrap=True, color="0.35")


def _interval(rates: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rate, low, high) of ``metric`` per cohort, NaN where undefined (a cohort of 0 inputs)."""
    values = [pd.to_numeric(rates.get(f"{metric}_{part}"), errors="coerce") for part in ("rate", "low", "high")]
    return tuple(np.asarray(v if v is not None else [np.nan] * len(rates), dtype=float) for v in values)


def forest_plot(
    rates: pd.DataFrame, metrics: Sequence[str], path: Path, baseline: str | None = None, title: str = ""
) -> None:
    """One row per (metric, cohort): the rate and its interval, with the baseline cohort's rate as a line."""
    figure, ax = new_figure()
    figure.set_size_inches(6.4, max(2.5, 0.28 * len(metrics) * max(1, len(rates)) + 1.2))
    if rates.empty or not metrics:
        draw_no_data(ax, "no cohorts to compare")
        save_figure(figure, path)
        return
    labels, y = [], 0.0
    for metric in metrics:
        rate, low, high = _interval(rates, metric)
        for i, cohort in enumerate(rates["cohort"]):
            is_baseline = cohort == baseline
            color = BASELINE_COLOR if is_baseline else COHORT_COLOR
            if np.isfinite(rate[i]):
                ax.errorbar(rate[i], -y, xerr=[[rate[i] - low[i]], [high[i] - rate[i]]], fmt="o", color=color,
                            capsize=2, markersize=4)
            if is_baseline and np.isfinite(rate[i]):
                ax.axvline(rate[i], color=BASELINE_COLOR, linewidth=0.6, alpha=0.4)
            labels.append((-y, f"{metric}: {cohort}"))
            y += 1
        y += 0.6
    ax.set_yticks([pos for pos, _ in labels], [text for _, text in labels], fontsize=6)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("rate (fraction of the cohort's inputs), 95 % interval")
    ax.set_title(title or "Rates per cohort" + (f" (baseline in red: {baseline})" if baseline else ""), fontsize=9)
    save_figure(figure, path)


def funnels(rates: pd.DataFrame, stages: Sequence[str], path: Path) -> None:
    """The funnel of every cohort side by side: one group of bars per stage, one bar (with interval) per cohort."""
    figure, ax = new_figure()
    present = [s for s in stages if f"{s}_rate" in rates.columns]
    if rates.empty or not present:
        draw_no_data(ax, "no cohorts to compare")
        save_figure(figure, path)
        return
    width = 0.8 / len(rates)
    for i, cohort in enumerate(rates["cohort"]):
        rate = np.array([_interval(rates, s)[0][i] for s in present])
        low = np.array([_interval(rates, s)[1][i] for s in present])
        high = np.array([_interval(rates, s)[2][i] for s in present])
        x = np.arange(len(present)) + i * width
        ax.bar(x, np.nan_to_num(rate), width, label=str(cohort))
        ax.errorbar(x, np.nan_to_num(rate), yerr=[np.nan_to_num(rate - low), np.nan_to_num(high - rate)],
                    fmt="none", color="0.2", capsize=1.5, linewidth=0.7)
    ax.set_xticks(np.arange(len(present)) + 0.4 - width / 2, present, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("fraction of the cohort's inputs")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=6, ncols=2)
    ax.set_title("Funnel per cohort (95 % intervals)", fontsize=9)
    save_figure(figure, path)


def e_hull_ecdf(table: pd.DataFrame, hull_column: str | None, path: Path, label: str = "DFT") -> None:
    """Empirical distribution of the energy above the hull per cohort (each DFT calculation once)."""
    figure, ax = new_figure()
    values = pd.to_numeric(table[hull_column], errors="coerce") if hull_column in table.columns else None
    if values is None or values.notna().sum() == 0:
        draw_no_data(ax, f"no {label} energies above the hull yet")
        save_figure(figure, path)
        return
    for cohort, group in values.groupby(table["cohort"]):
        sorted_values = np.sort(group.dropna().to_numpy())
        if len(sorted_values):
            ax.step(sorted_values, np.arange(1, len(sorted_values) + 1) / len(sorted_values), where="post",
                    label=f"{cohort} (n={len(sorted_values)})")
    ax.axvline(0.0, color="0.4", linewidth=0.6)
    ax.set_xlabel(f"{label} energy above the hull (eV/atom)")
    ax.set_ylabel("fraction of the cohort's structures with a value")
    ax.legend(fontsize=6)
    ax.set_title(f"{label} energy above the hull per cohort", fontsize=9)
    save_figure(figure, path)


def response_curve(rates: pd.DataFrame, factor_column: str, metric: str, path: Path) -> None:
    """A rate against an ordered factor's value (temperature, condition value), with its intervals.

    One line per level of the other factors (``cohort_<factor>`` columns: each model its own
    curve), never one line zig-zagging across models.
    """
    figure, ax = new_figure()
    x = pd.to_numeric(rates.get(factor_column), errors="coerce") if factor_column in rates.columns else None
    if x is None or x.notna().sum() == 0:
        draw_no_data(ax, f"no numeric values of {factor_column}")
        save_figure(figure, path)
        return
    rate, low, high = _interval(rates, metric)
    others = [c for c in rates.columns if c.startswith("cohort_") and c != factor_column]
    keys = rates[others].astype(str).agg(", ".join, axis=1) if others else pd.Series("", index=rates.index)
    for key in dict.fromkeys(keys):
        rows = np.flatnonzero((keys == key).to_numpy() & x.notna().to_numpy())
        rows = rows[np.argsort(x.to_numpy()[rows], kind="stable")]
        xs = x.to_numpy()[rows]
        line = ax.plot(xs, rate[rows], "o-", label=key or None)[0]
        ax.fill_between(xs, low[rows], high[rows], alpha=0.2, color=line.get_color(), linewidth=0)
    if others:
        ax.legend(fontsize=6)
    ax.set_xlabel(factor_column)
    ax.set_ylabel(f"{metric} rate (95 % interval)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{metric} against {factor_column}", fontsize=9)
    save_figure(figure, path)


def cumulative_useful_vs_core_hours(table: pd.DataFrame, useful: pd.Series, path: Path, label: str = "S.U.N.") -> None:
    """Cumulative useful structures against cumulative core-hours per cohort, in the order rows were computed.

    ``useful`` marks the rows that count (e.g. S.U.N., or S.U.N. and on target); the cost of a row is
    its ``total_core_hours`` (duplicates cost nothing: their DFT ran once, in the representative's row).
    """
    figure, ax = new_figure()
    hours = pd.to_numeric(table.get("total_core_hours"), errors="coerce") if "total_core_hours" in table else None
    if hours is None or hours.fillna(0).sum() == 0:
        draw_no_data(ax, "no DFT cost recorded yet")
        save_figure(figure, path)
        return
    frame = pd.DataFrame({"cohort": table["cohort"], "hours": hours.fillna(0.0), "useful": useful.fillna(False)})
    for cohort, group in frame.groupby("cohort"):
        ax.step(group["hours"].cumsum(), group["useful"].astype(int).cumsum(), where="post", label=str(cohort))
    ax.set_xlabel("cumulative core-hours")
    ax.set_ylabel(f"cumulative {label} structures")
    ax.legend(fontsize=6)
    ax.set_title(f"{label} structures per core-hour", fontsize=9)
    save_figure(figure, path)


def novelty_vs_stability(rates: pd.DataFrame, path: Path) -> None:
    """Each cohort's novel rate against its stable rate, with both intervals."""
    figure, ax = new_figure()
    if rates.empty or "novel_rate" not in rates.columns or "stable_rate" not in rates.columns:
        draw_no_data(ax, "needs a known set (novelty) and DFT stability")
        save_figure(figure, path)
        return
    stable, stable_low, stable_high = _interval(rates, "stable")
    novel, novel_low, novel_high = _interval(rates, "novel")
    for i, cohort in enumerate(rates["cohort"]):
        ax.errorbar(stable[i], novel[i], xerr=[[stable[i] - stable_low[i]], [stable_high[i] - stable[i]]],
                    yerr=[[novel[i] - novel_low[i]], [novel_high[i] - novel[i]]], fmt="o", capsize=2,
                    label=str(cohort))
    ax.set_xlabel("stable rate")
    ax.set_ylabel("novel rate")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=6)
    ax.set_title("Novelty against stability per cohort (95 % intervals)", fontsize=9)
    save_figure(figure, path)


def unit_text(unit: str) -> str:
    """A unit as written in column names, as read: ``eV_per_atom`` -> ``eV/atom``, ``g_cm3`` -> ``g/cm³``."""
    return {"eV_per_atom": "eV/atom", "g_cm3": "g/cm³", "muB": "µB"}.get(unit, unit)


def _cohort_offsets(cohorts: Sequence[str], tolerance: float) -> dict[str, float]:
    """A horizontal offset per cohort (the property's unit), so that cohorts asked for one value stand side by side."""
    step = 0.5 * tolerance / max(1, len(cohorts)) if tolerance > 0 else 0.0
    return {cohort: (i - (len(cohorts) - 1) / 2) * step for i, cohort in enumerate(cohorts)}


def _conditioned_scatter(ax, asked: pd.DataFrame, offsets: dict[str, float], colors: dict[str, str]) -> bool:
    """Computed against requested per cohort: DFT values filled, ML values hollow; True when ML values are drawn."""
    any_ml = False
    for cohort, offset in offsets.items():
        group = asked[(asked["cohort"] == cohort) & asked["computed"].notna()]
        for source, filled in (("DFT", True), ("ML", False)):
            part = group[group["source"] == source]
            if part.empty:
                continue
            any_ml |= not filled
            ax.scatter(part["requested"] + offset, part["computed"], s=14, linewidths=0.8, alpha=0.75,
                       color=colors[cohort] if filled else "none", edgecolors=colors[cohort],
                       label=str(cohort) if filled or not (group["source"] == "DFT").any() else None)  # fmt: skip
    return any_ml


def _tolerance_band(ax, conditions: np.ndarray, tolerance: float, unit: str) -> None:
    """The line y = x with the tolerance band around it, over the condition values."""
    pad = max(2 * tolerance, 0.05 * float(np.ptp(conditions)) if len(conditions) else 0.0, 1e-3)
    xs = np.array([np.min(conditions) - pad, np.max(conditions) + pad])
    ax.fill_between(xs, xs - tolerance, xs + tolerance, color="0.88", linewidth=0,
                    label=f"requested ± {tolerance:g} {unit_text(unit)}")  # fmt: skip
    ax.plot(xs, xs, color="0.35", linewidth=0.8, label="y = x")


def _baseline_strip(ax, points: pd.DataFrame, rows: pd.DataFrame, tolerance: float) -> None:
    """The baseline cohort's computed values along the same axis (a horizontal histogram), each condition's
    window shaded and labelled with the share of the baseline that lands in it."""
    bases = list(dict.fromkeys(rows.get("baseline", pd.Series(dtype=object)).dropna()))
    values = points[points["cohort"].isin(bases)]["computed"].dropna().to_numpy(dtype=float)
    ax.tick_params(labelleft=False, labelsize=6)
    if not bases or values.size == 0:
        ax.text(0.5, 0.5, "no baseline" if not bases else "baseline:\nno computed\nvalue", ha="center",
                va="center", fontsize=7, color="0.4", transform=ax.transAxes)  # fmt: skip
        ax.set_xticks([])
        return
    # Bins half a tolerance wide (at most 60), so that a window spans about two of them.
    span = float(np.ptp(values))
    bins = int(min(60, max(5, np.ceil(span / (tolerance / 2))))) if tolerance > 0 and span > 0 else 10
    ax.hist(values, bins=bins, orientation="horizontal", color="0.55")
    shown = rows.dropna(subset=["baseline_window_rate"]).drop_duplicates("condition_value")
    for row in shown.itertuples():
        ax.axhspan(row.condition_value - tolerance, row.condition_value + tolerance, color=BASELINE_COLOR,
                   alpha=0.12, linewidth=0)  # fmt: skip
        if len(shown) <= 8:
            ax.text(0.97, row.condition_value, f"{100 * row.baseline_window_rate:.0f} %", ha="right",
                    va="center", fontsize=6, color=BASELINE_COLOR, transform=ax.get_yaxis_transform())  # fmt: skip
    label = bases[0] if len(bases) == 1 else f"{len(bases)} baselines"
    ax.set_title(f"baseline\n{label[:28]}", fontsize=7)
    ax.set_xlabel("inputs", fontsize=7)


def _lift_panel(ax, rows: pd.DataFrame, offsets: dict[str, float], colors: dict[str, str]) -> None:
    """Per condition value and cohort: the hit-rate lift over the baseline's window rate with its interval
    (without a baseline: the hit rate with its interval)."""
    with_lift = "lift" in rows.columns and pd.to_numeric(rows["lift"], errors="coerce").notna().any()
    column, low, high = ("lift", "lift_low", "lift_high") if with_lift else ("hit_rate", "hit_low", "hit_high")
    for cohort, offset in offsets.items():
        part = rows[rows["cohort"] == cohort]
        y = pd.to_numeric(part[column], errors="coerce").to_numpy(dtype=float)
        keep = np.isfinite(y)
        if not keep.any():
            continue
        x = part["condition_value"].to_numpy(dtype=float)[keep] + offset
        lo, hi = (pd.to_numeric(part[c], errors="coerce").to_numpy(dtype=float)[keep] for c in (low, high))
        ax.errorbar(x, y[keep], yerr=[y[keep] - lo, hi - y[keep]], fmt="o", color=colors[cohort], capsize=2,
                    markersize=3.5, linewidth=0.8)  # fmt: skip
    if with_lift:
        ax.axhline(0.0, color="0.4", linewidth=0.6)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("hit rate − baseline\nwindow rate", fontsize=7)
    else:
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("hit rate", fontsize=7)
    ax.tick_params(labelsize=7)


def conditioning_plot(
    points: pd.DataFrame, rows: pd.DataFrame, name: str, unit: str, tolerance: float, path: Path
) -> None:
    """Computed against requested ``name`` per condition value, with the baseline in the same target window.

    ``points`` (:func:`dftscreen.conditioning.conditioning_points`: cohort, requested, computed,
    source) and ``rows`` (:func:`dftscreen.conditioning.condition_rows`); ``tolerance`` in ``unit``.
    Top left: each conditioned cohort's computed values at its requested values (DFT filled, ML
    hollow), the line y = x and the tolerance band; top right, on the same axis, the baseline
    cohort's computed values with each condition's window and the share of the baseline in it;
    below: the hit-rate lift over that share with its interval per condition value (the hit rate
    when there is no baseline).
    """
    figure, ax = new_figure()
    usable = {"requested", "computed", "source"} <= set(points.columns)
    asked = points[points["requested"].notna()] if usable else pd.DataFrame(columns=["requested", "computed"])
    if asked["computed"].notna().sum() == 0 or rows.empty:
        what = "no requested" if asked.empty else "no computed"
        draw_no_data(ax, f"{name}: {what} value for any conditioned input yet")
        save_figure(figure, path)
        return
    figure.delaxes(ax)
    figure.set_size_inches(7.2, 6.0)
    grid = figure.add_gridspec(2, 2, width_ratios=[4, 1], height_ratios=[3, 1.3])
    main = figure.add_subplot(grid[0, 0])
    strip = figure.add_subplot(grid[0, 1], sharey=main)
    lift = figure.add_subplot(grid[1, 0], sharex=main)
    cohorts = [str(c) for c in dict.fromkeys(rows["cohort"])]
    palette = [f"C{i % 10}" for i in range(len(cohorts))]
    colors = dict(zip(cohorts, palette))
    offsets = _cohort_offsets(cohorts, tolerance)
    _tolerance_band(main, rows["condition_value"].to_numpy(dtype=float), tolerance, unit)
    if _conditioned_scatter(main, asked, offsets, colors):
        from matplotlib.lines import Line2D

        main.legend(handles=[*main.get_legend_handles_labels()[0], Line2D(
            [], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="0.3",
            label="hollow: ML value (no DFT value)")], fontsize=6)  # fmt: skip
    else:
        main.legend(fontsize=6)
    text = unit_text(unit)
    main.set_ylabel(f"computed {name} ({text})", fontsize=8)
    main.set_title(f"{name}: computed against requested, band ± {tolerance:g} {text}", fontsize=9)
    main.tick_params(labelbottom=False, labelsize=7)
    _baseline_strip(strip, points, rows, tolerance)
    _lift_panel(lift, rows, offsets, colors)
    lift.set_xlabel(f"requested {name} ({text})", fontsize=8)
    save_figure(figure, path)
