"""The report's phonon part: band structure and DOS of each structure with DFT phonons.

One figure per structure (``phonons_<id>.png``), DFT in black and the ML potential's phonons
dashed on the same axes when both exist, imaginary frequencies drawn negative (phonopy's
convention) below a grey zero line. The ML band path is mapped segment by segment onto the DFT
one's axis: the two relaxed cells differ slightly, their special points do not.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from dftscreen.cohort_figures import new_figure, save_figure
from dftscreen.columns import DYNAMICALLY_STABLE_COLUMN
from dftscreen.io import read_json_if_exists
from dftscreen.layout import ResultsLayout

#: Most structures drawn (the figures are per structure; the table lists every one).
MAX_PHONON_FIGURES = 200


def phonon_figure_name(structure_id: str) -> str:
    """File name of one structure's phonon figure in the report folder."""
    return f"phonons_{structure_id}.png"


def _path_axis(band: Mapping[str, Any], onto: Mapping[str, Any] | None) -> np.ndarray:
    """``band``'s path distances, mapped onto ``onto``'s special-point positions when both run through the
    same special points (else its own)."""
    distances = np.asarray(band["distances"], dtype=float)
    if onto is None or list(band["labels"]) != list(onto["labels"]):
        return distances
    return np.interp(distances, np.asarray(band["label_distances"], float), np.asarray(onto["label_distances"], float))


def plot_phonons(dft: Mapping[str, Any] | None, ml: Mapping[str, Any] | None, title: str, path: Path) -> None:
    """Band structure (left) and total DOS (right), frequencies in THz, of the DFT and/or ML phonon records."""
    figure, first = new_figure()
    figure.delaxes(first)
    bands, dos = figure.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    reference = (dft or ml or {}).get("band_structure")
    for record, style, name in ((dft, {"color": "black", "lw": 1.2}, "DFT"),
                                (ml, {"color": "#e07b00", "lw": 1.0, "ls": "--"}, "ML")):
        if not record or "band_structure" not in record:
            continue
        band = record["band_structure"]
        x = _path_axis(band, reference)
        frequencies = np.asarray(band["frequencies_THz"], dtype=float)
        # A jump in the path (ASE's "X|M": two points at one distance) is drawn as a gap, not a vertical line.
        jumps = np.flatnonzero(np.diff(x) == 0) + 1
        x = np.insert(x, jumps, np.nan)
        frequencies = np.insert(frequencies, jumps, np.nan, axis=0)
        lines = bands.plot(x, frequencies, **style)
        lines[0].set_label(name)
        states = record.get("dos") or {}
        if states:
            dos.plot(np.asarray(states["dos"], float), np.asarray(states["frequencies_THz"], float), **style)
    if reference:
        for position in reference["label_distances"]:
            bands.axvline(position, color="0.8", lw=0.6)
        ticks: list[float] = []
        names: list[str] = []
        for position, label in zip(reference["label_distances"], reference["labels"]):
            if ticks and position == ticks[-1]:
                names[-1] += f"|{label}"  # the end of one segment and the start of the next
            else:
                ticks.append(position)
                names.append(label)
        bands.set_xticks(ticks)
        bands.set_xticklabels(names)
        bands.set_xlim(min(reference["label_distances"]), max(reference["label_distances"]))
    for axis in (bands, dos):
        axis.axhline(0.0, color="0.5", lw=0.6)
    bands.set_ylabel("frequency (THz; negative = imaginary)")
    bands.set_title(title, fontsize=10)
    bands.legend(loc="upper right", fontsize=9)
    dos.set_xlabel("DOS (states/THz)")
    dos.set_xlim(left=0)
    save_figure(figure, path)


def _caption(row: Mapping[str, Any]) -> str:
    stable = row.get(DYNAMICALLY_STABLE_COLUMN)
    words = "dynamically stable" if stable is True else "dynamically unstable" if stable is False else "not judged"
    low = row.get("min_phonon_frequency_THz")
    where = row.get("min_phonon_qpoint_label") or row.get("min_phonon_qpoint") or ""
    lowest = f", lowest mode {float(low):.2f} THz at {where}" if isinstance(low, (int, float)) else ""
    ml = row.get("ml_dynamically_stable")
    ml_words = "" if ml is None or ml != ml else f"; ML phonons: {'stable' if ml else 'unstable'}"
    return f"{row['structure_id']}: {words}{lowest}{ml_words}"


def phonon_section(table: pd.DataFrame, out_dir: str | Path, report_dir: Path) -> str | None:
    """The report section with a phonon figure per structure with DFT phonons (``None``: none has them)."""
    if DYNAMICALLY_STABLE_COLUMN not in table.columns:
        return None
    layout = ResultsLayout.of(out_dir)
    checked = table[table[DYNAMICALLY_STABLE_COLUMN].notna() & (table["status"] != "duplicate")]
    if checked.empty:
        return None
    items = []
    for row in checked.head(MAX_PHONON_FIGURES).to_dict("records"):
        sid = row["structure_id"]
        name = phonon_figure_name(sid)
        dft, ml = read_json_if_exists(layout.phonon_record(sid)), read_json_if_exists(layout.ml_phonon_record(sid))
        plot_phonons(dft, ml, sid, report_dir / name)
        caption = html.escape(_caption(row))
        items.append(f'<figure><img src="{quote(name)}" alt="{caption}"><figcaption>{caption}</figcaption></figure>')
    more = len(checked) - MAX_PHONON_FIGURES
    note = f"<p class=\"note\">{more} more structures with DFT phonons are in the table.</p>" if more > 0 else ""
    return (
        '<section id="phonons"><h2>Phonons</h2><p class="note">Band structure and density of states of each '
        "structure with DFT phonons (black; the ML potential's dashed, on the same axes). Negative frequencies "
        "are imaginary modes: the structure would distort along them.</p>" + "".join(items) + note + "</section>"
    )
