"""Composition validity as generative-model papers report it: SMACT charge neutrality.

``smact_valid`` is True when some combination of the elements' oxidation states (SMACT's
default set) makes the composition charge-neutral and the electronegativities are in
the order of those states (Pauling test); all-metal compositions count as valid alloys.
This is the check of CDVAE's evaluation, reused by DiffCSP, MatterGen and Chemeleon, so
rates can be set beside theirs. It is reported, not a DFT gate: intermetallics and
electrides fail it by design. SMACT reads only its bundled data files (no network).
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def smact_valid(reduced_formula: str) -> bool | None:
    """SMACT validity of a formula (see the module docstring); ``None`` when SMACT cannot judge it."""
    from smact.screening import smact_validity

    try:
        return bool(smact_validity(reduced_formula, use_pauling_test=True, include_alloys=True))
    except Exception:
        return None
