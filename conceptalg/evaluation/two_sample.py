"""Two-sample testing: do samples come from the same distribution as exact draws?

The statistic is the unbiased squared maximum mean discrepancy (Gretton et al., JMLR 2012) with a
Gaussian kernel ``k(a, b) = exp(−|a − b|² / (2σ²))``:

    MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m−1)) + Σ_{i≠j} k(y_i, y_j) / (n(n−1)) − 2 Σ k(x_i, y_j) / (mn)

``σ`` is the median pairwise distance of the pooled sample (at most 2000 points of it, drawn with
the test's seed), fixed before any permutation. The null distribution comes from relabelling
the pooled points at random: every replicate reuses one pooled kernel matrix ``K``, and the
block sums of all replicates are one matrix product ``K @ M`` with ``M [N, reps]`` the
permuted group indicators. The p-value ``(1 + #{null ≥ observed}) / (1 + reps)`` is valid
(exact level) for any number of replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["TwoSampleResult", "mmd_test"]


@dataclass(frozen=True)
class TwoSampleResult:
    """The outcome of :func:`mmd_test`.

    ``statistic`` is the observed MMD²_u, ``threshold`` the 95th percentile of its permutation
    null, ``p_value`` the permutation p-value, ``n_x``/``n_y`` the sample sizes, ``reps`` the
    number of permutations and ``bandwidth`` the kernel's σ.
    """

    statistic: float
    threshold: float
    p_value: float
    n_x: int
    n_y: int
    reps: int
    bandwidth: float

    def rejects(self, level: float = 0.05) -> bool:
        """True when the test rejects "same distribution" at ``level``."""
        return self.p_value <= level

    def __str__(self) -> str:
        return (f"MMD² = {self.statistic:.3g} (null 95% {self.threshold:.3g}), "
                f"p = {self.p_value:.3g}, n = {self.n_x} vs {self.n_y}, {self.reps} permutations, "
                f"σ = {self.bandwidth:.3g}")


def _as_points(a, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a),
                        dtype=torch.float64)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        t = t.reshape(t.shape[0], -1)
    if t.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 points, got {t.shape[0]}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} has non-finite values")
    return t


def mmd_test(x, y, *, reps: int = 100, seed: int = 0, bandwidth: float | None = None,
             chunk: int = 1024) -> TwoSampleResult:
    """Permutation MMD² test of ``x [m, d]`` against ``y [n, d]`` (numpy or torch), float64.

    Deterministic given ``seed``. ``bandwidth`` overrides the median heuristic. 2000 vs 2000
    points with 100 permutations take about a second on two cores.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = mmd_test(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)), reps=50)
        >>> r.p_value > 0.01
        True
    """
    if int(reps) < 20:
        raise ValueError(f"reps must be at least 20 for a usable null, got {reps!r}")
    reps = int(reps)
    xt, yt = _as_points(x, "x"), _as_points(y, "y")
    if xt.shape[1] != yt.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {xt.shape[1]} and "
                         f"{yt.shape[1]}")
    m, n = xt.shape[0], yt.shape[0]
    pooled = torch.cat([xt, yt])                                           # [N, d]
    N = m + n
    gen = torch.Generator().manual_seed(int(seed))

    if bandwidth is None:
        sub = pooled if N <= 2000 else pooled[torch.randperm(N, generator=gen)[:2000]]
        d = torch.cdist(sub, sub)
        bandwidth = float(torch.quantile(d[torch.triu_indices(len(sub), len(sub), 1).unbind()], 0.5))
        if bandwidth <= 0:
            bandwidth = 1.0  # all points equal: any kernel gives MMD 0
    elif not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")

    # Column 0 holds the observed labelling, columns 1.. the permutations.  M[i, r] = 1 if
    # pooled point i is in the "x" group of labelling r.
    labels = torch.zeros(N, reps + 1, dtype=torch.float64)
    labels[:m, 0] = 1.0
    perms = torch.argsort(torch.rand(reps, N, generator=gen), dim=1)       # [reps, N]
    labels[:, 1:] = (perms < m).to(torch.float64).T
    KM = torch.empty(N, reps + 1, dtype=torch.float64)                     # K @ M
    row_sums = torch.empty(N, dtype=torch.float64)                         # K @ 1
    scale = -0.5 / bandwidth ** 2
    for start in range(0, N, chunk):
        block = torch.exp(scale * torch.cdist(pooled[start:start + chunk], pooled,
                                                 compute_mode="donot_use_mm_for_euclid_dist") ** 2)
        KM[start:start + chunk] = block @ labels
        row_sums[start:start + chunk] = block.sum(1)
    total = row_sums.sum()                                                 # 1ᵀ K 1
    xx = (labels * KM).sum(0)                                              # 1_xᵀ K 1_x, [reps+1]
    xy = labels.T @ row_sums - xx                                          # 1_xᵀ K 1_y
    yy = total - xx - 2.0 * xy                                             # 1_yᵀ K 1_y
    # k(a, a) = 1 on the diagonal: remove it from the within-group sums
    stats = (xx - m) / (m * (m - 1)) + (yy - n) / (n * (n - 1)) - 2.0 * xy / (m * n)
    observed, null = stats[0], stats[1:]
    return TwoSampleResult(
        statistic=float(observed),
        threshold=float(torch.quantile(null, 0.95)),
        p_value=float((1 + (null >= observed).sum()) / (1 + reps)),
        n_x=m, n_y=n, reps=reps, bandwidth=float(bandwidth))
