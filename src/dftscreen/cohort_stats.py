"""Intervals and tests for comparing cohorts of generated structures (issue 30).

Pure functions, no I/O: a rate with its Wilson interval, the difference and ratio of two
rates with Fisher's exact p, Holm's adjustment over several comparisons, the
Cochran-Armitage trend test over an ordered factor, the power of the current sample
sizes, and rates from an ML-screen audit (Horvitz-Thompson weights).

Every statistical test and interval comes from statsmodels or scipy; the only
arithmetic written out here is the Horvitz-Thompson estimator (statsmodels has none),
the exact factor between statsmodels' linear-by-linear statistic and Cochran-Armitage's,
and the inverse of Cohen's arcsine effect size. statsmodels and scipy.stats take about
1.5 s to import (they are imported together, measured on this machine), so they are
imported inside the functions that use them: importing this module costs numpy only.

Rates are ``count / n`` with ``n`` every input of the cohort; a cohort of 0 structures
has no rate (None) and the uninformative interval (0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

ALPHA = 0.05
POWER = 0.8


def wilson_interval(count: float, n: float, alpha: float = ALPHA) -> tuple[float, float]:
    """Return the (low, high) Wilson score interval of the rate ``count / n``.

    statsmodels' ``proportion_confint(method="wilson")``. A cohort of 0 structures still
    gets a row: n == 0 returns (0.0, 1.0), the interval that says nothing is known.
    """
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return 0.0, 1.0
    low, high = proportion_confint(count, n, alpha=alpha, method="wilson")
    return float(low), float(high)


def wilson_intervals(
    counts: np.ndarray, ns: np.ndarray, alpha: float = ALPHA
) -> tuple[np.ndarray, np.ndarray]:
    """Return (low, high) arrays of Wilson intervals, element by element, with no Python loop.

    Vectorised :func:`wilson_interval` (statsmodels' ``proportion_confint`` takes arrays);
    elements with n == 0 get (0.0, 1.0).
    """
    from statsmodels.stats.proportion import proportion_confint

    counts = np.asarray(counts, dtype=float)
    ns = np.asarray(ns, dtype=float)
    empty = ns == 0
    low, high = proportion_confint(counts, np.where(empty, 1.0, ns), alpha=alpha, method="wilson")
    return np.where(empty, 0.0, low), np.where(empty, 1.0, high)


def rate_row(count: int, n: int, alpha: float = ALPHA) -> dict[str, float | int | None]:
    """Return ``{"count", "n", "rate", "low", "high"}`` for one rate of one cohort.

    ``rate`` is None when n == 0 (and the interval is then (0, 1), see :func:`wilson_interval`).
    """
    low, high = wilson_interval(count, n, alpha)
    return {"count": int(count), "n": int(n), "rate": count / n if n else None, "low": low, "high": high}


@dataclass(frozen=True)
class RateDifference:
    """Cohort a against cohort b (the baseline); every interval at the same alpha.

    ``difference`` is rate a minus rate b with Newcombe's hybrid score interval
    (``low``, ``high``); ``ratio`` is rate a / rate b with the adjusted-log interval
    (``ratio_low``, ``ratio_high``); ``fisher_p`` is Fisher's exact two-sided p.
    """

    difference: float | None
    low: float
    high: float
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    fisher_p: float


def rate_difference(
    count_a: int, n_a: int, count_b: int, n_b: int, alpha: float = ALPHA
) -> RateDifference:
    """Return the :class:`RateDifference` of rate a = count_a / n_a against rate b.

    - difference: statsmodels ``confint_proportions_2indep(method="newcomb", compare="diff")``,
      Newcombe's hybrid score interval (method 10 of Newcombe 1998, Stat. Med. 17:873), built
      from the two Wilson intervals. An empty cohort has no difference (None) and the
      interval (-1, 1).
    - ratio: ``compare="ratio", method="log-adjusted"`` (statsmodels' default for a ratio:
      the log-scale Wald interval after adding 0.5 to each count and each n, so that a
      count of 0 in cohort a still has an interval). None when rate b is 0 (or either
      cohort is empty); the interval is None also when both rates are 1, where that
      method's variance is 0 and it would print the false certainty (1, 1).
    - fisher_p: scipy ``fisher_exact`` on [[count_a, n_a - count_a], [count_b, n_b - count_b]],
      two-sided (scipy gives 1.0 when a cohort is empty).
    """
    from scipy.stats import fisher_exact
    from statsmodels.stats.proportion import confint_proportions_2indep

    fisher_p = float(fisher_exact([[count_a, n_a - count_a], [count_b, n_b - count_b]]).pvalue)
    if n_a == 0 or n_b == 0:
        return RateDifference(None, -1.0, 1.0, None, None, None, fisher_p)
    low, high = confint_proportions_2indep(
        count_a, n_a, count_b, n_b, method="newcomb", compare="diff", alpha=alpha
    )
    ratio = ratio_low = ratio_high = None
    if count_b > 0:
        ratio = (count_a / n_a) / (count_b / n_b)
        if not (count_a == n_a and count_b == n_b):
            ratio_low, ratio_high = (
                float(x)
                for x in confint_proportions_2indep(
                    count_a, n_a, count_b, n_b, method="log-adjusted", compare="ratio", alpha=alpha
                )
            )
    difference = count_a / n_a - count_b / n_b
    return RateDifference(difference, float(low), float(high), ratio, ratio_low, ratio_high, fisher_p)


def holm_adjust(p_values: Sequence[float | None]) -> list[float]:
    """Return Holm's step-down adjusted p-values, in the order given.

    statsmodels ``multipletests(method="holm")`` over the family of the finite p-values;
    a None or NaN entry (a comparison that could not be made) stays NaN and does not count
    in the family. An empty list returns [].
    """
    from statsmodels.stats.multitest import multipletests

    values = np.array([np.nan if p is None else p for p in p_values], dtype=float)
    adjusted = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    if finite.any():
        adjusted[finite] = multipletests(values[finite], method="holm")[1]
    return adjusted.tolist()


def trend_test(
    counts: Sequence[int], totals: Sequence[int], scores: Sequence[float]
) -> tuple[float, float]:
    """Return the Cochran-Armitage trend test (z, two-sided p) of counts / totals over scores.

    z > 0: the rate rises with the score. statsmodels offers the linear-by-linear association
    test (``Table.test_ordinal_association``; its docstring calls it Cochran-Armitage with
    the default scores), whose null variance is the exact permutation variance with divisor
    N - 1 (z_LL**2 = M**2 = (N - 1) r**2, Agresti 2002 sec. 3.4). Cochran-Armitage's
    variance is the binomial one, p(1 - p) sum n_i (s_i - s_bar)**2, smaller by exactly
    (N - 1) / N, so z_CA = z_LL * sqrt(N / (N - 1)) (as SAS PROC FREQ TREND, R's
    ``prop.trend.test`` and DescTools' ``CochranArmitageTest`` report it); p is the normal
    two-sided p of z_CA (scipy). The table is passed with ``shift_zeros=False``: statsmodels
    otherwise adds 0.5 to every cell of a table with an empty cell. Returns (nan, nan) when
    the test is undefined: no success or no failure at all, or one score among the
    non-empty groups.
    """
    from scipy.stats import norm
    from statsmodels.stats.contingency_tables import Table

    counts_a = np.asarray(counts, dtype=float)
    totals_a = np.asarray(totals, dtype=float)
    scores_a = np.asarray(scores, dtype=float)
    if not len(counts_a) == len(totals_a) == len(scores_a):
        raise ValueError("counts, totals and scores must have the same length")
    n_total, successes = totals_a.sum(), counts_a.sum()
    if successes in (0, n_total) or np.ptp(scores_a[totals_a > 0]) == 0:
        return math.nan, math.nan
    table = Table(np.column_stack([counts_a, totals_a - counts_a]), shift_zeros=False)
    linear = table.test_ordinal_association(row_scores=scores_a, col_scores=np.array([1.0, 0.0]))
    z = float(linear.zscore) * math.sqrt(n_total / (n_total - 1))
    return z, float(2 * norm.sf(abs(z)))


def detectable_difference(
    n_a: int,
    n_b: int,
    base_rate: float,
    alpha: float = ALPHA,
    power: float = POWER,
    direction: Literal["up", "down"] = "up",
) -> float | None:
    """Return the smallest |rate a - base_rate| that n_a against n_b structures detect.

    Two-sided test at ``alpha`` with ``power``, by statsmodels' ``NormalIndPower`` on
    Cohen's arcsine effect size h = 2 asin(sqrt(p_a)) - 2 asin(sqrt(p_b)) (what
    ``proportion_effectsize`` computes); the h it solves for is turned back into a rate by
    inverting that definition. ``direction`` "up" asks how much better than the baseline
    cohort a must be, "down" how much worse. None when a cohort is empty or no rate in
    [0, 1] is that far from base_rate in that direction.
    """
    h = detectable_effect_size(n_a, n_b, alpha, power)
    return None if h is None else difference_at_effect_size(base_rate, h, direction)


def detectable_effect_size(n_a: int, n_b: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Return the smallest Cohen's h that n_a against n_b structures detect (None if a cohort is empty).

    The half of :func:`detectable_difference` that depends on the sample sizes only (statsmodels'
    ``NormalIndPower.solve_power``), so that a table of many rates of the same cohorts solves it
    once per pair of cohorts.
    """
    from statsmodels.stats.power import NormalIndPower

    if n_a <= 0 or n_b <= 0:
        return None
    return float(NormalIndPower().solve_power(effect_size=None, nobs1=n_a, alpha=alpha, power=power, ratio=n_b / n_a))


def difference_at_effect_size(
    base_rate: float, h: float, direction: Literal["up", "down"] = "up"
) -> float | None:
    """Return |p - base_rate| for the rate p at Cohen's h from base_rate in ``direction``.

    The inverse of h = 2 asin(sqrt(p)) - 2 asin(sqrt(base_rate)); None when no rate in [0, 1]
    is that far from base_rate in that direction.
    """
    angle = math.asin(math.sqrt(base_rate)) + (h / 2 if direction == "up" else -h / 2)
    if not 0 <= angle <= math.pi / 2:
        return None
    return abs(math.sin(angle) ** 2 - base_rate)


def sample_size_to_resolve(
    rate_a: float, rate_b: float, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Return the structures per cohort (equal cohorts, rounded up) that resolve rate_a from rate_b.

    Two-sided test at ``alpha`` with ``power``: statsmodels' ``NormalIndPower`` on Cohen's h
    from ``proportion_effectsize`` (arcsine), solved by :func:`sample_sizes_to_resolve`
    (``solve_power`` fails to converge for the largest effects, 0 against 1). None when the
    rates are equal (no finite sample resolves a difference of 0).
    """
    n = sample_sizes_to_resolve(np.array([rate_a]), np.array([rate_b]), alpha, power)[0]
    return None if np.isnan(n) else int(n)


def sample_sizes_to_resolve(
    rates_a: np.ndarray, rates_b: np.ndarray, alpha: float = ALPHA, power: float = POWER
) -> np.ndarray:
    """Vectorised :func:`sample_size_to_resolve`: an array of structures per cohort, NaN where the rates are equal.

    statsmodels' ``NormalIndPower.power`` (which takes arrays) on Cohen's h from
    ``proportion_effectsize``, its root in n found for every element at once by bisection on
    log n (64 halvings of [1e-3, 1e16]: below a part in 1e15), where ``solve_power`` runs
    scipy's root finder once per element (about 7 ms each). Rounded up as the scalar function
    does; NaN also where the n needed exceeds 1e16.
    """
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    h = np.abs(np.asarray(proportion_effectsize(np.asarray(rates_a, float), np.asarray(rates_b, float)), float))
    h = np.atleast_1d(h)
    result = np.full(h.shape, np.nan)
    solvable = h > 0
    if not solvable.any():
        return result
    effect = h[solvable]
    model = NormalIndPower()
    low, high = np.full(effect.shape, math.log(1e-3)), np.full(effect.shape, math.log(1e16))
    for _ in range(64):
        middle = (low + high) / 2
        enough = model.power(effect, nobs1=np.exp(middle), alpha=alpha, ratio=1.0) >= power
        high, low = np.where(enough, middle, high), np.where(enough, low, middle)
    n = np.exp(high)
    reached = model.power(effect, nobs1=n, alpha=alpha, ratio=1.0) >= power - 1e-12
    result[solvable] = np.where(reached & (n < 1e16), np.ceil(n - 1e-9 * n), np.nan)
    return result


@dataclass(frozen=True)
class WeightedRate:
    """A rate estimated from a sample drawn with known inclusion probabilities.

    ``rate`` (None with no units), its ``standard_error``, the interval (``low``, ``high``),
    the ``effective_n`` the interval uses and the ``population_size`` the weights stand for.
    """

    rate: float | None
    standard_error: float | None
    low: float
    high: float
    effective_n: float
    population_size: float


def weighted_rate(
    successes: np.ndarray, inclusion_probability: np.ndarray, alpha: float = ALPHA
) -> WeightedRate:
    """Return the :class:`WeightedRate` of the sampled units' successes, weighted by 1 / pi.

    One entry per unit whose outcome is known (e.g. went to DFT); pi_i is the probability it
    was sampled (1 for structures the ML screen kept, the audit fraction f for screened-out
    ones). Estimator (Horvitz & Thompson 1952, J. Am. Stat. Assoc. 47:663; in the ratio
    (Hajek) form of Sarndal, Swensson & Wretman 1992, Model Assisted Survey Sampling):
    with w_i = 1 / pi_i, N_hat = sum w_i and p_hat = sum w_i y_i / N_hat, equal to the
    Horvitz-Thompson N**-1 sum y_i / pi_i when each stratum's pi is its sampled fraction.
    Variance: the Taylor-linearised (with-replacement) estimator
    v = sum w_i**2 (y_i - p_hat)**2 / N_hat**2. It has no finite-population correction, so
    it measures the generator's rate, not only this population's: with every pi_i = 1 it is
    p_hat (1 - p_hat) / n, the binomial variance of an unweighted rate. Interval: statsmodels'
    Wilson interval at Kish's effective sample size n_eff = p_hat (1 - p_hat) / v (so that
    unweighted rates get exactly their plain Wilson interval); where v is 0 (all outcomes
    equal) n_eff is Kish's weight-only (sum w)**2 / sum w**2.
    """
    y = np.asarray(successes, dtype=float)
    pi = np.asarray(inclusion_probability, dtype=float)
    if y.shape != pi.shape:
        raise ValueError("successes and inclusion_probability must have the same length")
    if np.any((pi <= 0) | (pi > 1)):
        raise ValueError("inclusion probabilities must be in (0, 1]")
    if y.size == 0:
        return WeightedRate(None, None, 0.0, 1.0, 0.0, 0.0)
    w = 1.0 / pi
    population = float(w.sum())
    rate = float((w * y).sum() / population)
    variance = float((w**2 * (y - rate) ** 2).sum() / population**2)
    effective_n = rate * (1 - rate) / variance if variance > 0 else population**2 / float((w**2).sum())
    low, high = wilson_interval(rate * effective_n, effective_n, alpha)
    return WeightedRate(rate, math.sqrt(variance), low, high, effective_n, population)


def screen_false_negative_rate(
    audited_stable: int, audited: int, alpha: float = ALPHA
) -> dict[str, float | int | None]:
    """Return the :func:`rate_row` of the ML screen's misses among its audited rejects.

    ``audited``: screened-out structures that the audit sent to DFT anyway;
    ``audited_stable``: those DFT found stable. The rate is the share of the structures the
    screen discards that DFT finds stable (false negatives over all negatives, also called
    the false-omission rate), with its Wilson interval. It is not the share of all stable
    structures that the screen discards, which needs the kept structures' outcomes too.
    """
    return rate_row(audited_stable, audited, alpha)
