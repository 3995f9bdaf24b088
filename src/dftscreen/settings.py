"""Named DFT presets (GPAW + ASE optimizer settings) and their overrides.

A preset is three plain dictionaries: ``gpaw`` (keyword arguments that become a
GPAW calculator, in GPAW's own units: eV, Å; translated by
:func:`dftscreen.dft.gpaw_calculator_kwargs`), ``relax`` (the ASE optimizer and
its stopping criteria) and ``properties`` (the single point's band gap). Config
can pick a preset by name and override any GPAW keyword and the known keys of
``relax`` and ``properties`` (:data:`SECTION_KEYS`; an unknown one is an error);
:func:`resolve_settings` merges them.

Presets:

``test``
    Low cutoff (400 eV) and a coarse k-mesh (density 2.0 Å): seconds per SCF on a small cell. For CI and trying
    the workflow out; its numbers are not converged and must not be published.
``fast``
    Screening quality: 600 eV, k-point density 3.0 Å, forces below 0.05 eV/Å.
``standard``
    Publication-like PBE: 800 eV cutoff (converged stress for cell relaxation,
    see the comment in the preset) with GPAW's Pulay-stress estimate, k-point
    density 5.0 Å (points per Å⁻¹ of reciprocal-lattice length), Fermi-Dirac
    smearing 0.05 eV, forces below 0.02 eV/Å.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "test": {
        "gpaw": {
            "xc": "PBE",
            # Below ~400 eV oxides collapse under Pulay stress even with the
            # estimate (MgGeO3 lost 45 % of its volume at 250 eV, 15 % at
            # 450 eV); 400 eV costs the same seconds on 5-atom cells.
            "ecut_eV": 400.0,
            "dedecut": "estimate",
            "kpt_density_per_A": 2.0,
            "smearing_eV": 0.1,
            "convergence": {"energy": 1e-4, "density": 1e-3, "eigenstates": 1e-6},
            "maxiter": 100,
        },
        # Band gap: same mesh, and a coarse band path (cheap on small cells).
        "properties": {"kpt_density_per_A": 2.0, "band_path_npoints": 30, "gllbsc": False},
        "relax": {
            "optimizer": "BFGS",
            "fmax_eV_per_A": 0.1,
            "stress_threshold_GPa": 2.0,
            "max_steps": 20,
            "fix_symmetry": True,
            "symprec": 1e-3,
        },
    },
    "fast": {
        "gpaw": {
            "xc": "PBE",
            "ecut_eV": 600.0,
            "dedecut": "estimate",
            "kpt_density_per_A": 3.0,
            "smearing_eV": 0.1,
            "convergence": {"energy": 1e-5, "density": 1e-4, "eigenstates": 1e-8},
            "maxiter": 200,
        },
        "properties": {"kpt_density_per_A": 4.0, "band_path_npoints": 0, "gllbsc": False},
        "relax": {
            "optimizer": "BFGS",
            "fmax_eV_per_A": 0.05,
            "stress_threshold_GPa": 1.0,
            "max_steps": 100,
            "fix_symmetry": True,
            "symprec": 1e-3,
        },
    },
    "standard": {
        "gpaw": {
            "xc": "PBE",
            # Stress, not energy, sets the cutoff for cell relaxation. MgGeO3
            # (perov_5 16100), PBE, Pulay estimate on: 12.5 GPa residual stress at
            # 400 eV, 5.3 GPa at 600 eV, 0.5 GPa at 800 eV.
            "ecut_eV": 800.0,
            "dedecut": "estimate",
            "kpt_density_per_A": 5.0,
            "smearing_eV": 0.05,
            "convergence": {"energy": 1e-6, "density": 1e-5, "eigenstates": 1e-9},
            "maxiter": 333,
        },
        # Denser mesh for the gap and a band path through the special points.
        "properties": {"kpt_density_per_A": 7.0, "band_path_npoints": 80, "gllbsc": False},
        "relax": {
            "optimizer": "BFGS",
            "fmax_eV_per_A": 0.02,
            "stress_threshold_GPa": 0.5,
            "max_steps": 200,
            "fix_symmetry": True,
            "symprec": 1e-3,
        },
    },
}

#: Optimizers from ase.optimize that may be named in config.
OPTIMIZERS = ("BFGS", "FIRE", "LBFGS", "BFGSLineSearch", "GPMin")

#: Keys of a preset's ``relax`` section (read by :mod:`dftscreen.relax`); the
#: config schema lists the same ones (``$defs/relax_settings``).
RELAX_KEYS = frozenset(
    {"optimizer", "fmax_eV_per_A", "stress_threshold_GPa", "max_steps", "fix_symmetry", "symprec", "relax_cell"}
)
#: Keys of a preset's ``properties`` section (read by :mod:`dftscreen.properties`).
PROPERTIES_KEYS = frozenset({"kpt_density_per_A", "band_path_npoints", "gllbsc"})
#: Sections of a preset and their keys: ``relax`` and ``properties`` are closed
#: vocabularies, so a misspelt key is an error instead of being merged and
#: ignored; ``gpaw`` is open (``None``): any GPAW keyword may be given there.
SECTION_KEYS: dict[str, frozenset[str] | None] = {
    "gpaw": None,
    "relax": RELAX_KEYS,
    "properties": PROPERTIES_KEYS,
}

#: Elements started spin-polarized, with the initial moment (µB per atom).
#: Magnetic 3d metals start high-spin at 5 µB, as in pymatgen's MPRelaxSet;
#: rare earths with open 4f shells at 7 µB. A moment that is not favourable
#: collapses towards zero in the SCF and is then reported as non-magnetic.
INITIAL_MAGMOMS_MUB: dict[str, float] = {
    **{el: 5.0 for el in ("V", "Cr", "Mn", "Fe", "Co", "Ni")},
    **{
        el: 7.0
        for el in ("Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb")
    },
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in, recursing into dictionaries."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def check_vocabulary(sections: dict[str, Any], where: str) -> None:
    """Check a preset or its overrides (``{"gpaw": ..., "relax": ..., "properties": ...}``) for unknown keys.

    Args:
        sections: the dictionary to check.
        where: its place in the config (e.g. ``dft.overrides``), named in the error.

    Raises:
        ValueError: an unknown section, or a key outside a closed section's
            vocabulary (:data:`SECTION_KEYS`), with the allowed keys and the
            closest one in the message.
    """
    for section, values in (sections or {}).items():
        if section not in SECTION_KEYS:
            raise ValueError(
                f"unknown section '{section}' in {where}{_did_you_mean(section, SECTION_KEYS)}; "
                f"allowed sections: {', '.join(sorted(SECTION_KEYS))}"
            )
        allowed = SECTION_KEYS[section]
        if not isinstance(values, dict):
            raise ValueError(f"{where}.{section} must be a mapping of keys to values, not {values!r}")
        if allowed is None:
            continue
        unknown = sorted(set(values) - allowed)
        if unknown:
            names = ", ".join(f"'{key}'" for key in unknown)
            hint = _did_you_mean(unknown[0], allowed) if len(unknown) == 1 else ""
            raise ValueError(
                f"unknown key{'s' if len(unknown) > 1 else ''} {names} in {where}.{section}{hint}; "
                f"allowed keys: {', '.join(sorted(allowed))}"
            )


def _did_you_mean(key: str, allowed: Any) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def resolve_settings(
    preset: str,
    overrides: dict[str, Any] | None = None,
    extra_presets: dict[str, dict[str, Any]] | None = None,
    scf_ladder: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Settings of the named preset with config overrides applied.

    Args:
        preset: name of a built-in preset or of one in ``extra_presets``.
        overrides: ``{"gpaw": {...}, "relax": {...}}`` merged over the preset.
        extra_presets: user-defined presets (merged over the built-in of the same
            name, or over ``standard`` for a new name).
        scf_ladder: rungs tried when the SCF does not converge (default
            :data:`dftscreen.recovery.DEFAULT_SCF_LADDER`); ``[]`` disables retries.

    Raises:
        KeyError: unknown preset, with the known names in the message.
        ValueError: an unknown key in the ``relax`` or ``properties`` section of
            ``overrides`` or of an extra preset (see :func:`check_vocabulary`),
            an incomplete ladder rung or an unknown optimizer.
    """
    check_vocabulary(overrides or {}, "dft.overrides")
    for name, values in (extra_presets or {}).items():
        check_vocabulary(values, f"dft.presets.{name}")
    presets = copy.deepcopy(PRESETS)
    for name, values in (extra_presets or {}).items():
        presets[name] = deep_merge(presets.get(name, PRESETS["standard"]), values)
    if preset not in presets:
        raise KeyError(f"unknown DFT preset '{preset}'; known presets: {', '.join(sorted(presets))}")
    from dftscreen.recovery import DEFAULT_SCF_LADDER

    settings = deep_merge(presets[preset], overrides or {})
    settings["preset"] = preset
    settings["scf_ladder"] = copy.deepcopy(DEFAULT_SCF_LADDER if scf_ladder is None else scf_ladder)
    for rung in settings["scf_ladder"]:
        missing = {"name", "description", "gpaw"} - set(rung)
        if missing:
            raise ValueError(f"SCF ladder rung {rung!r} lacks {', '.join(sorted(missing))}")
    optimizer = settings["relax"]["optimizer"]
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{optimizer}'; choose one of {', '.join(OPTIMIZERS)}")
    return settings


def initial_magmoms(symbols: list[str]) -> list[float] | None:
    """Initial magnetic moments (µB) for a list of chemical symbols.

    Returns ``None`` when no element is commonly magnetic, i.e. the calculation
    should not be spin-polarized.
    """
    moments = [INITIAL_MAGMOMS_MUB.get(s, 0.0) for s in symbols]
    return moments if any(moments) else None


def paw_elements(xc: str = "PBE") -> set[str]:
    """Chemical symbols that have a PAW dataset for ``xc`` in GPAW's setup paths."""
    import gpaw

    elements: set[str] = set()
    for folder in gpaw.setup_paths:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in folder.glob(f"*.{xc}*"):
            parts = path.name.split(".")
            # '<El>.<xc>[.gz]' only: skip '<El>.<n>.<xc>' special setups.
            if len(parts) >= 2 and parts[1] == xc:
                elements.add(parts[0])
    return elements
