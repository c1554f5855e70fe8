"""Drift statistics from histograms and value counts: no raw samples needed.

Each function reproduces the definition Evidently 0.7 applies to raw samples, so that the
numbers agree with the reference tool users know:

* ``psi`` and ``jensenshannon``: over Evidently's bins, which for a numeric column with more
  than 20 distinct reference values are ``sturges_edges`` (equal-width bins spanning both
  samples) and otherwise the distinct values; PSI replaces empty bins as Evidently does.
* ``wasserstein_normed``: the first Wasserstein distance divided by the reference standard
  deviation (at least 0.001), computed as the integral of the CDF difference bin by bin.
  Within a bin the integral of each CDF follows exactly from the bin's count and sum, so the
  estimate is exact wherever the two CDFs do not cross inside a bin.
* ``ks_statistic``: the largest ECDF difference at the bin edges (both one-sided limits),
  exact when the reference profile is exact; ``ks_pvalue`` is scipy's ``ks_2samp`` p-value
  for that statistic and those sample sizes (exact below 10,000 values, else asymptotic).
* ``chisquare`` and ``z_test``: the tests Evidently runs on value counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from telemetry.extras import require

from .histograms import Histogram
from .profiles import NumericProfile, grid_edges

_KS_EXACT_MAX_N = 10_000  # scipy's ks_2samp 'auto' uses the exact distribution up to this


def profile_histogram(profile: NumericProfile) -> Histogram:
    """A reference profile as a Histogram (nothing lies below its first edge)."""
    edges = np.asarray(profile.edges, dtype=np.float64)
    return Histogram(
        edges,
        np.concatenate([[0.0], np.asarray(profile.counts, dtype=np.float64)]),
        np.concatenate([[0.0], np.asarray(profile.sums, dtype=np.float64)]),
        np.asarray(profile.edge_counts, dtype=np.float64),
        profile.min,
        profile.max,
    )


# --- KS -------------------------------------------------------------------------------------


def ks_statistic(reference: Histogram, current: Histogram) -> float:
    """sup |F_ref - F_cur| over the edges, taking both the left and the right limit."""
    _same_edges(reference, current)
    ref_below, ref_at = _ecdf_at_edges(reference)
    cur_below, cur_at = _ecdf_at_edges(current)
    return float(max(np.abs(ref_below - cur_below).max(), np.abs(ref_at - cur_at).max()))


def ks_pvalue(statistic: float, n1: int, n2: int) -> float:
    """The two-sided p-value scipy's ``ks_2samp(method='auto')`` gives for ``statistic``."""
    distributions = _scipy_stats().distributions

    if min(n1, n2) <= 0:
        return 1.0
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        exact = _exact_ks_pvalue(statistic, n1, n2)
        if exact is not None:
            return exact
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(distributions.kstwo.sf(statistic, np.round(en)), 0.0, 1.0))


def _exact_ks_pvalue(statistic: float, n1: int, n2: int) -> float | None:
    # scipy exposes the exact two-sample distribution only inside ks_2samp; calling the
    # helper it uses gives the identical p-value without raw samples. Should a future scipy
    # move it, fall back to the asymptotic formula (scipy does the same when exact fails).
    try:
        from scipy.stats._stats_py import _attempt_exact_2kssamp
    except ImportError:
        return None
    success, _, prob = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), statistic, "two-sided")
    return float(np.clip(prob, 0.0, 1.0)) if success else None


def _ecdf_at_edges(hist: Histogram) -> tuple[np.ndarray, np.ndarray]:
    n = max(hist.n, 1)
    below = np.cumsum(hist.counts)[:-1] / n  # F(e_k-): bins 0..k hold the values < e_k
    return below, below + hist.edge_counts / n


# --- Wasserstein ----------------------------------------------------------------------------


def wasserstein_normed(reference: Histogram, current: Histogram, reference_std: float) -> float:
    """W1(reference, current) / max(std of the reference, 0.001), as Evidently norms it."""
    return wasserstein(reference, current) / max(float(reference_std), 0.001)


def wasserstein(reference: Histogram, current: Histogram) -> float:
    """The first Wasserstein distance, integrated bin by bin from counts and sums.

    For a bin [a, b) the integral of a sample's ECDF is (b - a) F(a-) + (b c - s) / n, with c
    and s the bin's count and sum; below the first edge it is (e_0 c - s) / n, and at or above
    the last edge the integral of 1 - F is (s - e c) / n. Summing |difference| per bin is
    exact where the CDFs do not cross within a bin, and a slight underestimate where they do.
    """
    _same_edges(reference, current)
    if reference.n == 0 or current.n == 0:
        return 0.0
    e = reference.edges
    nr, nc = reference.n, current.n
    pr, pc = reference.counts / nr, current.counts / nc
    mr, mc = reference.sums / nr, current.sums / nc
    below_r, _ = _ecdf_at_edges(reference)
    below_c, _ = _ecdf_at_edges(current)
    total = abs((e[0] * pr[0] - mr[0]) - (e[0] * pc[0] - mc[0]))
    if e.size > 1:
        width = np.diff(e)
        right = e[1:]
        inner = width * (below_r[:-1] - below_c[:-1]) + (right * (pr[1:-1] - pc[1:-1])
                                                          - (mr[1:-1] - mc[1:-1]))
        total += np.abs(inner).sum()
    total += abs((mr[-1] - e[-1] * pr[-1]) - (mc[-1] - e[-1] * pc[-1]))
    return float(total)


# --- Evidently's binning for PSI and Jensen-Shannon ------------------------------------------


def sturges_edges(low: float, high: float, n: int) -> np.ndarray:
    """``np.histogram_bin_edges(values, 'sturges')`` for ``n`` values spanning [low, high]."""
    first, last = float(low), float(high)
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = (last - first) / (np.log2(n) + 1.0)
    bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True, dtype=np.float64)


def counts_on_edges(profile: NumericProfile, edges: np.ndarray) -> np.ndarray:
    """A profile's counts re-binned onto ``edges`` as ``np.histogram`` bins them.

    Exact for an exact profile (point masses on its edges). Otherwise the count below each
    edge is interpolated in whichever of the profile's two histograms (quantile bins, or the
    fine equal-width grid) splits fewer values there, taking a cell's values as spread evenly
    across it. The grid is usually the finer one; the quantile bins win in long tails.
    """
    below = np.array([_count_below(profile, float(t)) for t in edges])
    counts = np.diff(below)
    counts[-1] += profile.count - below[-1]  # numpy's last bin is closed: [t_K-1, t_K]
    return counts


def _count_below(profile: NumericProfile, t: float) -> float:
    """How many reference values are below ``t`` (interpolated inside a bin or cell)."""
    estimate, uncertain = _below_in_bins(profile, t)
    if profile.grid and uncertain:
        by_grid, grid_uncertain = _below_in_grid(profile, t)
        if grid_uncertain < uncertain:
            return by_grid
    return estimate


def _below_in_bins(profile: NumericProfile, t: float) -> tuple[float, float]:
    e = profile.edges
    k = int(np.searchsorted(e, t, side="right")) - 1
    if k < 0:
        return 0.0, 0.0
    done = float(sum(profile.counts[:k]))
    if t == e[k]:
        return done, 0.0
    inside = profile.counts[k] - profile.edge_counts[k]
    if k + 1 >= len(e) or inside == 0:
        return done + profile.counts[k], 0.0
    share = (t - e[k]) / (e[k + 1] - e[k])
    return done + profile.edge_counts[k] + inside * share, float(inside)


def _below_in_grid(profile: NumericProfile, t: float) -> tuple[float, float]:
    cells = np.asarray(profile.grid, dtype=np.float64)
    g = grid_edges(profile)
    if t <= g[0]:
        return 0.0, 0.0
    if t > g[-1]:
        return float(profile.count), 0.0
    j = min(int(np.searchsorted(g, t, side="right")) - 1, cells.size - 1)
    share = (t - g[j]) / (g[j + 1] - g[j])
    return float(cells[:j].sum() + cells[j] * share), float(cells[j])


def value_percents(
    reference: Mapping[Any, float], current: Mapping[Any, float]
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Keys (the union, sorted) and the share of each sample per key, as Evidently bins them."""
    keys = sorted(set(reference) | set(current), key=_sort_key)
    nr = sum(reference.values()) or 1
    nc = sum(current.values()) or 1
    ref = np.array([reference.get(k, 0) / nr for k in keys], dtype=np.float64)
    cur = np.array([current.get(k, 0) / nc for k in keys], dtype=np.float64)
    return keys, ref, cur


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


# --- PSI, Jensen-Shannon ----------------------------------------------------------------------


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two bin-share vectors, empty bins filled as Evidently
    fills them (a millionth of the smallest share, or 0.0001)."""
    ref, cur = _fill_zeroes(reference), _fill_zeroes(current)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    out = np.array(shares, dtype=np.float64)
    nonzero = out[out != 0]
    if nonzero.size == 0:
        return out
    smallest = nonzero.min()
    out[out == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


def jensenshannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log), as ``scipy.spatial.distance.jensenshannon``."""
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(current, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    divergence = (_kl(p, m) + _kl(q, m)) / 2.0
    return float(np.sqrt(max(divergence, 0.0)))


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / m[mask])))


# --- tests on value counts ----------------------------------------------------------------------


def chisquare(reference: Mapping[Any, float], current: Mapping[Any, float]) -> tuple[float, float]:
    """(statistic, p-value) of Pearson's chi-square test of the current counts against the
    reference frequencies scaled to the current total. A value the reference never had makes
    the statistic infinite (p = 0), as in Evidently."""
    chi2 = _scipy_stats().chi2

    keys = sorted(set(reference) | set(current), key=_sort_key)
    nr, nc = sum(reference.values()), sum(current.values())
    if nr == 0 or nc == 0:
        return 0.0, 1.0
    expected = np.array([reference.get(k, 0) * nc / nr for k in keys], dtype=np.float64)
    observed = np.array([current.get(k, 0) for k in keys], dtype=np.float64)
    if np.any((expected == 0) & (observed > 0)):
        return float("inf"), 0.0
    mask = expected > 0
    statistic = float(np.sum((observed[mask] - expected[mask]) ** 2 / expected[mask]))
    return statistic, float(chi2.sf(statistic, len(keys) - 1)) if len(keys) > 1 else 1.0


def z_test(reference: Mapping[Any, float], current: Mapping[Any, float]) -> tuple[float, float]:
    """(z, two-sided p-value) of the difference of proportions of the first value (sorted)."""
    norm = _scipy_stats().norm

    ref_keys = [k for k, v in reference.items() if v]
    cur_keys = [k for k, v in current.items() if v]
    if len(ref_keys) == 1 and len(cur_keys) == 1 and ref_keys[0] == cur_keys[0]:
        return 0.0, 1.0
    keys = sorted(set(ref_keys) | set(cur_keys), key=_sort_key)
    n1, n2 = sum(reference.values()), sum(current.values())
    p1 = 1.0 - reference.get(keys[0], 0) / n1
    p2 = 1.0 - current.get(keys[0], 0) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    if spread == 0:
        return 0.0, 1.0
    z = (p1 - p2) / spread
    return z, float(2 * (1 - norm.cdf(abs(z))))


def _same_edges(a: Histogram, b: Histogram) -> None:
    if a.edges.shape != b.edges.shape or not np.array_equal(a.edges, b.edges):
        raise ValueError("histograms must share their bin edges")


def _scipy_stats() -> Any:
    """scipy.stats, imported on first use (scipy comes with the ``drift`` extra)."""
    return require("scipy.stats", "drift tests (KS, chi-square, z)")
