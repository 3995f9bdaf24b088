"""dftscreen.cohort_stats against published values and values checkable by hand (issue 30)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from dftscreen.cohort_stats import (
    detectable_difference,
    detectable_effect_size,
    difference_at_effect_size,
    holm_adjust,
    rate_difference,
    rate_row,
    sample_size_to_resolve,
    sample_sizes_to_resolve,
    screen_false_negative_rate,
    trend_test,
    weighted_rate,
    wilson_interval,
    wilson_intervals,
)

# Wilson intervals ----------------------------------------------------------------------


def test_wilson_5_of_50_is_the_issues_interval():
    """Issue 30: "with 50 DFT structures per arm a 10 % rate has a 95 % interval of about 4-21 %"."""
    low, high = wilson_interval(5, 50)
    assert (round(low, 3), round(high, 3)) == (0.043, 0.214)


@pytest.mark.parametrize(
    ("count", "n", "published"),
    [(81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)), (0, 20, (0.0, 0.1611)), (1, 29, (0.0061, 0.1718))],
)
def test_wilson_matches_newcombe_1998_table_i(count, n, published):
    """Newcombe RG (1998), Two-sided confidence intervals for the single proportion: comparison of
    seven methods, Stat. Med. 17:857-872, Table I, method 3 (score interval without continuity correction)."""
    low, high = wilson_interval(count, n)
    assert (round(low, 4), round(high, 4)) == published


def test_an_empty_cohort_gets_a_row_with_the_uninformative_interval():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert rate_row(0, 0) == {"count": 0, "n": 0, "rate": None, "low": 0.0, "high": 1.0}
    row = rate_row(1, 1)
    assert row["rate"] == 1.0 and 0 < row["low"] < 1 and row["high"] == pytest.approx(1.0)


def test_wilson_intervals_equal_the_scalar_ones_and_handle_empty_cohorts():
    counts, ns = np.array([5, 0, 0, 81, 7]), np.array([50, 0, 20, 263, 7])
    low, high = wilson_intervals(counts, ns)
    expected = [wilson_interval(c, n) for c, n in zip(counts, ns)]
    np.testing.assert_allclose(np.column_stack([low, high]), np.array(expected), rtol=0, atol=1e-15)


def test_wilson_intervals_of_100000_rates_take_well_under_a_second():
    """The issue's benchmark: statistics for 100,000 inputs in 50 cohorts in under 10 s; no loop per row."""
    rng = np.random.default_rng(0)
    ns = rng.integers(0, 2000, size=100_000)
    counts = rng.binomial(ns, 0.1)
    start = time.perf_counter()
    low, high = wilson_intervals(counts, ns)
    assert time.perf_counter() - start < 1.0
    assert np.all((0 <= low) & (low <= high) & (high <= 1))


# Two cohorts -----------------------------------------------------------------------------


def test_difference_interval_is_newcombes_method_10():
    """Newcombe RG (1998), Interval estimation for the difference between independent proportions:
    comparison of eleven methods, Stat. Med. 17:873-890, Table II, example 56/70 - 48/80:
    difference 0.2000, method 10 (hybrid score) interval 0.0524 to 0.3339."""
    result = rate_difference(56, 70, 48, 80)
    assert result.difference == pytest.approx(0.2)
    assert (round(result.low, 4), round(result.high, 4)) == (0.0524, 0.3339)


def test_ratio_interval_is_the_adjusted_log_interval():
    """By hand: 0.5 added to each count and n, Wald interval on the log scale."""
    result = rate_difference(56, 70, 48, 80)
    assert result.ratio == pytest.approx((56 / 70) / (48 / 80))
    log_ratio = math.log((56.5 / 70.5) / (48.5 / 80.5))
    half_width = 1.959963985 * math.sqrt(1 / 56.5 - 1 / 70.5 + 1 / 48.5 - 1 / 80.5)
    assert result.ratio_low == pytest.approx(math.exp(log_ratio - half_width), rel=1e-8)
    assert result.ratio_high == pytest.approx(math.exp(log_ratio + half_width), rel=1e-8)


def test_fisher_p_of_the_tea_tasting_table():
    """Fisher (1935), The Design of Experiments, ch. II: 3 of 4 cups right, table [[3, 1], [1, 3]];
    two-sided p = (1 + 16 + 16 + 1) / 70 = 0.4857."""
    assert rate_difference(3, 4, 1, 4).fisher_p == pytest.approx(34 / 70)


def test_rate_ratio_is_undefined_when_the_baseline_rate_is_zero():
    result = rate_difference(3, 10, 0, 10)
    assert result.ratio is None and result.ratio_low is None and result.ratio_high is None
    assert result.difference == pytest.approx(0.3) and result.low < 0.3 < result.high
    zero_over_rate = rate_difference(0, 10, 3, 10)
    assert zero_over_rate.ratio == 0.0 and 0 < zero_over_rate.ratio_low < 1 < zero_over_rate.ratio_high


def test_two_rates_of_one_have_ratio_one_and_no_false_certainty():
    result = rate_difference(50, 50, 50, 50)
    assert result.ratio == 1.0 and result.ratio_low is None and result.ratio_high is None
    assert result.low < 0 < result.high and result.fisher_p == 1.0


def test_an_empty_cohort_is_compared_without_error():
    result = rate_difference(0, 0, 3, 10)
    assert (result.difference, result.low, result.high, result.ratio, result.fisher_p) == (None, -1.0, 1.0, None, 1.0)


# Several comparisons -------------------------------------------------------------------


def test_holm_by_hand():
    """Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; made monotone: 0.06."""
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_holm_leaves_missing_p_values_out_of_the_family():
    adjusted = holm_adjust([0.01, None, float("nan"), 0.04])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[3] == pytest.approx(0.04)
    assert math.isnan(adjusted[1]) and math.isnan(adjusted[2])
    assert holm_adjust([]) == []


# Trend over an ordered factor ------------------------------------------------------------

MALFORMATION_PRESENT = [48, 38, 5, 1, 1]
MALFORMATION_TOTAL = [17066 + 48, 14464 + 38, 788 + 5, 126 + 1, 37 + 1]  # absent + present, N = 32,574


def test_trend_of_agresti_alcohol_and_malformation():
    """Agresti (2002), Categorical Data Analysis, 2nd ed., sec. 3.4, Table 3.7 (infant malformation
    by mother's alcohol consumption, from Graubard and Korn 1987): scores 0, 0.5, 1.5, 4.0, 7.0 give
    M**2 = 6.57, P = 0.01; equally spaced scores give M**2 = 1.83, P = 0.18. M**2 is (N - 1) r**2,
    the Cochran-Armitage z**2 times (N - 1) / N: equal to three figures at this N."""
    z, p = trend_test(MALFORMATION_PRESENT, MALFORMATION_TOTAL, [0, 0.5, 1.5, 4.0, 7.0])
    assert z > 0 and round(z**2, 2) == 6.57 and round(p, 2) == 0.01
    z, p = trend_test(MALFORMATION_PRESENT, MALFORMATION_TOTAL, [1, 2, 3, 4, 5])
    assert round(z**2, 2) == 1.83 and round(p, 2) == 0.18


def test_trend_is_cochran_armitage_not_the_permutation_statistic():
    """Small N tells the two apart. DescTools::CochranArmitageTest (binomial variance) on the dose table
    (50, 100, 200, 300, 500 mg; 13/149, 17/142, 16/120, 32/181, 9/54), printed in its documented output
    as Z = 2.2116, p = 0.02699 (https://www.cnblogs.com/ayueme/articles/16844680.html). The permutation
    form for the same table would be Z = 2.2099."""
    z, p = trend_test([13, 17, 16, 32, 9], [149, 142, 120, 181, 54], [50, 100, 200, 300, 500])
    assert round(z, 4) == 2.2116 and round(p, 5) == 0.02699


def test_trend_relates_exactly_to_statsmodels_linear_by_linear_statistic():
    """coin's independence_test on the lung-tumour data of Armitage & Colton (1998), Encyclopedia of
    Biostatistics, p. 4578, Table 2 (2/40, 7/50, 15/48 at doses 0, 1, 2) prints the permutation form
    T = 10.6381 (Hothorn, r-help, 2005); Cochran-Armitage's z**2 is T * N / (N - 1), N = 138."""
    z, _ = trend_test([2, 7, 15], [40, 50, 48], [0, 1, 2])
    assert z**2 * 137 / 138 == pytest.approx(10.6381, abs=1e-4)


def test_trend_sign_zero_cells_and_undefined_cases():
    rising, falling = trend_test([0, 2, 5], [10, 10, 10], [0, 1, 2]), trend_test([5, 2, 0], [10, 10, 10], [0, 1, 2])
    assert rising[0] == pytest.approx(-falling[0]) and rising[0] > 0 and rising[1] == pytest.approx(falling[1])
    # a zero cell does not shift the table (statsmodels' shift_zeros would add 0.5 to every cell)
    assert rising[0] == pytest.approx(trend_test([0, 2, 5, 0], [10, 10, 10, 0], [0, 1, 2, 3])[0])
    # no failure, no success, or one score: undefined
    for counts, scores in (([0, 0], [0, 1]), ([5, 5], [0, 1]), ([1, 3], [2, 2])):
        assert all(math.isnan(x) for x in trend_test(counts, [5, 5], scores))
    with pytest.raises(ValueError):
        trend_test([1, 2], [5, 5], [0, 1, 2])


# Power ------------------------------------------------------------------------------------


def test_sample_size_for_0_5_against_0_6_by_arcsine():
    """h = 2 asin(sqrt(0.6)) - 2 asin(sqrt(0.5)) = 0.20136; n = 2 (z_0.975 + z_0.8)**2 / h**2
    = 2 (1.95996 + 0.84162)**2 / 0.20136**2 = 387.2, so 388 per cohort (the normal approximation
    with unpooled variance gives 385 instead)."""
    assert sample_size_to_resolve(0.6, 0.5) == 388
    assert sample_size_to_resolve(0.5, 0.6) == 388
    assert sample_size_to_resolve(0.3, 0.3) is None


@pytest.mark.parametrize(("n", "base_rate"), [(50, 0.1), (200, 0.1), (1000, 0.5), (30, 0.02)])
def test_detectable_difference_and_sample_size_agree(n, base_rate):
    up = detectable_difference(n, n, base_rate)
    assert up is not None and 0 < up
    assert abs(sample_size_to_resolve(base_rate + up, base_rate) - n) <= 1
    down = detectable_difference(n, n, base_rate, direction="down")
    if down is not None:
        assert abs(sample_size_to_resolve(base_rate - down, base_rate) - n) <= 1


def test_sample_sizes_for_many_pairs_at_once_equal_statsmodels_solve_power():
    """The vectorised solver (bisection on statsmodels' power) against solve_power, pair by pair."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    rng = np.random.default_rng(3)
    rates_a, rates_b = rng.uniform(0.01, 0.99, 60), rng.uniform(0.01, 0.99, 60)
    many = sample_sizes_to_resolve(np.append(rates_a, 0.3), np.append(rates_b, 0.3))
    for a, b, n in zip(rates_a, rates_b, many):
        h = abs(float(proportion_effectsize(a, b)))
        solved = NormalIndPower().solve_power(effect_size=h, nobs1=None, alpha=0.05, power=0.8, ratio=1.0)
        assert n == math.ceil(float(solved)) == sample_size_to_resolve(a, b)
    assert math.isnan(many[-1])


def test_sample_size_for_the_largest_difference():
    """0 against 1 (h = pi): statsmodels' solve_power does not converge there; 2 per cohort resolve it."""
    assert sample_size_to_resolve(0.0, 1.0) == sample_size_to_resolve(1.0, 0.0) == 2


def test_detectable_difference_is_its_effect_size_turned_into_a_rate():
    h = detectable_effect_size(50, 80)
    assert detectable_difference(50, 80, 0.1) == difference_at_effect_size(0.1, h, "up")
    assert detectable_difference(50, 80, 0.1, direction="down") == difference_at_effect_size(0.1, h, "down")
    assert detectable_effect_size(0, 80) is None


def test_detectable_difference_edges():
    assert detectable_difference(0, 50, 0.1) is None
    assert detectable_difference(50, 50, 0.0, direction="down") is None
    assert detectable_difference(50, 50, 0.98) is None  # nothing within 1 is that far above
    unequal = detectable_difference(50, 200, 0.1)
    assert detectable_difference(200, 200, 0.1) < unequal < detectable_difference(50, 50, 0.1)


# Screen audit (Horvitz-Thompson) --------------------------------------------------------------


def test_weighted_rate_by_hand():
    """Kept (pi = 1): 1, 1, 0; audited rejects (pi = 1/4): 1, 0. Weights 1, 1, 1, 4, 4: N = 11,
    p = 6 / 11; v = (5**2 + 5**2 + 6**2 + 16 * 5**2 + 16 * 6**2) / 11**4 = 1062 / 14641;
    n_eff = p (1 - p) / v = 3630 / 1062."""
    result = weighted_rate(np.array([1, 1, 0, 1, 0], dtype=bool), np.array([1, 1, 1, 0.25, 0.25]))
    assert result.rate == pytest.approx(6 / 11)
    assert result.population_size == pytest.approx(11)
    assert result.standard_error == pytest.approx(math.sqrt(1062 / 14641))
    assert result.effective_n == pytest.approx(3630 / 1062)
    assert (result.low, result.high) == pytest.approx(wilson_interval(6 / 11 * 3630 / 1062, 3630 / 1062))


def test_weighted_rate_without_sampling_is_the_plain_rate_and_its_wilson_interval():
    y = np.array([True] * 5 + [False] * 45)
    result = weighted_rate(y, np.ones(50))
    assert result.rate == pytest.approx(0.1) and result.effective_n == pytest.approx(50)
    assert (result.low, result.high) == pytest.approx(wilson_interval(5, 50))
    none_stable = weighted_rate(np.zeros(50, dtype=bool), np.ones(50))
    assert none_stable.rate == 0 and (none_stable.low, none_stable.high) == pytest.approx(wilson_interval(0, 50))


def test_weighted_rate_recovers_the_true_rate_of_a_screened_population():
    """A generator with 20 % of structures kept by the screen (30 % stable) and 80 % screened out
    (2 % stable): the true rate is 0.2 * 0.3 + 0.8 * 0.02 = 0.076. Each run draws 400 + 1600 outcomes
    and audits a seeded 10 % of the rejects. The weighted estimate is unbiased and its interval covers
    0.076 in about 95 % of runs; the unweighted rate of the structures that reached DFT is about 0.22."""
    rng = np.random.default_rng(30)
    truth, runs = 0.076, 1000
    estimates, covered, naive = [], 0, []
    pi = np.concatenate([np.ones(400), np.full(160, 0.1)])
    for _ in range(runs):
        kept, rejected = rng.random(400) < 0.3, rng.random(1600) < 0.02
        y = np.concatenate([kept, rejected[rng.choice(1600, 160, replace=False)]])
        result = weighted_rate(y, pi)
        estimates.append(result.rate)
        covered += result.low <= truth <= result.high
        naive.append(y.mean())
    assert abs(np.mean(estimates) - truth) < 0.002  # 0.002 is about 6 standard errors of the mean
    assert 0.93 <= covered / runs <= 0.97
    assert np.mean(naive) == pytest.approx(0.22, abs=0.01)


def test_weighted_rate_input_checks():
    empty = weighted_rate(np.array([], dtype=bool), np.array([]))
    assert empty.rate is None and (empty.low, empty.high) == (0.0, 1.0)
    with pytest.raises(ValueError):
        weighted_rate(np.array([True]), np.array([0.0]))
    with pytest.raises(ValueError):
        weighted_rate(np.array([True, False]), np.array([1.0]))


def test_screen_false_negative_rate_is_a_wilson_rate():
    assert screen_false_negative_rate(5, 50) == rate_row(5, 50)
    assert screen_false_negative_rate(0, 0)["rate"] is None
