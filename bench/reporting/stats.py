"""The statistics behind the report's intervals and paired tests: pure functions on NumPy arrays.

Two sources of noise move a top-1 number: training (the seed) and the finite validation set (which
videos a copy happens to hold). Each gets its own interval:

- over seeds: the Student t interval of the mean of per-seed top-1 (``seed_interval``);
- over videos: a nonparametric bootstrap of the validation set, seeds pooled (``video_interval``).

A method is compared with a reference by a **paired bootstrap over videos and seeds**
(``paired_bootstrap``): every replicate draws the validation videos with replacement and the seeds
with replacement, the same draws for both methods, and recomputes the difference in top-1. Pairing by
video removes the shared difficulty of each video; pairing by seed is right because runs of one seed
share their sample order and augmentation draws in this suite. The p-value inverts the percentile
interval: twice the smaller tail of replicates on either side of zero, with the usual +1 correction
so that it is never 0.

Every random draw comes from a generator seeded with a fixed seed, so the same predictions always
give the same numbers (the tables are byte-stable). Accuracies are handled as integer hit counts
until the last division, so the bootstrap sums are exact whatever the summation order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

CONFIDENCE = 0.95


BOOTSTRAP_REPLICATES = 4000


BOOTSTRAP_SEED = 14  # fixed: the same predictions give the same intervals, run after run


_CHUNK_ELEMENTS = 4_000_000  # resampling counts held in memory at once (replicates x videos)


_EXACT_FLOAT32 = 2**24  # integers up to here are exact in float32


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes(self, value: float) -> bool:
        return not self.low <= value <= self.high


@dataclass(frozen=True)
class PairedDifference:
    """Top-1 of ``a`` minus top-1 of ``b`` in points, on the same videos and seeds."""

    difference: float
    interval: Interval
    p_value: float
    seeds: int
    videos: int
    replicates: int

    @property
    def distinguishable(self) -> bool:
        """Different at the 5% level (two-sided), by the bootstrap p-value."""
        return self.p_value < 1 - CONFIDENCE


# -- Student t ------------------------------------------------------------------------------------

def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the CDF of a Beta(a, b) variable at x."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side; use symmetry otherwise
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(q: float, df: float) -> float:
    """The t with P(T <= t) = q, by bisection on ``t_cdf`` (monotone, so bisection cannot miss)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < q:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        low, high = (middle, high) if t_cdf(middle, df) < q else (low, middle)
    return 0.5 * (low + high)


def seed_interval(values: Sequence[float], level: float = CONFIDENCE) -> Interval | None:
    """Student t interval of the mean over seeds; None for a single seed (no spread to go on)."""
    n = len(values)
    if n < 2:
        return None
    data = np.asarray(values, dtype=np.float64)
    half = t_quantile(0.5 + level / 2.0, n - 1) * data.std(ddof=1) / math.sqrt(n)
    mean = float(data.mean())
    return Interval(mean - half, mean + half)


# -- Bootstrap over videos ------------------------------------------------------------------------

def resample_counts(n_videos: int, replicates: int, seed: int = BOOTSTRAP_SEED) -> Iterator[np.ndarray]:
    """How often each video is drawn in each bootstrap replicate, in chunks of (replicates, videos).

    One replicate is ``n_videos`` draws with replacement. The chunks depend only on (n_videos,
    replicates, seed), so every method evaluated on one validation list sees the same replicates.
    """
    rng = np.random.default_rng([seed, n_videos])
    chunk = max(1, _CHUNK_ELEMENTS // max(n_videos, 1))
    for start in range(0, replicates, chunk):
        rows = min(chunk, replicates - start)
        draws = rng.integers(0, n_videos, size=(rows, n_videos))
        flat = (draws + n_videos * np.arange(rows)[:, None]).ravel()
        yield np.bincount(flat, minlength=rows * n_videos).reshape(rows, n_videos)


def resampled_hits(correct: np.ndarray, replicates: int = BOOTSTRAP_REPLICATES,
                   seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Hits of each row of ``correct`` (rows x videos, bool) in each bootstrap replicate: (rows, replicates).

    The same video draws serve every row, which is what pairs two methods (or two seeds) by video.
    Every partial sum of these 0/1-times-count products is an integer of at most the number of
    videos, which float32 holds exactly below 2**24: the sums are exact in any summation order.
    """
    correct = np.asarray(correct, dtype=np.float32)
    if correct.ndim != 2 or not 0 < correct.shape[1] < _EXACT_FLOAT32:
        raise ValueError(f"expected a (rows, videos) array with 1 to {_EXACT_FLOAT32 - 1} videos, "
                         f"got shape {correct.shape}")
    parts = [counts.astype(np.float32) @ correct.T for counts in resample_counts(correct.shape[1], replicates, seed)]
    return np.concatenate(parts).T.astype(np.int64)


def percentile_interval(samples: np.ndarray, level: float = CONFIDENCE) -> Interval:
    low, high = np.quantile(np.asarray(samples, dtype=np.float64), [0.5 - level / 2.0, 0.5 + level / 2.0])
    return Interval(float(low), float(high))


def video_interval(hits: np.ndarray, n_videos: int, level: float = CONFIDENCE) -> Interval:
    """Interval of top-1 (%) pooled over seeds, from ``resampled_hits`` of the seeds (seeds x replicates)."""
    pooled = 100.0 * np.asarray(hits).mean(axis=0) / n_videos
    return percentile_interval(pooled, level)


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, hits_a: np.ndarray, hits_b: np.ndarray,
                     seed: int = BOOTSTRAP_SEED, level: float = CONFIDENCE) -> PairedDifference:
    """Top-1 of a minus b (points): row s of every array is the same seed, columns the same videos.

    ``hits_*`` are the two methods' ``resampled_hits`` under the same video draws; here the seeds are
    drawn too (with replacement, the same seeds for both methods) in each replicate.
    """
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or hits_a.shape != hits_b.shape or hits_a.shape[0] != correct_a.shape[0]:
        raise ValueError(f"paired arrays disagree in shape: correct {correct_a.shape} vs {correct_b.shape}, "
                         f"hits {hits_a.shape} vs {hits_b.shape}")
    seeds, videos = correct_a.shape
    replicates = hits_a.shape[1]
    observed = 100.0 * (int(correct_a.sum()) - int(correct_b.sum())) / (seeds * videos)
    drawn = np.random.default_rng([seed, seeds, videos, 1]).integers(0, seeds, size=(replicates, seeds))
    gap = (hits_a - hits_b).T  # (replicates, seeds)
    replicated = 100.0 * np.take_along_axis(gap, drawn, axis=1).mean(axis=1) / videos
    below, above = int((replicated <= 0).sum()), int((replicated >= 0).sum())
    p_value = min(1.0, 2.0 * (min(below, above) + 1) / (replicates + 1))
    return PairedDifference(difference=observed, interval=percentile_interval(replicated, level),
                            p_value=p_value, seeds=seeds, videos=videos, replicates=replicates)


def paired_difference(correct_a: np.ndarray, correct_b: np.ndarray, replicates: int = BOOTSTRAP_REPLICATES,
                      seed: int = BOOTSTRAP_SEED) -> PairedDifference:
    """``paired_bootstrap`` from the per-video correctness alone (seeds x videos, row s = seed s in both)."""
    hits = resampled_hits(np.concatenate([correct_a, correct_b]), replicates, seed)
    seeds = np.asarray(correct_a).shape[0]
    return paired_bootstrap(correct_a, correct_b, hits[:seeds], hits[seeds:], seed)
