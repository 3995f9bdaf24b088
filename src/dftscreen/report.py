"""The HTML report of a run: ``<output_dir>/report/index.html`` with its figures beside it as PNG.

For people new to DFT the table answers everything and explains nothing; the
report says how many structures survived each stage and why the others did
not, shows the distributions that matter, lists every structure with a verdict
and links to its relaxed CIF and job logs, what the run cost, and exactly which
code and settings produced it.

Self-contained: one HTML file with inline CSS and a few lines of inline
JavaScript (sorting the table), PNGs in the same folder, links relative to it.
Nothing is fetched from the network to view it. The figures (matplotlib, Agg
backend) are sized and labelled to be usable in a talk as they are.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from dftscreen import status_codes
from dftscreen.cohort_figures import draw_no_data, new_figure, save_figure
from dftscreen.columns import ML_FORMATION_COLUMN, PROVENANCE_COLUMNS, target_columns
from dftscreen.cost import FAILURE_KINDS
from dftscreen.io import atomic_write_text
from dftscreen.layout import ResultsLayout
from dftscreen.phonon_figures import phonon_section
from dftscreen.status import reason_kind
from dftscreen.summary import hull_column
from dftscreen.targets import TARGET_KINDS
from dftscreen.verdict import spacegroup_change

#: Figures every report has (a figure without data says so in the image).
FIXED_FIGURES = (
    "funnel.png",
    "formation_energy.png",
    "e_above_hull.png",
    "volume_change.png",
    "spacegroup_change.png",
    "cost_per_stage.png",
)
#: Optional figure of the ML stage (only when both ML and DFT formation energies exist).
ML_PARITY_FIGURE = "parity_ml_vs_dft_formation_energy.png"

#: Sections of the page (``<section id=...>``), in order; parity only with targets.
SECTIONS = (
    "funnel", "cohorts", "parity", "distributions", "spacegroups", "structures", "failures", "cost", "provenance",
)  # fmt: skip

#: Figures of the cohorts section (with config ``cohorts``), and their captions; one response curve
#: per ordered factor besides (:func:`cohort_response_figure_name`).
COHORT_FIGURES = {
    "cohort_rates.png": "Rates per cohort with their intervals (the baseline in red)",
    "cohort_funnels.png": "Funnel per cohort",
    "cohort_e_hull_ecdf.png": "DFT energy above the hull per cohort",
    "cohort_ml_e_hull_ecdf.png": "ML energy above the hull per cohort",
    "cohort_useful_per_core_hour.png": "Useful structures against core-hours per cohort",
    "cohort_novelty_vs_stability.png": "Novel rate against stable rate per cohort",
}
#: Figures of COHORT_FIGURES drawn from the results table (the others need the cohort table only).
COHORT_TABLE_FIGURES = ("cohort_e_hull_ecdf.png", "cohort_ml_e_hull_ecdf.png", "cohort_useful_per_core_hour.png")

#: Columns of the structures table: (column, header, decimals or None for text).
STRUCTURE_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("structure_id", "id", None),
    ("reduced_formula", "formula", None),
    ("status", "status", None),
    ("verdict", "verdict", None),
    ("n_sites", "atoms", 0),
    ("energy_per_atom_eV", "E (eV/atom)", 4),
    ("formation_energy_eV_per_atom", "E_form (eV/atom)", 3),
    ("@hull", "E_hull (eV/atom)", 3),
    ("band_gap_eV", "gap (eV)", 2),
    ("magnetic_moment_muB", "moment (µB)", 2),
    ("volume_change_pct", "ΔV (%)", 1),
    ("@spacegroups", "space group", None),
    ("total_core_hours", "core-hours", 4),
)

#: Most rows the structures table shows (a page of 100,000 rows would not open); the CSV has them all.
MAX_TABLE_ROWS = 5000

def parity_figure_name(target: str) -> str:
    """File name of the target-vs-computed parity plot of one target property."""
    return f"parity_{target}.png"


def cohort_response_figure_name(factor: str) -> str:
    """File name of the response curve (a rate against the factor's values) of one ordered factor."""
    return f"cohort_response_{factor}.png"


def conditioning_figure_name(target: str) -> str:
    """File name of the conditioning figure (computed against requested, with the baseline) of one target."""
    return f"conditioning_{target}.png"


def figure_names(target_names: Iterable[str] = (), cohort_ordered: Iterable[str] | None = None) -> list[str]:
    """Every PNG the report writes for these configured targets (what the workflow rule declares).

    ``cohort_ordered``: with config ``cohorts`` (a source other than none) its ordered factors, and
    the cohort figures are drawn (whatever the number of cohorts), with a conditioning figure per
    target; ``None``: no cohort figures.
    """
    targets = list(target_names)
    cohort = [] if cohort_ordered is None else [*COHORT_FIGURES, *map(cohort_response_figure_name, cohort_ordered)]
    conditioning = [] if cohort_ordered is None else [conditioning_figure_name(name) for name in targets]
    return [*FIXED_FIGURES, *(parity_figure_name(name) for name in targets), *cohort, *conditioning]


def figure_captions(names: Iterable[str]) -> dict[str, str]:
    """The caption file (``workflow/report/<name>.rst``) of each figure: one for every parity plot
    (``parity.rst``), one for every response curve (``cohort_response.rst``) and one for every
    conditioning figure (``conditioning.rst``)."""
    shared = ("parity_", "cohort_response_", "conditioning_")
    return {
        name: next((f"{p[:-1]}.rst" for p in shared if name.startswith(p)), name.replace(".png", ".rst"))
        for name in names
    }


# --------------------------------------------------------------------------- figures
# (new_figure, save_figure, draw_no_data: dftscreen.cohort_figures, which draws the cohort figures with them)


def plot_funnel(stages: list[dict[str, Any]], path: Path) -> None:
    """Horizontal bars: structures left after each stage, labelled with count and % of inputs."""
    figure, ax = new_figure()
    names = [s["stage"] for s in stages]
    counts = [s["count"] for s in stages]
    bars = ax.barh(names, counts, color="#3b75af")
    ax.invert_yaxis()
    ax.set_xlabel("structures")
    ax.set_title("How many structures survive each stage")
    top = max(counts) if counts and max(counts) else 1
    ax.set_xlim(0, top * 1.3)
    for bar, stage in zip(bars, stages):
        rate = stage["rate_of_inputs"]
        label = f"{stage['count']}" + (f" ({100 * rate:.0f} %)" if rate is not None else "")
        ax.text(bar.get_width() + top * 0.02, bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=11)
    save_figure(figure, path)


def plot_histogram(
    values: pd.Series,
    path: Path,
    xlabel: str,
    title: str,
    empty_message: str,
    marker: float | None = None,
    marker_label: str | None = None,
) -> None:
    """Histogram of one property over the structures; a note instead when there are no values."""
    figure, ax = new_figure()
    data = pd.to_numeric(values, errors="coerce").dropna()
    if data.empty:
        draw_no_data(ax, empty_message)
    else:
        ax.hist(data, bins=min(30, max(5, len(data))), color="#3b75af", edgecolor="white")
        if marker is not None:
            ax.axvline(marker, color="#c0392b", linestyle="--", label=marker_label)
            ax.legend()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("structures")
        ax.set_title(f"{title} (n = {len(data)})")
    save_figure(figure, path)


def plot_parity(
    target: pd.Series,
    computed: pd.Series,
    tolerance: float | None,
    path: Path,
    label: str,
    unit: str,
    xlabel: str = "target",
    ylabel: str = "computed (DFT)",
) -> dict[str, Any]:
    """Computed vs target with the line y = x and the hit band ±tolerance; returns n and hit count."""
    figure, ax = new_figure()
    x = pd.to_numeric(target, errors="coerce")
    y = pd.to_numeric(computed, errors="coerce")
    both = x.notna() & y.notna()
    x, y = x[both].to_numpy(float), y[both].to_numpy(float)
    hits = np.abs(y - x) <= tolerance if tolerance is not None else np.ones(len(x), dtype=bool)
    if len(x) == 0:
        draw_no_data(ax, f"no structure has both a {xlabel} and a {ylabel} {label}")
    else:
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = max(0.1 * (high - low), tolerance or 0.0, 0.1)
        line = np.array([low - pad, high + pad])
        if tolerance is not None:
            ax.fill_between(
                line,
                line - tolerance,
                line + tolerance,
                color="#2e8b57",
                alpha=0.15,
                label=f"hit band ±{tolerance:g} {unit}",
            )
        ax.plot(line, line, color="0.3", linewidth=1, label="y = x")
        ax.scatter(x[hits], y[hits], color="#2e8b57", label="hit" if tolerance is not None else None, zorder=3)
        if tolerance is not None:
            ax.scatter(x[~hits], y[~hits], color="#c0392b", marker="x", label="miss", zorder=3)
        ax.set_xlim(line)
        ax.set_ylim(line)
        ax.set_aspect("equal")
        ax.legend(fontsize=9)
        ax.set_xlabel(f"{xlabel} {label} ({unit})")
        ax.set_ylabel(f"{ylabel} {label} ({unit})")
        ax.set_title(
            f"{label}: {int(hits.sum())} of {len(x)} within ±{tolerance:g} {unit}"
            if tolerance is not None
            else f"{label} (n = {len(x)})"
        )
    save_figure(figure, path)
    return {"n": int(len(x)), "hits": int(hits.sum())}


def spacegroup_outcomes(table: pd.DataFrame) -> tuple[Counter, Counter]:
    """Relaxed structures whose space group was kept / changed / not compared, and each change (from -> to).

    A change is named by the symbols the comparison found (:func:`dftscreen.verdict.spacegroup_change`),
    never by the check's symbol, so it never reads as a change from a group to itself.
    """
    outcomes: Counter = Counter()
    changes: Counter = Counter()
    relaxed = table[table["status"].isin([status_codes.OK, status_codes.NOT_CONVERGED])]
    for row in relaxed.to_dict("records"):
        changed = row.get("spacegroup_changed")
        if changed is None or changed is pd.NA or changed != changed:
            outcomes["not compared"] += 1
        elif bool(changed):
            outcomes["changed"] += 1
            before, after = spacegroup_change(row) or (None, None)
            changes[f"{before or 'not recorded'} -> {after or 'not recorded'}"] += 1
        else:
            outcomes["kept"] += 1
    return outcomes, changes


def plot_spacegroups(outcomes: Counter, path: Path) -> None:
    """Bars: relaxed structures that kept their space group and those that changed it."""
    figure, ax = new_figure()
    if not outcomes:
        draw_no_data(ax, "no relaxed structures yet")
    else:
        names = [n for n in ("kept", "changed", "not compared") if outcomes.get(n)]
        colors = {"kept": "#2e8b57", "changed": "#c0392b", "not compared": "0.6"}
        bars = ax.bar(names, [outcomes[n] for n in names], color=[colors[n] for n in names])
        for bar in bars:
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                bar.get_height(),
                f"{int(bar.get_height())}",
                ha="center",
                va="bottom",
                fontsize=12,
            )
        ax.set_ylabel("relaxed structures")
        ax.set_title("Space group on relaxation: kept or changed")
        ax.set_ylim(0, max(outcomes.values()) * 1.2)
    save_figure(figure, path)


def plot_cost(cost: dict[str, Any], path: Path) -> None:
    """Bars: core-hours spent per stage, and projected for the pending jobs."""
    figure, ax = new_figure()
    stages = cost.get("stages", {})
    if not stages or not any(s["core_hours"] for s in stages.values()):
        draw_no_data(ax, "no DFT job has recorded its cost yet")
    else:
        names = list(stages)
        spent = [stages[n]["core_hours"] for n in names]
        projected_stages = cost.get("projection", {}).get("stages", {})
        pending = [projected_stages.get(n, {}).get("projected_core_hours") or 0.0 for n in names]
        ax.bar(names, spent, color="#3b75af", label="spent")
        if any(pending):
            ax.bar(names, pending, bottom=spent, color="#3b75af", alpha=0.35, label="projected for pending")
            ax.legend()
        ax.set_ylabel("core-hours")
        ax.set_title(f"Cost per stage (total {cost.get('total_core_hours', 0):.3g} core-hours)")
    save_figure(figure, path)


# --------------------------------------------------------------------------- HTML pieces


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _format(value: Any, decimals: int | None) -> str:
    if _missing(value):
        return ""
    if decimals is not None:
        try:
            return f"{float(value):.{decimals}f}"
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _href(target: Path, report_dir: Path) -> str:
    return quote(os.path.relpath(target, report_dir).replace(os.sep, "/"))


def _pct(rate: float | None) -> str:
    return "" if rate is None else f"{100 * rate:.1f} %"


def _table(headers: list[str], rows: list[list[str]], css_class: str = "", raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are HTML already)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in row) + "</tr>" for row in rows)
    cls = f' class="{css_class}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(name: str, alt: str) -> str:
    return f'<figure><img src="{quote(name)}" alt="{_e(alt)}"><figcaption>{_e(alt)}</figcaption></figure>'


def _relaxed_cif_path(relaxed_cif: Any, structure_dir: Path) -> Path | None:
    """The file a row's ``relaxed_cif`` names: as written (relative to where the workflow ran),
    else by its name in the structure's DFT folder (a report made from another folder); ``None`` without one."""
    if _missing(relaxed_cif) or not str(relaxed_cif):
        return None
    path = Path(str(relaxed_cif))
    return path if path.is_file() else structure_dir / path.name


def _links(row: dict[str, Any], out_dir: Path, report_dir: Path) -> str:
    """Links to the relaxed CIF and the job logs of a row's DFT (its representative's for a duplicate).

    Only files that exist are linked. The CIF is the row's ``relaxed_cif``: a row without
    one (a failed relaxation) links none, even when an earlier run left a ``relaxed.cif``.
    """
    dft_id = row.get("duplicate_of") if not _missing(row.get("duplicate_of")) else row["structure_id"]
    layout = ResultsLayout.of(out_dir)
    candidates = [
        ("CIF", _relaxed_cif_path(row.get("relaxed_cif"), Path(layout.structure_dir(str(dft_id))))),
        ("relax log", Path(layout.log("relax", str(dft_id)))),
        ("properties log", Path(layout.log("properties", str(dft_id)))),
    ]
    return " ".join(
        f'<a href="{_href(path, report_dir)}">{_e(label)}</a>'
        for label, path in candidates
        if path is not None and path.is_file()
    )


def structures_table(table: pd.DataFrame, out_dir: Path, report_dir: Path, max_rows: int = MAX_TABLE_ROWS) -> str:
    """The sortable table of the structures (the first ``max_rows``) with their verdicts and links."""
    e_hull = hull_column(table)
    note = ""
    if len(table) > max_rows:
        note = f'<p class="note">The first {max_rows} of {len(table)} structures; results.csv has them all.</p>'
        table = table.head(max_rows)
    headers = [header for _, header, _ in STRUCTURE_COLUMNS] + ["files"]
    body = []
    for row in table.to_dict("records"):
        cells = []
        for column, _, decimals in STRUCTURE_COLUMNS:
            if column == "@hull":
                value = row.get(e_hull) if e_hull else None
            elif column == "@spacegroups":
                change = spacegroup_change(row)
                value = (
                    f"{change[0] or 'not recorded'} -> {change[1] or 'not recorded'}"
                    if change
                    else row.get("spacegroup_symbol")
                )
            else:
                value = row.get(column)
            text = _format(value, decimals)
            sort_key = "" if _missing(value) or decimals is None else f' data-sort="{_e(float(value))}"'
            cells.append(f'<td{sort_key} class="{_e(column.strip("@"))}">{_e(text)}</td>')
        cells.append(f"<td>{_links(row, out_dir, report_dir)}</td>")
        body.append(f'<tr class="status-{_e(row.get("status"))}">' + "".join(cells) + "</tr>")
    head = "".join(f'<th title="click to sort">{_e(h)}</th>' for h in headers)
    return (
        note
        + '<table class="sortable" id="structures-table">'
        + f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def failure_groups(table: pd.DataFrame, examples: int = 5) -> list[tuple[str, str, int, list[str]]]:
    """Rows that did not make it, grouped by status and reason (numbers blanked): (status, reason, count, ids)."""
    lost = table[~table["status"].isin([status_codes.OK])]
    groups: dict[tuple[str, str], list[str]] = {}
    for row in lost.to_dict("records"):
        reason = row.get("reason")
        key = (str(row["status"]), reason_kind(reason if isinstance(reason, str) and reason else "no reason given"))
        groups.setdefault(key, []).append(str(row["structure_id"]))
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [(status, reason, len(ids), ids[:examples]) for (status, reason), ids in ordered]


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #3b75af; padding-bottom: 0.2em; margin-top: 2em; }
.warning { background: #c0392b; color: white; padding: 1em 1.2em; font-size: 1.2em; font-weight: bold;
           border-radius: 6px; margin: 1em 0; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #eef3f8; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order="asc"]::after { content: " ▲"; }
table.sortable th[data-order="desc"]::after { content: " ▼"; }
tr.status-failed td.status, tr.status-invalid td.status { color: #c0392b; font-weight: bold; }
tr.status-ok td.status { color: #2e8b57; font-weight: bold; }
td.verdict { min-width: 16em; max-width: 28em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; } figure img { max-width: 560px; width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #555; }
dt { font-weight: bold; } dd { margin: 0 0 0.4em 1.5em; }
"""

_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.dataset.order !== "asc";
      table.querySelectorAll("th").forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = ascending ? "asc" : "desc";
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[column];
        var text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
        var number = parseFloat(text);
        return text !== "" && isFinite(text) ? number : text.toLowerCase();
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" && y !== "") { return 1; }
        if (y === "" && x !== "") { return -1; }
        var order = (typeof x === typeof y) ? (x < y ? -1 : (x > y ? 1 : 0)) : (typeof x === "number" ? -1 : 1);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


# --------------------------------------------------------------------------- the sections


def _header(title: str, table: pd.DataFrame, summary: dict[str, Any], target_specs: dict[str, Any]) -> str:
    """Title, the run in one line, the not-converged warning (if any) and the section links."""
    provenance = summary.get("provenance") or {}
    parts = [f"<h1>{_e(title)}</h1>"]
    preset = provenance.get("dft_preset")
    parts.append(
        f'<p class="note">{len(table)} input files; DFT preset <b>{_e(preset)}</b>, functional '
        f"{_e(provenance.get('xc_functional'))}; dftscreen {_e(provenance.get('dftscreen_version'))}.</p>"
    )
    if summary.get("warning"):
        parts.append(f'<div class="warning" id="warning">{_e(summary["warning"])}</div>')
    nav_sections = [s for s in SECTIONS if s != "parity" or target_specs]
    parts.append("<nav>" + "".join(f'<a href="#{s}">{s}</a>' for s in nav_sections) + "</nav>")
    return "\n".join(parts)


def _funnel_section(
    stages: list[dict[str, Any]], e_hull: str | None, stable_threshold_eV_per_atom: float, report: Path
) -> str:
    """How many structures survived each stage: a table, its figure and what the stage names mean."""
    plot_funnel(stages, report / "funnel.png")
    rows = [[s["stage"], str(s["count"]), _pct(s["rate_of_inputs"]), _pct(s["rate_of_previous"])] for s in stages]
    return (
        '<section id="funnel"><h2>Funnel: how many structures survived each stage</h2>'
        + _table(["stage", "structures", "of inputs", "of the stage before"], rows)
        + _img("funnel.png", "Structures left after each stage")
        + f'<p class="note">relaxed: relaxed to the force and stress thresholds with properties computed; '
        f"stable: at most {stable_threshold_eV_per_atom:g} eV/atom above the hull "
        f"({_e(e_hull or 'no hull: formation energies off')}); "
        "on target: within the tolerance of every configured target.</p></section>"
    )


def _has_ml_parity(table: pd.DataFrame) -> bool:
    """Whether the table has both ML and DFT formation energies (the ML parity figure)."""
    return ML_FORMATION_COLUMN in table.columns and "formation_energy_eV_per_atom" in table.columns


def _plot_ml_parity(table: pd.DataFrame, report: Path) -> None:
    """The ML vs DFT formation-energy parity figure (no hit band)."""
    plot_parity(
        table[ML_FORMATION_COLUMN],
        table["formation_energy_eV_per_atom"],
        None,
        report / ML_PARITY_FIGURE,
        "formation energy",
        "eV/atom",
        xlabel="ML",
        ylabel="DFT",
    )


def _target_parity(table: pd.DataFrame, name: str, spec: dict[str, Any] | None, report: Path) -> tuple[str, list[str]]:
    """Plot one configured target against its computed column; its figure and its row of the hits table."""
    kind = TARGET_KINDS[name]
    target_col, _, _ = target_columns(name)
    computed_col = next((c for c in kind.computed_columns if c in table.columns), None)
    tolerance = float((spec or {}).get("tolerance", kind.default_tolerance))
    unit = kind.unit.replace("_per_", "/").replace("_", " ")
    counts = plot_parity(
        table.get(target_col, pd.Series(dtype=float)),
        table[computed_col] if computed_col else pd.Series(dtype=float),
        tolerance,
        report / parity_figure_name(name),
        name.replace("_", " "),
        unit,
    )
    figure = _img(parity_figure_name(name), f"Target vs computed {name.replace('_', ' ')}")
    return figure, [name, str(counts["n"]), str(counts["hits"]), f"±{tolerance:g} {unit}"]


def _parity_section(table: pd.DataFrame, target_specs: dict[str, Any], report: Path) -> str | None:
    """Targets: computed vs asked for (with ML vs DFT when both exist); ML vs DFT alone without targets.

    ``None`` when there is neither.
    """
    if target_specs:
        figures, rows = [], []
        for name, spec in target_specs.items():
            if name not in TARGET_KINDS:
                continue
            figure, row = _target_parity(table, name, spec, report)
            figures.append(figure)
            rows.append(row)
        if _has_ml_parity(table):
            _plot_ml_parity(table, report)
            figures.append(_img(ML_PARITY_FIGURE, "ML vs DFT formation energy"))
        return (
            '<section id="parity"><h2>Targets: computed vs asked for</h2>'
            + _table(["target", "compared", "hits", "hit band"], rows)
            + "".join(figures)
            + "</section>"
        )
    if _has_ml_parity(table):
        _plot_ml_parity(table, report)
        return (
            '<section id="parity"><h2>ML vs DFT</h2>'
            + _img(ML_PARITY_FIGURE, "ML vs DFT formation energy")
            + "</section>"
        )
    return None


def _distributions_section(
    own: pd.DataFrame, e_hull: str | None, stable_threshold_eV_per_atom: float, report: Path
) -> str:
    """Histograms of formation energy, energy above hull and volume change (``own``: duplicates left out)."""
    plot_histogram(
        own.get("formation_energy_eV_per_atom", pd.Series(dtype=float)),
        report / "formation_energy.png",
        "formation energy (eV/atom)",
        "Formation energy",
        "no formation energies (elemental references off or not finished)",
    )
    plot_histogram(
        own[e_hull] if e_hull else pd.Series(dtype=float),
        report / "e_above_hull.png",
        "energy above hull (eV/atom)",
        "Energy above the convex hull",
        "no energies above the hull (elemental references off or not finished)",
        marker=stable_threshold_eV_per_atom,
        marker_label="stability threshold",
    )
    plot_histogram(
        own.get("volume_change_pct", pd.Series(dtype=float)),
        report / "volume_change.png",
        "volume change on relaxation (%)",
        "Volume change on relaxation",
        "no relaxed structures yet",
        marker=0.0,
        marker_label="no change",
    )
    return (
        '<section id="distributions"><h2>Distributions</h2>'
        + '<p class="note">Each DFT calculation counted once (duplicates left out).</p>'
        + _img("formation_energy.png", "Formation energy per atom")
        + _img("e_above_hull.png", "Energy above the convex hull")
        + _img("volume_change.png", "Volume change on relaxation")
        + "</section>"
    )


def _spacegroups_section(own: pd.DataFrame, report: Path) -> str:
    """Relaxed structures that kept or changed their space group, and each change (duplicates left out)."""
    outcomes, changes = spacegroup_outcomes(own)
    plot_spacegroups(outcomes, report / "spacegroup_change.png")
    change_rows = [[change, str(count)] for change, count in changes.most_common()]
    return (
        '<section id="spacegroups"><h2>Space group: kept or changed on relaxation</h2>'
        + _img("spacegroup_change.png", "Space group kept vs changed")
        + (
            _table(["generated -> relaxed", "structures"], change_rows)
            if change_rows
            else '<p class="note">No relaxed structure changed its space group.</p>'
        )
        + "</section>"
    )


def _structures_section(table: pd.DataFrame, out: Path, report: Path) -> str:
    """The sortable table of every structure (:func:`structures_table`)."""
    return (
        '<section id="structures"><h2>Structures</h2><p class="note">Click a column header to sort. '
        "A duplicate shows (and links) the DFT of the structure it duplicates.</p>"
        + structures_table(table, out, report)
        + "</section>"
    )


def _failures_section(table: pd.DataFrame, cost: dict[str, Any]) -> str:
    """What did not make it, grouped by status and reason, and the DFT failures by kind."""
    groups = failure_groups(table)
    rows = [
        [status, reason, str(count), ", ".join(ids) + (" …" if count > len(ids) else "")]
        for status, reason, count, ids in groups
    ]
    taxonomy = cost.get("failure_taxonomy") or {}
    return (
        '<section id="failures"><h2>What did not make it, and why</h2>'
        + (
            _table(["status", "reason (numbers as #)", "structures", "e.g."], rows)
            if rows
            else '<p class="note">Every structure made it.</p>'
        )
        + "<h3>DFT failures by kind</h3>"
        + _table(["kind", "structures"], [[k, str(taxonomy.get(k, 0))] for k in FAILURE_KINDS])
        + "</section>"
    )


def _cost_stage_rows(cost: dict[str, Any]) -> list[list[str]]:
    """One row per stage: jobs, core-hours spent, core-hours per atom, pending jobs and their projected cost."""
    projection = cost.get("projection") or {}
    stage_rows = []
    for name, stage in (cost.get("stages") or {}).items():
        projected = (projection.get("stages") or {}).get(name, {})
        rate = projected.get("core_hours_per_atom")
        pending = projected.get("projected_core_hours")
        stage_rows.append(
            [
                name,
                str(stage["jobs"]),
                f"{stage['core_hours']:.4g}",
                "" if rate is None else f"{rate:.3g}",
                str(projected.get("pending_jobs", 0)),
                "unknown" if pending is None and projected.get("pending_jobs") else f"{pending or 0:.4g}",
            ]
        )
    return stage_rows


def _cost_section(cost: dict[str, Any], report: Path) -> str:
    """Core-hours spent and projected, per stage, with the cost of 1,000 inputs like these."""
    plot_cost(cost, report / "cost_per_stage.png")
    per_1000 = cost.get("core_hours_per_1000_inputs")
    return (
        '<section id="cost"><h2>Cost</h2>'
        + f"<p>{_e(cost.get('unit', 'core-hours'))}. Total <b>{cost.get('total_core_hours', 0):.4g} core-hours</b>"
        + (f"; at this rate 1,000 inputs like these would cost about {per_1000:.3g} core-hours" if per_1000 else "")
        + ".</p>"
        + _table(
            ["stage", "jobs", "core-hours", "core-hours per atom", "pending jobs", "projected core-hours"],
            _cost_stage_rows(cost),
        )
        + _img("cost_per_stage.png", "Core-hours per stage")
        + "</section>"
    )


def _provenance_section(
    table: pd.DataFrame,
    provenance: dict[str, Any],
    run_settings: dict[str, Any] | None,
    targets_config: dict[str, Any] | None,
    stable_threshold_eV_per_atom: float,
) -> str:
    """Versions and settings of the run, a warning when rows were computed with different ones, the targets."""
    rows = [[key, str(provenance.get(key))] for key in [*PROVENANCE_COLUMNS, "dft_preset"] if key in provenance]
    versions_in_rows = {
        c: sorted({str(v) for v in table[c].dropna()}) for c in PROVENANCE_COLUMNS if c in table.columns
    }
    mixed = {c: v for c, v in versions_in_rows.items() if len(v) > 1}
    target_specs = (targets_config or {}).get("properties") or {}
    return (
        '<section id="provenance"><h2>Settings and versions</h2>'
        + _table(["what", "value"], rows)
        + (
            f'<p class="warning">Rows were computed with different {_e(", ".join(mixed))}: see those columns.</p>'
            if mixed
            else '<p class="note">Every row was computed with these versions and settings.</p>'
        )
        + f"<p>Stability threshold: {stable_threshold_eV_per_atom:g} eV/atom.</p>"
        + "<h3>Resolved DFT settings</h3><pre>"
        + _e(json.dumps(run_settings or {}, indent=2, sort_keys=True))
        + "</pre>"
        + (("<h3>Targets</h3><pre>" + _e(json.dumps(targets_config, indent=2)) + "</pre>") if target_specs else "")
        + "</section>"
    )


# --------------------------------------------------------------------------- the cohorts section

#: Most comparison rows the page shows (cohorts.json has them all).
MAX_COMPARISON_ROWS = 400


def _cohort_figure_metrics(rates: pd.DataFrame) -> tuple[list[str], list[str], str]:
    """(forest plot metrics, funnel stages, the response curves' metric) among those the table has."""
    from dftscreen.cohort_table import HEADLINE_METRICS

    present = [m for m in HEADLINE_METRICS if f"{m}_rate" in rates.columns]
    forest = [m for m in present if m not in ("unique_in_cohort", "dft_done")]
    stages = [m for m in ("dft_ready", "unique_in_cohort", "passed_ml_screen", "dft_done", "stable", "sun")
              if m in present]  # fmt: skip
    response = next((m for m in ("sun", "stable", "dft_ready") if m in present), "dft_ready")
    return forest, stages, response


def _useful_rows(table: pd.DataFrame, thresholds: dict[str, Any]) -> tuple[pd.Series, str]:
    """Rows that count as useful structures of their cohort (S.U.N., else stable, else relaxed) and the word."""
    from dftscreen.cohort_table import row_metrics

    flags, _ = row_metrics(
        table,
        stable_threshold_eV_per_atom=thresholds.get("stable_threshold_eV_per_atom", 0.0),
        metastable_threshold_eV_per_atom=thresholds.get("metastable_threshold_eV_per_atom", 0.1),
    )
    for metric, word in (("sun", "S.U.N."), ("stable", "stable unique"), ("dft_done", "relaxed unique")):
        if metric in flags.columns:
            return pd.Series(flags[metric].to_numpy(), index=table.index), word
    return pd.Series(False, index=table.index), "relaxed unique"


def _draw_table_figures(table: pd.DataFrame, report: Path, thresholds: dict[str, Any]) -> None:
    """The cohort figures drawn from the results table: E_hull ECDFs (DFT, ML), useful structures per core-hour."""
    from dftscreen import cohort_figures
    from dftscreen.columns import ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES

    if "cohort" not in table.columns:
        table = table.assign(cohort="all")
    own = table[table["status"] != status_codes.DUPLICATE]
    ml_hull = next((c for c in (ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES) if c in table.columns), None)
    cohort_figures.e_hull_ecdf(own, hull_column(table), report / "cohort_e_hull_ecdf.png", label="DFT")
    cohort_figures.e_hull_ecdf(own, ml_hull, report / "cohort_ml_e_hull_ecdf.png", label="ML")
    useful, word = _useful_rows(table.reset_index(drop=True), thresholds)
    cohort_figures.cumulative_useful_vs_core_hours(
        table.reset_index(drop=True), useful, report / "cohort_useful_per_core_hour.png", label=word
    )


def draw_cohort_figures(
    rates: pd.DataFrame,
    report_dir: str | os.PathLike[str],
    *,
    table: pd.DataFrame | None = None,
    baseline: str | None = None,
    ordered: Iterable[str] | None = None,
    thresholds: dict[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """Draw the cohort figures (:mod:`dftscreen.cohort_figures`) into ``report_dir``; return (file, caption) each.

    ``table``: the results table, for the figures of :data:`COHORT_TABLE_FIGURES` (left out
    without it); ``ordered``: the factors with a response curve (default: every numeric factor
    column of ``rates``); ``thresholds``: the cohorts' stable and metastable thresholds.
    """
    from dftscreen import cohort_figures

    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)
    forest, stages, response = _cohort_figure_metrics(rates)
    cohort_figures.forest_plot(rates, forest, report / "cohort_rates.png", baseline=baseline)
    cohort_figures.funnels(rates, stages, report / "cohort_funnels.png")
    cohort_figures.novelty_vs_stability(rates, report / "cohort_novelty_vs_stability.png")
    names = ["cohort_rates.png", "cohort_funnels.png", "cohort_novelty_vs_stability.png"]
    if table is not None:
        _draw_table_figures(table, report, thresholds or {})
        names += list(COHORT_TABLE_FIGURES)
    if ordered is None:
        ordered = [c[len("cohort_"):] for c in rates.columns
                   if c.startswith("cohort_") and pd.api.types.is_numeric_dtype(rates[c])]  # fmt: skip
    drawn = [(name, COHORT_FIGURES[name]) for name in COHORT_FIGURES if name in names]
    for factor in ordered:
        name = cohort_response_figure_name(factor)
        cohort_figures.response_curve(rates, f"cohort_{factor}", response, report / name)
        drawn.append((name, f"{response} rate against {factor}"))
    return drawn


def _rate_text(count: Any, rate: Any, low: Any, high: Any, empty: str = "no inputs") -> str:
    """``count: rate (low-high)`` in per cent; without a rate (no denominator) the count and ``empty``."""
    if _missing(rate):
        return "" if _missing(count) else f"{int(count)} ({empty})"
    shown = "" if _missing(count) else f"{int(count)}: "
    return f"{shown}{100 * float(rate):.1f} % ({100 * float(low):.1f}-{100 * float(high):.1f})"


def _share(count: Any, n: Any) -> str:
    """``count/n (rate %)``."""
    return f"{int(count)}/{int(n)}" + (f" ({100 * int(count) / int(n):.1f} %)" if int(n) else "")


def _cohort_rows_table(rates: pd.DataFrame, metrics: list[str]) -> str:
    """One row per cohort: n, each metric's count, rate and interval, core-hours per S.U.N."""
    costs = [c for c in ("total_core_hours", "core_hours_per_sun") if c in rates.columns]
    rows = []
    for row in rates.to_dict("records"):
        cells = [str(row["cohort"]), str(row["n"])]
        cells += [_rate_text(row[f"{m}_count"], row[f"{m}_rate"], row[f"{m}_low"], row[f"{m}_high"]) for m in metrics]
        cells += [_format(row[c], 4) for c in costs]
        rows.append(cells)
    return _table(["cohort", "n", *metrics, *costs], rows, css_class="sortable")


def _comparisons_table(comparisons: pd.DataFrame, metrics: list[str]) -> str:
    """The headline comparisons with the baseline: rates, difference with its interval, ratio, Holm p, verdict."""
    shown = comparisons[comparisons["metric"].isin(metrics)]
    note = ""
    if len(shown) > MAX_COMPARISON_ROWS:
        note = f'<p class="note">The first {MAX_COMPARISON_ROWS} of {len(shown)}; cohorts.json has them all.</p>'
        shown = shown.head(MAX_COMPARISON_ROWS)
    rows = []
    for r in shown.to_dict("records"):
        difference = "" if _missing(r["difference"]) else (
            f"{100 * r['difference']:+.1f} ({100 * r['difference_low']:+.1f} to {100 * r['difference_high']:+.1f})"
        )
        rows.append([
            str(r["cohort"]), str(r["baseline"]), str(r["metric"]), _share(r["count"], r["n"]),
            _share(r["baseline_count"], r["baseline_n"]), difference, _format(r["ratio"], 2),
            _format(r["holm_p"], 3), str(r["verdict"]),
        ])  # fmt: skip
    headers = ["cohort", "baseline", "metric", "cohort rate", "baseline rate", "difference, points (interval)",
               "ratio", "Holm p", "verdict"]  # fmt: skip
    return note + _table(headers, rows)


def _trends_table(trends: pd.DataFrame, metrics: list[str]) -> str:
    """Cochran-Armitage trends of the headline metrics over each ordered factor, within each stratum."""
    shown = trends[trends["metric"].isin(metrics)]
    rows = [
        [str(r["factor"]), str(r["stratum"]), str(r["metric"]), str(r["levels"]), str(r["n"]),
         _format(r["z"], 2), _format(r["p"], 3), _format(r["holm_p"], 3), "" if _missing(r["direction"]) else
         str(r["direction"])]
        for r in shown.to_dict("records")
    ]  # fmt: skip
    return _table(["factor", "within", "metric", "levels", "n", "z", "p", "Holm p", "direction"], rows)


def _audit_table(rates: pd.DataFrame) -> str:
    """Per cohort: the screen audit's sample, the screen's false-negative rate and the weighted rates."""
    from dftscreen.cohort_table import WEIGHTED_METRICS

    weighted = [m for m in WEIGHTED_METRICS if f"{m}_weighted_rate" in rates.columns]
    rows = []
    for r in rates.to_dict("records"):
        cells = [str(r["cohort"]), str(r["screened_out_unique"]), str(r["screen_audited"])]
        cells.append(_rate_text(r.get("screen_audited_stable"), r.get("screen_false_negative_rate"),
                                r.get("screen_false_negative_low"), r.get("screen_false_negative_high"),
                                empty="none audited"))  # fmt: skip
        cells += [_rate_text(None, r[f"{m}_weighted_rate"], r[f"{m}_weighted_low"], r[f"{m}_weighted_high"])
                  for m in weighted]  # fmt: skip
        rows.append(cells)
    headers = ["cohort", "screened out", "audited", "screen false negatives (stable among audited)",
               *(f"{m} (weighted)" for m in weighted)]  # fmt: skip
    return (
        '<p class="note">Estimates from a sample: the ML screen audit sent a seeded random share of the screened-out '
        "structures to DFT; each DFT result is weighted by 1 / its probability of reaching DFT.</p>"
        + _table(headers, rows)
    )


def _lift_text(row: dict[str, Any]) -> str:
    """``+55.0 (+17.1 to +74.9)``: the lift in percentage points with its interval; empty without one."""
    if _missing(row.get("lift")):
        return ""
    return f"{100 * row['lift']:+.1f} ({100 * row['lift_low']:+.1f} to {100 * row['lift_high']:+.1f})"


def _conditioning_table(rows: pd.DataFrame, unit: str) -> str:
    """Per cohort and condition value: n, hits with the hit rate and its interval, the baseline's window
    rate and the lift with its interval (the baseline columns only with a baseline)."""
    note = ""
    if len(rows) > MAX_COMPARISON_ROWS:
        note = f'<p class="note">The first {MAX_COMPARISON_ROWS} of {len(rows)}; cohorts.json has them all.</p>'
        rows = rows.head(MAX_COMPARISON_ROWS)
    with_baseline = "baseline" in rows.columns and rows["baseline"].notna().any()
    body = []
    for r in rows.to_dict("records"):
        cells = [str(r["cohort"]), f"{float(r['condition_value']):g}", str(r["n"]),
                 _rate_text(r["hits"], r["hit_rate"], r["hit_low"], r["hit_high"]), str(r["hits_ml"])]  # fmt: skip
        if with_baseline:
            window = ""
            if not _missing(r.get("baseline")):
                rate = _rate_text(None, r["baseline_window_rate"], r["baseline_window_low"], r["baseline_window_high"])
                window = f"{int(r['baseline_in_window'])} of {int(r['baseline_n'])}: {rate or 'no inputs'}"
            ratio = _format(r.get("lift_ratio"), 2)
            cells += ["" if _missing(r.get("baseline")) else str(r["baseline"]), window, _lift_text(r), ratio]
        body.append(cells)
    headers = ["cohort", f"requested ({unit})", "n", "hits: hit rate (interval)", "hits on an ML value"]
    if with_baseline:
        headers += ["baseline", "baseline in the window: rate (interval)", "lift, points (interval)", "ratio"]
    return note + _table(headers, body, css_class="sortable")


def conditioning_section(
    conditioning: dict[str, Any] | None,
    table: pd.DataFrame,
    target_specs: dict[str, Any],
    report_dir: str | os.PathLike[str],
) -> str:
    """The cohorts section's part "Conditioning": per target property the table of
    :mod:`dftscreen.conditioning`'s rows (cohorts.json's ``conditioning``) and its figure.

    Draws ``conditioning_<name>.png`` (:func:`dftscreen.cohort_figures.conditioning_plot`) for every
    configured target in ``target_specs``, one without data saying so; the points are recomputed
    from the results table. Empty text when no target has conditioning rows.
    """
    from dftscreen import cohort_figures
    from dftscreen.columns import TARGET_UNITS
    from dftscreen.conditioning import CONDITIONING_DEFINITIONS, conditioning_points, target_tolerance

    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)
    properties = (conditioning or {}).get("properties") or {}
    parts = []
    for name, spec in target_specs.items():
        entry = properties.get(name) or {}
        rows = pd.DataFrame(entry.get("rows") or [])
        known = name in TARGET_KINDS
        unit = entry.get("unit") or TARGET_UNITS.get(name, "")
        tolerance = entry["tolerance"] if "tolerance" in entry else target_tolerance(name, spec) if known else 0.0
        points = conditioning_points(table, name) if known else pd.DataFrame()
        figure = conditioning_figure_name(name)
        cohort_figures.conditioning_plot(points, rows, name, unit, float(tolerance), report / figure)
        if rows.empty:
            continue
        caption = f"{name}: computed against requested per condition value, with the baseline in the same window"
        parts += [f"<h4>{_e(name)} (tolerance {float(tolerance):g} {_e(cohort_figures.unit_text(unit))})</h4>",
                  _conditioning_table(rows, cohort_figures.unit_text(unit)), _img(figure, caption)]  # fmt: skip
    if not parts:
        return ""
    intro = (
        '<p class="note">Per cohort and requested value: the share of its inputs whose computed value (DFT, else the '
        "ML model's, whose hits are counted apart) lies within the tolerance of the request, against the share "
        "of every input of the baseline cohort, which was asked nothing, that lands in the same window; the lift is "
        "their difference with Newcombe's interval. Inputs without a computed value count as misses.</p>"
    )
    definitions = (conditioning or {}).get("definitions") or CONDITIONING_DEFINITIONS
    return "<h3>Conditioning</h3>" + intro + "".join(parts) + _definitions_list([("conditioning", definitions)])


def _definitions_list(groups: list[tuple[str, dict[str, str] | None]]) -> str:
    """Each group of definitions (columns of the cohort table, of the comparisons ...) once, under its title."""
    return "".join(
        f"<h4>{_e(title)}</h4><dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items.items()) + "</dl>"
        for title, items in groups
        if items
    )


def cohorts_section(
    rates: pd.DataFrame | None,
    comparisons: pd.DataFrame | None,
    trends: pd.DataFrame | None,
    definitions: dict[str, str],
    report_dir: str | os.PathLike[str],
    *,
    table: pd.DataFrame | None = None,
    ordered: Iterable[str] | None = None,
    thresholds: dict[str, Any] | None = None,
    conditioning: str = "",
) -> str:
    """The report's section ``cohorts``: definitions once, per-cohort rates with intervals, comparisons
    with the baseline and their verdicts, trends, the screen audit's estimates and the cohort figures.

    ``rates``, ``comparisons``, ``trends``: :mod:`dftscreen.cohort_table` tables (cohorts.json);
    ``definitions``: what each rate means (:data:`dftscreen.cohort_table.DEFINITIONS`). With one
    cohort (or none) the section is one line (and ``conditioning``). ``table``, ``ordered``,
    ``thresholds``: as :func:`draw_cohort_figures`, which draws the figures into ``report_dir``;
    ``conditioning``: the HTML of :func:`conditioning_section`, shown after the screen audit.
    """
    from dftscreen.cohort_table import AUDIT_DEFINITIONS, COMPARISON_DEFINITIONS, HEADLINE_METRICS, TREND_DEFINITIONS

    head = '<section id="cohorts"><h2>Cohorts</h2>'
    if rates is None or len(rates) <= 1:
        only = "" if rates is None or rates.empty else f" ({_e(rates['cohort'].iloc[0])})"
        return head + (f'<p class="note">One cohort{only}: nothing to compare. Set <code>cohorts</code> in the '
                       f"config to compare generators, prompts or conditions.</p>{conditioning}</section>")  # fmt: skip
    metrics = [m for m in HEADLINE_METRICS if f"{m}_rate" in rates.columns]
    compared = comparisons is not None and not comparisons.empty
    trended = trends is not None and not trends.empty
    baselines = sorted({str(b) for b in comparisons["baseline"]}) if compared else []
    baseline = baselines[0] if len(baselines) == 1 else None
    figures = draw_cohort_figures(rates, report_dir, table=table, baseline=baseline, ordered=ordered,
                                  thresholds=thresholds)  # fmt: skip
    parts = [head, f'<p class="note">{len(rates)} cohorts; rates are shares of every input of the cohort, with '
             "intervals at the run's alpha (95 % by default): count: rate (low-high). cohorts.csv has every metric, "
             "cohorts.json every comparison.</p>", _cohort_rows_table(rates, metrics)]  # fmt: skip
    if compared:
        parts += ["<h3>Differences from the baseline</h3>", _comparisons_table(comparisons, metrics)]
    if trended:
        parts += ["<h3>Trends over ordered factors</h3>", _trends_table(trends, metrics)]
    audit = "screen_audited" in rates.columns
    if audit:
        parts += ["<h3>ML screen audit</h3>", _audit_table(rates)]
    parts.append(conditioning)
    parts += [_img(name, caption) for name, caption in figures]
    parts += ["<h3>Definitions</h3>", _definitions_list([
        ("cohort table", definitions), ("differences from the baseline", COMPARISON_DEFINITIONS if compared else None),
        ("trends", TREND_DEFINITIONS if trended else None), ("screen audit", AUDIT_DEFINITIONS if audit else None),
    ])]  # fmt: skip
    return "".join(parts) + "</section>"


def _frame(records: Any) -> pd.DataFrame | None:
    return pd.DataFrame(records) if records else None


def _cohorts_part(
    cohorts: dict[str, Any] | None,
    table: pd.DataFrame,
    report: Path,
    cohort_ordered: Iterable[str] | None,
    target_specs: dict[str, Any] | None = None,
) -> str:
    """The cohorts section from cohorts.json's content; with ``cohort_ordered`` (config cohorts) the
    cohort figures, and a conditioning figure per target of ``target_specs``, exist whatever the
    number of cohorts (the workflow declares them)."""
    conditioning = ""
    if cohort_ordered is not None:
        conditioning = conditioning_section((cohorts or {}).get("conditioning"), table, target_specs or {}, report)
    if cohorts is None:
        return cohorts_section(None, None, None, {}, report, conditioning=conditioning)
    from dftscreen.cohort_table import DEFINITIONS

    rates = _frame(cohorts.get("cohorts"))
    settings = cohorts.get("settings") or {}
    ordered = list(cohort_ordered) if cohort_ordered is not None else None
    if cohort_ordered is not None and (rates is None or len(rates) <= 1):
        draw_cohort_figures(rates if rates is not None else pd.DataFrame({"cohort": []}), report, table=table,
                            ordered=ordered, thresholds=settings)  # fmt: skip
    return cohorts_section(
        rates, _frame(cohorts.get("comparisons")), _frame(cohorts.get("trends")),
        cohorts.get("definitions") or DEFINITIONS, report, table=table, ordered=ordered, thresholds=settings,
        conditioning=conditioning,
    )  # fmt: skip



def _page(title: str, parts: list[str]) -> str:
    """The whole HTML document: head with the inline CSS, the parts one per line, the sorting script."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + f"\n<script>{_SORT_JS}</script>\n</body></html>\n"
    )


# --------------------------------------------------------------------------- the report


def build_report(
    out_dir: str | os.PathLike[str],
    table: pd.DataFrame,
    summary: dict[str, Any],
    report_dir: str | os.PathLike[str] | None = None,
    run_settings: dict[str, Any] | None = None,
    targets_config: dict[str, Any] | None = None,
    *,
    stable_threshold_eV_per_atom: float,
    cohorts: dict[str, Any] | None = None,
    cohort_ordered: Iterable[str] | None = None,
) -> Path:
    """Write ``index.html`` and its PNG figures into ``report_dir`` (default ``<out_dir>/report``).

    Args:
        out_dir: the run's output folder (links point to its ``dft/`` and ``logs/``).
        table: the results table (``results.parquet``).
        summary: ``summary.json`` of the same table.
        run_settings: the run's resolved DFT settings, shown for reproduction.
        targets_config: the config's ``targets`` section (tolerances of the hit bands).
        stable_threshold_eV_per_atom: the run's stability threshold (eV/atom).
        cohorts: the content of cohorts.json (:func:`dftscreen.cohort_table.write_cohort_outputs`);
            ``None``: the cohorts section says there is nothing to compare.
        cohort_ordered: with config ``cohorts``, its ordered factors: the cohort figures are drawn
            (:func:`figure_names`); ``None`` without.

    Returns:
        The path of ``index.html``.
    """
    out = Path(out_dir)
    report = Path(report_dir) if report_dir is not None else Path(ResultsLayout.of(out).report_dir)
    report.mkdir(parents=True, exist_ok=True)
    cost = summary.get("cost") or {}
    target_specs = (targets_config or {}).get("properties") or {}
    e_hull = hull_column(table)
    # Distributions and space groups count each DFT calculation once: a duplicate repeats its representative's.
    own = table[table["status"] != status_codes.DUPLICATE]
    title = f"dftscreen report: {out.resolve().name}"
    sections = [
        _header(title, table, summary, target_specs),
        _funnel_section(summary.get("funnel") or [], e_hull, stable_threshold_eV_per_atom, report),
        _cohorts_part(cohorts, table, report, cohort_ordered, target_specs),
        _parity_section(table, target_specs, report),
        _distributions_section(own, e_hull, stable_threshold_eV_per_atom, report),
        _spacegroups_section(own, report),
        _structures_section(table, out, report),
        phonon_section(table, out, report),
        _failures_section(table, cost),
        _cost_section(cost, report),
        _provenance_section(
            table, summary.get("provenance") or {}, run_settings, targets_config, stable_threshold_eV_per_atom
        ),
    ]
    index = report / "index.html"
    atomic_write_text(index, _page(title, [s for s in sections if s is not None]))
    return index
