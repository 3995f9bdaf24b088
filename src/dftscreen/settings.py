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
    Screening quality: 600 eV with the cell's own cutoff derivative for the Pulay stress,
    k-point density 3.0 Å (2.0 for a compound whose start gap is at least 0.5 eV), forces
    below 0.05 eV/Å.
``standard``
    Publication-like PBE: 700 eV cutoff with the cell's own cutoff derivative
    (converged stress for cell relaxation, see the comment in the preset), k-point
    density 5.0 Å (points per Å⁻¹ of reciprocal-lattice length; 3.0 for a compound whose
    start gap is at least 0.5 eV), Fermi-Dirac smearing 0.05 eV, forces below 0.02 eV/Å.

Both k-point densities of a preset: ``kpt_density_per_A`` is every calculation's mesh;
``kpt_density_insulator_per_A`` (null: none) replaces it in the relaxation of a compound
whose band gap on a coarse mesh at its start geometry is at least ``insulator_min_gap_eV``
(:mod:`dftscreen.relax`, which goes back to the dense mesh if the gap closes on the way).
Elemental references always relax on ``kpt_density_per_A``. Changing a preset changes its
settings hash: a run keeps what it computed with the old one only under the old hash.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
            # The estimate left 3.9 GPa of stress error at 600 eV, the computed derivative 0.8
            # (inside the 1.0 GPa threshold); formation energies within 2.7 meV/atom of 1000 eV.
            "ecut_eV": 600.0,
            "dedecut": "computed",
            "kpt_density_per_A": 3.0,
            # Wide-gap compounds' energies within 3.8 meV/atom and stresses within 0.09 GPa of
            # k 8 at k 2.0 (MgGeO3, MgO, LiF, NaCl, CaTiO3); metals are not (Al 64 meV/atom).
            "kpt_density_insulator_per_A": 2.0,
            "insulator_min_gap_eV": 0.5,
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
            # 400 eV, 5.3 GPa at 600 eV, 0.5 GPa at 800 eV. At fixed geometry the estimate
            # itself is 0.7-1.2 GPa off the converged stress at 800 eV (MgGeO3, MgO, CaTiO3,
            # LiF); the cell's own derivative ("computed") is within 0.24 GPa and 0.17 % of
            # volume at 700 eV, formation energies within 1.8 meV/atom of 1000 eV
            # (bench/README.md, "Converged settings").
            "ecut_eV": 700.0,
            "dedecut": "computed",
            "kpt_density_per_A": 5.0,
            # Compounds with a gap (MgGeO3's 0.78 eV included) are within 1.4 meV/atom and
            # 0.04 GPa of k 8 at k 3.0; metals need 6 (Al, Mg, Fe), Si is 4.8 meV/atom off at 3.
            "kpt_density_insulator_per_A": 3.0,
            "insulator_min_gap_eV": 0.5,
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

#: Optimizers from ase.optimize that may be named in config (PreconLBFGS with the Exp
#: preconditioner, see :mod:`dftscreen.relax`), and BFGS-MLHessian: BFGS starting from the ML
#: potential's Hessian (:mod:`dftscreen.ml_hessian`). Every preset uses BFGS: no comparison has yet
#: shown another reaching the same minimum in fewer steps (issue 32).
OPTIMIZERS = ("BFGS", "FIRE", "LBFGS", "BFGSLineSearch", "GPMin", "PreconLBFGS", "BFGS-MLHessian")

#: Keys of a preset's ``relax`` section (read by :mod:`dftscreen.relax`); the
#: config schema lists the same ones (``$defs/relax_settings``).
RELAX_KEYS = frozenset(
    {"optimizer", "fmax_eV_per_A", "stress_threshold_GPa", "max_steps", "fix_symmetry", "symprec", "relax_cell"}
)
#: Keys of a preset's ``properties`` section (read by :mod:`dftscreen.properties`);
#: ``keep_restart_file`` is in no preset (absent: false, the relaxation's GPAW state is removed
#: once the single point is written).
PROPERTIES_KEYS = frozenset({"kpt_density_per_A", "band_path_npoints", "gllbsc", "keep_restart_file"})
#: Sections of a preset and their keys: ``relax`` and ``properties`` are closed
#: vocabularies, so a misspelt key is an error instead of being merged and
#: ignored; ``gpaw`` is open here (``None``): any GPAW keyword may be given there,
#: and :func:`check_dft_config` (run at start-up) refuses a key that is neither
#: one of :data:`OWN_GPAW_SETTING_KEYS` nor of :data:`GPAW_KEYWORDS`.
SECTION_KEYS: dict[str, frozenset[str] | None] = {
    "gpaw": None,
    "relax": RELAX_KEYS,
    "properties": PROPERTIES_KEYS,
}
#: dftscreen's own keys of a ``gpaw`` section (translated into GPAW objects by
#: :func:`dftscreen.dft.gpaw_calculator_kwargs`, whose ``OWN_GPAW_KEYS`` names the same).
OWN_GPAW_SETTING_KEYS = frozenset(
    {"ecut_eV", "dedecut", "kpt_density_per_A", "kpt_density_insulator_per_A", "insulator_min_gap_eV", "smearing_eV"}
)
#: Keywords of the GPAW calculator (``gpaw.GPAW``, i.e. ``gpaw.dft.GPAW`` in GPAW 26.7) that a
#: ``gpaw`` section may set; every other key would fail in the GPAW job (TypeError). Spelled out
#: here because importing GPAW costs two seconds at every Snakemake start; a unit test holds
#: the list equal to the installed GPAW's keyword arguments (less ``communicator`` and
#: ``object_hooks``, which take Python objects, not config values).
GPAW_KEYWORDS = frozenset(
    {
        "background_charge", "basis", "charge", "convergence", "eigensolver", "experimental", "extensions",
        "external", "gpts", "h", "hund", "interpolation", "kpts", "legacy_gpaw", "magmoms", "maxiter", "mixer",
        "mode", "nbands", "occupations", "parallel", "poissonsolver", "random", "setups", "soc", "spinpol",
        "symmetry", "txt", "xc",
    }
)

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


@dataclass(frozen=True)
class ValueRule:
    """What one setting of a preset section must be: a number (or whole number) in a range, or a boolean."""

    kind: str
    minimum: float | None = None
    #: True: strictly above ``minimum``; False: at least ``minimum``.
    above: bool = False
    nullable: bool = False
    meaning: str = ""

    def describe(self) -> str:
        """The rule in words, e.g. ``a number above 0 (the plane-wave cutoff in eV)``."""
        if self.kind == "boolean":
            text = "true or false"
        else:
            text = "a whole number" if self.kind == "integer" else "a number"
            if self.minimum is not None:
                text += f" {'above' if self.above else 'of at least'} {self.minimum:g}"
        text += " or null" if self.nullable else ""
        return f"{text} ({self.meaning})" if self.meaning else text


#: The settings of the merged sections whose values are checked at start-up
#: (:func:`check_setting_values`); the bounds of ``relax`` and ``properties`` are
#: the config schema's, those of ``gpaw`` (an open section there) are set here.
VALUE_RULES: dict[tuple[str, str], ValueRule] = {
    ("gpaw", "ecut_eV"): ValueRule("number", 0, above=True, meaning="the plane-wave cutoff in eV"),
    ("gpaw", "kpt_density_per_A"): ValueRule("number", 0, above=True, meaning="k-points per Å⁻¹"),
    ("gpaw", "kpt_density_insulator_per_A"): ValueRule(
        "number", 0, above=True, nullable=True, meaning="k-points per Å⁻¹ of a relaxation with a gap; null: none"),
    ("gpaw", "insulator_min_gap_eV"): ValueRule(
        "number", 0, above=True, nullable=True, meaning="the start gap in eV above which that mesh is used"),
    ("gpaw", "smearing_eV"): ValueRule("number", 0, meaning="the Fermi-Dirac width in eV; 0: no smearing"),
    ("gpaw", "maxiter"): ValueRule("integer", 1, meaning="most SCF iterations"),
    ("gpaw", "h"): ValueRule("number", 0, above=True, nullable=True, meaning="the grid spacing in Å"),
    ("relax", "fmax_eV_per_A"): ValueRule("number", 0, meaning="the force criterion in eV/Å"),
    ("relax", "stress_threshold_GPa"): ValueRule("number", 0, nullable=True, meaning="the stress criterion in GPa"),
    ("relax", "max_steps"): ValueRule("integer", 0, meaning="most ionic steps"),
    ("relax", "symprec"): ValueRule("number", 0, above=True, meaning="the symmetry tolerance in Å"),
    ("relax", "fix_symmetry"): ValueRule("boolean"),
    ("relax", "relax_cell"): ValueRule("boolean"),
    ("properties", "kpt_density_per_A"): ValueRule(
        "number", 0, nullable=True, meaning="k-points per Å⁻¹; null or 0: the relaxation's"),
    ("properties", "band_path_npoints"): ValueRule("integer", 0, meaning="points on the band path"),
    ("properties", "gllbsc"): ValueRule("boolean"),
    ("properties", "keep_restart_file"): ValueRule("boolean"),
}
#: SCF criteria of ``gpaw.convergence`` that must be positive when given (null: GPAW's default).
CONVERGENCE_RULE = ValueRule("number", 0, above=True, nullable=True, meaning="an SCF convergence criterion")


def breaks_rule(rule: ValueRule, value: Any) -> bool:
    """True when ``value`` breaks ``rule`` (booleans are not numbers; NaN and infinity are refused)."""
    if value is None:
        return not rule.nullable
    if rule.kind == "boolean":
        return not isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if (rule.kind == "integer" and not isinstance(value, int)) or not math.isfinite(value):
        return True
    if rule.minimum is None:
        return False
    return value <= rule.minimum if rule.above else value < rule.minimum


def _refuse(path: str, rule: ValueRule, value: Any) -> None:
    """Raise the one-sentence ValueError for the setting at ``path`` when ``value`` breaks ``rule``."""
    if breaks_rule(rule, value):
        raise ValueError(f"{path} must be {rule.describe()}, not {value!r}")


def check_setting_values(settings: Mapping[str, Any], origin: Callable[[str, str], str]) -> None:
    """Check the values of merged (or override) sections ``{"gpaw": ..., "relax": ..., "properties": ...}``.

    Args:
        settings: the sections; a missing key is not checked.
        origin: ``(section, key)`` -> where in the config the value was set (named in the error).

    Raises:
        ValueError: one sentence naming the setting, what it must be and the value found:
            a number that must be positive (or not negative), an integer, a boolean,
            ``gpaw.dedecut`` other than ``estimate``/``computed``/a number/null, ``gpaw.convergence``
            not a mapping of positive criteria, or an unknown optimizer.
    """
    for (section, key), rule in VALUE_RULES.items():
        values = settings.get(section)
        if isinstance(values, Mapping) and key in values:
            _refuse(origin(section, key), rule, values[key])
    gpaw = settings.get("gpaw") if isinstance(settings.get("gpaw"), Mapping) else {}
    dedecut = gpaw.get("dedecut")
    if dedecut not in (None, "estimate", "computed") and breaks_rule(ValueRule("number"), dedecut):
        raise ValueError(f"{origin('gpaw', 'dedecut')} must be 'estimate', 'computed', a number (dE/dEcut) "
                         f"or null, not {dedecut!r}")
    convergence = gpaw.get("convergence")
    if convergence is not None and not isinstance(convergence, Mapping):
        raise ValueError(f"{origin('gpaw', 'convergence')} must be a mapping such as {{energy: 1e-5}}, "
                         f"not {convergence!r}")
    for name in ("energy", "density", "eigenstates", "forces"):
        if convergence and name in convergence:
            _refuse(f"{origin('gpaw', 'convergence')}.{name}", CONVERGENCE_RULE, convergence[name])
    relax = settings.get("relax") if isinstance(settings.get("relax"), Mapping) else {}
    if "optimizer" in relax and relax["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"{origin('relax', 'optimizer')} is '{relax['optimizer']}', not an optimizer dftscreen "
                         f"knows; choose one of {', '.join(OPTIMIZERS)}")


def check_gpaw_keys(gpaw: Mapping[str, Any], where: str) -> None:
    """Refuse a key of a ``gpaw`` section that is neither dftscreen's own nor a GPAW keyword.

    Raises:
        ValueError: naming the key and the closest known one (a misspelt GPAW keyword
            would otherwise reach the GPAW job and fail there, or be ignored).
    """
    known = OWN_GPAW_SETTING_KEYS | GPAW_KEYWORDS
    for key in gpaw or {}:
        if key not in known:
            raise ValueError(
                f"unknown key '{key}' in {where}{_did_you_mean(str(key), known)}: it is neither a GPAW keyword "
                f"nor one of dftscreen's own ({', '.join(sorted(OWN_GPAW_SETTING_KEYS))})"
            )


def _origin_in(layers: list[tuple[str, Mapping[str, Any]]], fallback: str) -> Callable[[str, str], str]:
    """``(section, key)`` -> the first layer (config path, sections) that sets the key, else ``fallback``."""

    def origin(section: str, key: str) -> str:
        for where, sections in layers:
            values = (sections or {}).get(section)
            if isinstance(values, Mapping) and key in values:
                return f"{where}.{section}.{key}"
        return f"{fallback} {section}.{key}"

    return origin


def check_dft_config(dft: Mapping[str, Any]) -> dict[str, Any]:
    """Check config section ``dft`` the way a run uses it; returns the run's resolved settings.

    Checks, in order: the keys of ``dft.overrides``, of every ``dft.presets`` entry, of every
    ``dft.structure_overrides`` entry and of every SCF ladder rung's ``gpaw`` (closed
    ``relax``/``properties`` vocabularies, GPAW keywords); then the values of the run's merged
    settings, of each rung's ``gpaw`` and of each structure's merged settings
    (:func:`check_setting_values`). The result is :func:`resolve_settings`' own.

    Raises:
        ValueError, KeyError: one sentence naming the setting and its place in the config.
    """
    preset, overrides, presets = dft.get("preset", "test"), dft.get("overrides") or {}, dft.get("presets") or {}
    structure_overrides, ladder = dft.get("structure_overrides") or {}, dft.get("scf_ladder")
    sections = [("dft.overrides", overrides), *((f"dft.presets.{name}", values) for name, values in presets.items()),
                *((f"dft.structure_overrides.{sid}", values) for sid, values in structure_overrides.items())]
    for where, values in sections:
        if not isinstance(values, Mapping):
            raise ValueError(f"{where} must be a mapping of sections (gpaw, relax, properties), not {values!r}")
        check_vocabulary(values, where)
        check_gpaw_keys(values.get("gpaw") or {}, f"{where}.gpaw")
    for index, rung in enumerate(ladder or []):
        if isinstance(rung, Mapping) and isinstance(rung.get("gpaw"), Mapping):
            check_gpaw_keys(rung["gpaw"], f"dft.scf_ladder[{index}].gpaw")
            check_setting_values({"gpaw": rung["gpaw"]}, _origin_in([(f"dft.scf_ladder[{index}]", rung)], ""))
    settings = resolve_settings(preset, overrides, presets, ladder)
    run_layers = [("dft.overrides", overrides), (f"dft.presets.{preset}", presets.get(preset) or {})]
    check_setting_values(settings, _origin_in(run_layers, f"dft.preset '{preset}'"))
    for sid, override in structure_overrides.items():
        layers = [(f"dft.structure_overrides.{sid}", override), *run_layers]
        check_setting_values(deep_merge(settings, override), _origin_in(layers, f"dft.preset '{preset}'"))
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
