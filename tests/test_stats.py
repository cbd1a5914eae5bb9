"""pushpull_lite.stats: the chapters' verdicts and table cells against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pushpull_lite import stats


def test_seed_difference_one_seed_and_clear_and_spread():
    assert stats.seed_difference([-1.25]) == "1.2 points lower"
    # three seeds, mean -2, sd 0.1: 95 % CI -2 +- 4.303 * 0.1 / sqrt(3) = -2.25 to -1.75 -> clear
    assert stats.seed_difference([-2.1, -2.0, -1.9]) == (
        "2.0 ± 0.1 points lower (95 % CI -2.2 to -1.8, paired t over 3 seeds: clear)"
    )
    # mean +0.83, sd 1.26: the interval (t, 2 degrees of freedom) covers 0
    assert stats.seed_difference([1.0, -0.5, 2.0]).endswith("paired t over 3 seeds: within noise)")
    # the old rule's "clear" needed all signs to agree and 2 sd / sqrt(n); t decides now: 3.05 +- 0.64
    assert stats.seed_difference(np.array([3.0, 3.1])).endswith("paired t over 2 seeds: clear)")
    assert stats.seed_difference(np.array([3.0, -1.0])).endswith("within noise)")
    with pytest.raises(ValueError, match="diff"):
        stats.seed_difference([])


def test_range_verdict_by_hand():
    # 50 % on 100 images: the 95 % Wilson interval is 40.4 to 59.6 %
    low, high = stats.proportion_ci(50, 100)
    assert (100 * low, 100 * high) == pytest.approx((40.38, 59.62), abs=0.01)
    assert stats.range_verdict(0.5, 100, 55, 70).startswith("within")
    assert stats.range_verdict(0.5, 100, 60, 70).startswith("**below**")
    assert stats.range_verdict(0.0, 40, 0, 5).startswith("within")  # honest at 0 %
    assert stats.range_verdict(0.9, 100, 60, 70).startswith("**above**")
    assert "not measurable" in stats.range_verdict(float("nan"), 10, 0, 1)


def test_shift_verdict_uses_k_standard_errors():
    assert stats.shift_verdict(2.9, 1.0) == "+2.9 ± 1.0: within noise of the clean shift"
    assert stats.shift_verdict(-3.1, 1.0) == "-3.1 ± 1.0: less than the clean shift predicts"
    assert stats.shift_verdict(2.1, 1.0, k=2).endswith("more than the clean shift predicts")


def test_percent_and_mean_sd_cells():
    assert stats.percent(0.5634) == "56.3"
    assert stats.percent(torch.tensor([True, False, False, True])) == "50.0"
    assert stats.mean_sd([56.0]) == "56.0"
    assert stats.mean_sd([0.5, 0.6, 0.7], scale=100) == "60.0 ± 10.0"
    with pytest.raises(ValueError, match="values"):
        stats.mean_sd([])


def test_percent_of_and_its_standard_error():
    mask = torch.tensor([True, True, False, False])
    assert stats.percent_of(mask) == 50.0
    assert stats.percent_se(mask) == pytest.approx(100 * math.sqrt(0.25 / 4))
    assert math.isnan(stats.percent_of(torch.zeros(0, dtype=torch.bool)))
    assert math.isnan(stats.percent_se(np.zeros(0, dtype=bool)))


# ---- issue 18's statistics, against scipy and hand-computed cases


def test_paired_seed_test_matches_scipy_ttest_rel_and_uses_the_t_quantile():
    from scipy import stats as sp

    a, b = [0.60, 0.70, 0.62], [0.55, 0.60, 0.61]
    t = stats.seed_test(a, b, paired=True)
    ref = sp.ttest_rel(a, b)
    assert t.p == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert t.ci == pytest.approx((ci.low, ci.high))
    d = np.subtract(a, b)
    # 3 seeds: the 97.5 % quantile of t with 2 degrees of freedom is 4.303, not 2
    assert t.ci[1] - t.difference == pytest.approx(4.303 * d.std(ddof=1) / math.sqrt(3), rel=1e-3)
    assert t.test == "paired t" and t.df == 2 and t.n == 3


def test_welch_seed_test_matches_scipy():
    from scipy import stats as sp

    a, b = [0.60, 0.70, 0.62, 0.66], [0.55, 0.60, 0.61]
    t = stats.seed_test(a, b, paired=False)
    ref = sp.ttest_ind(a, b, equal_var=False)
    assert t.p == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert t.ci == pytest.approx((ci.low, ci.high))
    assert t.test == "Welch t"


def test_seed_test_says_within_noise_whenever_the_interval_covers_zero():
    wide = stats.seed_test([0.1, 0.5, 0.3], [0.2, 0.2, 0.2], paired=True)
    assert wide.ci[0] < 0 < wide.ci[1] and wide.outcome() == "within noise"
    assert stats.seed_test([0.9, 0.91, 0.92], [0.1, 0.1, 0.11], paired=True).outcome() == "A higher"
    assert "within noise" in wide.describe()
    with pytest.raises(ValueError, match="two or more seeds"):
        stats.seed_test([0.5], [0.4], paired=True)


def test_mcnemar_by_hand():
    from scipy.stats import binomtest

    a = np.array([True] * 30 + [False] * 10 + [True] * 50 + [False] * 10)
    b = np.array([False] * 30 + [True] * 10 + [True] * 50 + [False] * 10)
    t = stats.mcnemar(a, b)
    assert t.difference == pytest.approx(0.2)  # 30 images only A gets right, 10 only B
    assert t.p == pytest.approx(binomtest(30, 40, 0.5).pvalue)
    se = math.sqrt(40 - 20**2 / 100) / 100
    assert t.ci == pytest.approx((0.2 - 1.959964 * se, 0.2 + 1.959964 * se), rel=1e-5)
    same = stats.mcnemar(a, a)
    assert same.ci == (0.0, 0.0) and same.p == 1.0 and same.outcome() == "within noise"


def test_proportion_ci_is_honest_at_0_and_100_percent():
    from scipy.stats import binomtest

    low, high = stats.proportion_ci(0, 50)
    assert low == 0.0 and high > 0.05  # the binomial SE would say 0 +- 0
    assert stats.proportion_ci(50, 50)[1] == 1.0 and stats.proportion_ci(50, 50)[0] < 0.95
    ref = binomtest(7, 20).proportion_ci(method="exact")
    assert stats.proportion_ci(7, 20, method="exact") == pytest.approx((ref.low, ref.high))
    with pytest.raises(ValueError):
        stats.proportion_ci(3, 2)


def test_clustered_se_counts_shared_images_once():
    rng = np.random.default_rng(0)
    per_image = rng.random(200) < 0.3  # one outcome per image ...
    values = np.tile(per_image, 95).astype(float)  # ... repeated in 95 sets that share the images
    clusters = np.tile(np.arange(200), 95)
    mean, se = stats.clustered_mean_se(values, clusters)
    naive = values.std() / math.sqrt(len(values))
    assert mean == pytest.approx(per_image.mean())
    assert se == pytest.approx(per_image.std() / math.sqrt(200))  # the SE over 200 images ...
    assert se == pytest.approx(naive * math.sqrt(95))  # ... sqrt(95) larger than treating sets as independent


def test_clustered_difference_uses_the_clustered_se_and_the_normal_quantile():
    values = np.tile([1.0, 0.0, 1.0, 1.0], 5)
    clusters = np.tile(np.arange(4), 5)
    t = stats.clustered_difference(values, clusters)
    mean, se = stats.clustered_mean_se(values, clusters)
    assert t.difference == mean and t.se == se and t.n == 4
    assert t.ci == pytest.approx((mean - 1.959964 * se, mean + 1.959964 * se), rel=1e-6)


def test_detectable_difference_by_hand():
    # normal quantiles: 1.959964 (97.5 %) + 0.841621 (80 %) = 2.801585
    assert stats.detectable_difference(1.0) == pytest.approx(2.80158, abs=1e-5)
    assert stats.detectable_difference(0.01, df=float("inf")) == pytest.approx(0.0280158, abs=1e-7)
    # Student's t with 2 degrees of freedom (three seeds): 4.302653 + 1.060660 = 5.363313
    from scipy.stats import t

    assert t.ppf(0.975, 2) + t.ppf(0.8, 2) == pytest.approx(5.363313, abs=1e-6)
    assert stats.detectable_difference(0.5, df=2) == pytest.approx(0.5 * 5.363313, abs=1e-6)
    # 90 % confidence, 50 % power: only the 95 % normal quantile 1.645 remains
    assert stats.detectable_difference(1.0, confidence=0.9, power=0.5) == pytest.approx(1.644854, abs=1e-6)


def test_detectable_difference_is_proportional_to_se_and_falls_with_df():
    ses = [0.0, 0.001, 0.01, 0.02, 0.1]
    values = [stats.detectable_difference(s) for s in ses]
    assert values[0] == 0 and values == sorted(values)
    assert values[3] == pytest.approx(2 * values[2])
    by_df = [stats.detectable_difference(1.0, df=d) for d in (1, 2, 5, 30, None)]
    assert by_df == sorted(by_df, reverse=True)  # fewer degrees of freedom: a larger difference needed
    assert stats.detectable_difference(1.0, power=0.9) > stats.detectable_difference(1.0, power=0.8)
    assert stats.detectable_difference(1.0, confidence=0.99) > stats.detectable_difference(1.0)
    for bad in ({"se": -1.0}, {"se": float("nan")}, {"se": 1.0, "df": 0}, {"se": 1.0, "power": 1.0}):
        with pytest.raises(ValueError):
            stats.detectable_difference(**bad)
