"""Convergence diagnostics for traces of ``M`` chains: effective sample size and split-R̂.

A trace is ``[T, M, *rest]`` (``T`` draws per chain; ``[T]`` is one chain, ``[T, M]`` one
scalar per chain); the diagnostics are computed for every coordinate of ``rest``, in float64.

Split-R̂ (Gelman et al., *Bayesian Data Analysis*, 3rd ed., §11.4): cut every chain into two
halves of ``n = ⌊T/2⌋`` draws, giving ``m = 2M`` chains; with ``W`` the mean within-chain variance
and ``B/n`` the variance of the chain means,

    var⁺ = (n − 1)/n · W + B/n,        R̂ = sqrt(var⁺ / W).

R̂ ≈ 1 when the chains agree; R̂ > 1.01 is the usual warning, > 1.1 a failure.

ESS (the same book, §11.5, as in Stan): with per-chain autocovariances ``γ_c(t)`` (FFT),

    ρ_t = 1 − (W − mean_c γ_c(t)) / var⁺,      ESS = M·T / (−1 + 2 Σ_k P_k),

where ``P_k = ρ_{2k} + ρ_{2k+1}`` are Geyer's pair sums, truncated at the first non-positive one
and made monotone non-increasing (Geyer's initial monotone sequence estimator). For ``M·T`` iid
draws ESS ≈ ``M·T``; for an AR(1) chain with coefficient ``φ`` it is ``M·T (1 − φ)/(1 + φ)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["effective_sample_size", "split_rhat"]


def _as_chains(trace: Tensor, name: str, min_draws: int) -> Tensor:
    """The trace as a float64 ``[T, M, *rest]`` tensor, checked."""
    if not isinstance(trace, Tensor):
        trace = torch.as_tensor(trace)
    if trace.dim() == 0:
        raise ValueError(f"{name}: trace must be [T] or [T, chains, ...], got a 0-d tensor")
    trace = trace.detach().to(torch.float64)
    if trace.dim() == 1:
        trace = trace.unsqueeze(1)
    if trace.shape[0] < min_draws:
        raise ValueError(f"{name}: needs at least {min_draws} draws per chain, got a trace of "
                         f"shape {list(trace.shape)} (draws along the first dimension)")
    return trace


def split_rhat(trace: Tensor) -> Tensor:
    """Split-R̂ of a trace ``[T, M, *rest]`` (or ``[T]``): a tensor of shape ``rest``.

    Values near 1 mean the chains (and the two halves of each) agree; above 1.1 they clearly
    have not mixed. Needs ``T ≥ 4``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> same = torch.randn(1000, 4, generator=g)
        >>> bool(split_rhat(same) < 1.01)
        True
        >>> shifted = same + torch.tensor([0.0, 0.0, 3.0, 3.0])
        >>> bool(split_rhat(shifted) > 1.1)
        True
    """
    x = _as_chains(trace, "split_rhat", 4)
    n = x.shape[0] // 2
    halves = torch.cat([x[:n], x[x.shape[0] - n:]], dim=1)               # [n, 2M, *rest]
    within = halves.var(dim=0, unbiased=True).mean(dim=0)                 # W
    between = halves.mean(dim=0).var(dim=0, unbiased=True)                # B / n
    var_plus = (n - 1) / n * within + between
    return torch.sqrt(var_plus / within)


def _autocovariance(x: Tensor) -> Tensor:
    """Biased autocovariances of each chain along dim 0, by FFT: ``[T, M, ...]``."""
    t = x.shape[0]
    centred = x - x.mean(dim=0, keepdim=True)
    size = 1 << (2 * t - 1).bit_length()                                   # ≥ 2T: no wrap-around
    f = torch.fft.rfft(centred, n=size, dim=0)
    return torch.fft.irfft(f * f.conj(), n=size, dim=0)[:t] / t


def effective_sample_size(trace: Tensor) -> Tensor:
    """Effective sample size of a trace ``[T, M, *rest]`` (or ``[T]``), over all chains: a
    tensor of shape ``rest``.

    It is the number of independent draws that would estimate the mean as precisely as the
    (autocorrelated) trace does; at most ``M·T·log10(M·T)``. Needs ``T ≥ 4``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> iid = torch.randn(1000, 4, generator=g)
        >>> 3500 < float(effective_sample_size(iid)) < 4500
        True
    """
    x = _as_chains(trace, "effective_sample_size", 4)
    t, m = x.shape[0], x.shape[1]
    acov = _autocovariance(x)                                             # [T, M, *rest]
    within = (acov[0] * t / (t - 1)).mean(dim=0)                          # W
    var_plus = within * (t - 1) / t
    if m > 1:
        var_plus = var_plus + x.mean(dim=0).var(dim=0, unbiased=True)
    rho = 1.0 - (within - acov.mean(dim=1)) / var_plus                    # [T, *rest]
    pairs = rho[0:t - t % 2:2] + rho[1:t - t % 2:2]                       # [K, *rest] Geyer sums
    positive = torch.cumprod((pairs > 0).to(torch.float64), dim=0)        # until the first ≤ 0
    monotone = torch.cummin(pairs, dim=0).values
    tau = -1.0 + 2.0 * (monotone * positive).sum(dim=0)
    total = m * t
    tau = torch.clamp(tau, min=1.0 / math.log10(max(total, 10)))
    return total / tau
