"""pushpull_lite.stats: the chapters' verdicts and table cells against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pushpull_lite import stats


def test_seed_difference_one_seed_and_clear_and_spread():
    assert stats.seed_difference([-1.25]) == "1.2 points lower"
    # three seeds, all negative, mean -2 with sd 0.1: 2 / (0.1 / sqrt 3) >> 2 -> clear
    assert stats.seed_difference([-2.1, -2.0, -1.9]) == "2.0 ± 0.1 points lower (clear)"
    # signs disagree -> never clear
    assert stats.seed_difference([1.0, -0.5, 2.0]).endswith("higher (within the spread across seeds)")
    # two seeds cannot be clear
    assert "within the spread" in stats.seed_difference(np.array([3.0, 3.1]))
    with pytest.raises(ValueError, match="diff"):
        stats.seed_difference([])


def test_range_verdict_by_hand():
    # 50 % on 100 images: SE 5 points; two SE reach 60 -> within 60-70; below 65-75 needs 50 + 10 < 65
    assert stats.range_verdict(0.5, 100, 60, 70).startswith("within")
    assert stats.range_verdict(0.5, 100, 65, 75).startswith("**below**")
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
