"""bench.reporting.stats against values known in closed form or computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.reporting import stats


@pytest.mark.parametrize("t", [-30.0, -2.5, -0.3, 0.0, 0.7, 4.0, 100.0])
def test_t_cdf_matches_the_closed_forms_for_one_and_two_degrees_of_freedom(t):
    assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-13)  # Cauchy
    assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-13)


@pytest.mark.parametrize("df, expected", [
    (1, 12.706204736174703), (2, 4.302652729749464), (3, 3.182446305284263),
    (4, 2.776445105197793), (9, 2.262157162798205), (30, 2.042272456301238),
    # large df: the normal quantile z plus the first term of its expansion, (z^3 + z) / (4 df)
    (1e7, 1.959963984540054 + (1.959963984540054 ** 3 + 1.959963984540054) / 4e7)])
def test_t_quantile_matches_the_tables(df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, rel=1e-9)
    assert stats.t_quantile(0.025, df) == pytest.approx(-expected, rel=1e-9)
    assert stats.t_cdf(stats.t_quantile(0.9, df), df) == pytest.approx(0.9, abs=1e-9)


def test_seed_interval_by_hand():
    # mean 62, sample std 2, n 3: 62 +- t(0.975, 2) * 2 / sqrt(3)
    interval = stats.seed_interval([60.0, 64.0, 62.0])
    half = 4.302652729749464 * 2 / math.sqrt(3)
    assert (interval.low, interval.high) == pytest.approx((62 - half, 62 + half), abs=1e-9)
    assert stats.seed_interval([61.0]) is None
    assert stats.seed_interval([50.0, 50.0]) == stats.Interval(50.0, 50.0)


def test_resampling_draws_each_video_set_once_per_replicate_and_is_fixed_by_the_seed():
    chunks = list(stats.resample_counts(7, 10, seed=3))
    counts = np.concatenate(chunks)
    assert counts.shape == (10, 7) and (counts.sum(axis=1) == 7).all()
    again = np.concatenate(list(stats.resample_counts(7, 10, seed=3)))
    assert (counts == again).all()
    assert not (counts == np.concatenate(list(stats.resample_counts(7, 10, seed=4)))).all()


def test_all_right_or_all_wrong_has_a_degenerate_video_interval():
    right = np.ones((2, 50), dtype=bool)
    assert stats.video_interval(stats.resampled_hits(right, 200), 50) == stats.Interval(100.0, 100.0)
    assert stats.video_interval(stats.resampled_hits(~right, 200), 50) == stats.Interval(0.0, 0.0)


def test_video_interval_has_the_binomial_width():
    # 2000 videos, 30% right: the 95% interval is about +- 1.96 * sqrt(0.3 * 0.7 / 2000) = +- 2.0 points
    correct = (np.arange(2000) % 10 < 3)[None, :]
    interval = stats.video_interval(stats.resampled_hits(correct, 4000), 2000)
    half = 100 * 1.959964 * math.sqrt(0.3 * 0.7 / 2000)
    assert interval.low == pytest.approx(30 - half, abs=0.25) and interval.high == pytest.approx(30 + half, abs=0.25)


def test_a_difference_of_exactly_known_size_is_found():
    rng = np.random.default_rng(0)
    videos, seeds = 400, 3
    reference = rng.random((seeds, videos)) < 0.6
    better = reference.copy()
    for s in range(seeds):  # exactly 20 more videos right in every seed: +5.00 points
        better[s, np.flatnonzero(~reference[s])[:20]] = True
    result = stats.paired_difference(better, reference)
    assert result.difference == pytest.approx(5.0, abs=1e-12)
    assert result.interval.low > 0 and result.interval.low < 5.0 < result.interval.high
    assert result.distinguishable and result.p_value == pytest.approx(2 / (stats.BOOTSTRAP_REPLICATES + 1))
    assert (result.seeds, result.videos, result.replicates) == (3, 400, stats.BOOTSTRAP_REPLICATES)
    # the other way round: the same size, the other sign
    flipped = stats.paired_difference(reference, better)
    assert flipped.difference == pytest.approx(-5.0, abs=1e-12)
    assert flipped.interval.high < 0 and flipped.distinguishable


def test_identical_predictions_differ_by_zero_with_p_one():
    correct = np.random.default_rng(1).random((3, 300)) < 0.5
    result = stats.paired_difference(correct, correct.copy())
    assert result.difference == 0.0 and result.p_value == 1.0
    assert result.interval == stats.Interval(0.0, 0.0) and not result.distinguishable


def test_a_small_difference_on_few_videos_is_not_distinguishable():
    reference = np.zeros((2, 40), dtype=bool)
    reference[:, :20] = True
    better = reference.copy()
    better[:, 20] = True  # one video more of 40: +2.5 points, well inside the noise
    result = stats.paired_difference(better, reference)
    assert result.difference == pytest.approx(2.5)
    assert not result.distinguishable and result.interval.low <= 0 <= result.interval.high


def test_paired_arrays_must_line_up():
    with pytest.raises(ValueError, match="disagree in shape"):
        stats.paired_difference(np.ones((2, 10), dtype=bool), np.ones((3, 10), dtype=bool))
