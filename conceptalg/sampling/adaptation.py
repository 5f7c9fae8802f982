"""Per-chain step-size adaptation by dual averaging (Hoffman & Gelman 2014, Algorithm 5).

Each chain keeps its own step size ``ε``. After the ``m``-th warm-up step, with acceptance
probability ``α_m = min(1, r_m)`` and target ``δ``,

    H̄_m = (1 − 1/(m + t₀)) H̄_{m−1} + (δ − α_m)/(m + t₀)
    log ε_m = μ − (√m / γ) H̄_m,            μ = log(10 ε₀)
    log ε̄_m = m^{−κ} log ε_m + (1 − m^{−κ}) log ε̄_{m−1}

with ``γ = 0.05``, ``t₀ = 10``, ``κ = 0.75``; the sampler uses ``ε_m`` during warm-up and ``ε̄``
(the averaged iterate, far less noisy) after it.

Warm-up runs this in three windows (:func:`warmup_init`, :func:`warmup_update`), as Stan restarts
its adaptation between windows: the first 40 % explores with ``γ = 0.05`` from ``ε₀``; the next
30 % and the last 30 % restart from the previous window's ``ε̄`` with ``μ = log ε̄`` and smaller
gains, ``γ = 0.5`` then ``γ = 1``. A single chain's acceptance is one noisy draw per step, so
with a large gain the iterates keep fluctuating and, the acceptance being non-linear in
``log ε``, ``ε̄`` ends off target (measured: by +0.03 for MALA, +0.1 for HMC in two dimensions
after 150 steps); the fine-tuning windows cut that to ≈ 0.005 (MALA, MH) and ≈ 0.015 (HMC).
Everything is float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor

__all__ = ["DualAveragingState", "dual_averaging_init", "dual_averaging_update",
           "dual_averaging_final", "WINDOWS", "WarmupState", "warmup_init", "warmup_update"]


class DualAveragingState(NamedTuple):
    """Per-chain dual-averaging state: ``log_step`` (log ε_m), ``log_step_avg`` (log ε̄_m),
    ``error_avg`` (H̄_m), ``mu`` (the shrinkage point) — all ``[B]`` float64 — and the count
    ``m`` of updates so far; ``target``, ``gamma``, ``t0``, ``kappa`` are the constants.

    Example:
        >>> import torch
        >>> s = dual_averaging_init(torch.full((3,), 0.1), target=0.574)
        >>> s.count, s.log_step.dtype
        (0, torch.float64)
    """

    log_step: Tensor
    log_step_avg: Tensor
    error_avg: Tensor
    mu: Tensor
    count: int
    target: float
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75


def dual_averaging_init(step_size: Tensor, target: float, *, gamma: float = 0.05,
                        mu: Optional[Tensor] = None) -> DualAveragingState:
    """Start adapting from the per-chain step sizes ``step_size`` ``[B]`` towards acceptance
    rate ``target``; ``mu`` (default ``log(10 ε₀)``) is the point log ε is shrunk towards.

    Example:
        >>> import torch
        >>> s = dual_averaging_init(torch.tensor([0.1, 1.0]), target=0.8)
        >>> torch.exp(s.mu).round()
        tensor([ 1., 10.], dtype=torch.float64)
    """
    log_step = torch.log(step_size.to(torch.float64))                     # [B]
    zeros = torch.zeros_like(log_step)
    if mu is None:
        mu = log_step + math.log(10.0)
    return DualAveragingState(log_step, zeros, zeros, mu.to(torch.float64), 0, float(target),
                              float(gamma))


def dual_averaging_update(state: DualAveragingState,
                          accept_prob: Tensor) -> tuple[DualAveragingState, Tensor]:
    """One update from the per-chain acceptance probabilities ``accept_prob`` ``[B]``; returns
    the new state and the step sizes to use next, ``exp(log ε_m)`` ``[B]`` float64.

    Example:
        >>> import torch
        >>> s = dual_averaging_init(torch.tensor([1.0]), target=0.5)
        >>> for _ in range(10):   # nothing accepted: the step shrinks
        ...     s, eps = dual_averaging_update(s, torch.tensor([0.0], dtype=torch.float64))
        >>> bool(eps < 1e-3)
        True
    """
    m = state.count + 1
    # lerp(a, b, w) = (1 − w) a + w b: five tensor ops per warm-up step in all.
    miss = state.target - accept_prob.to(torch.float64)                    # δ − α_m
    error_avg = torch.lerp(state.error_avg, miss, 1.0 / (m + state.t0))
    log_step = torch.add(state.mu, error_avg, alpha=-(m ** 0.5) / state.gamma)
    log_step_avg = torch.lerp(state.log_step_avg, log_step, m ** (-state.kappa))
    new = state._replace(log_step=log_step, log_step_avg=log_step_avg, error_avg=error_avg,
                         count=m)
    return new, torch.exp(log_step)


def dual_averaging_final(state: DualAveragingState) -> Tensor:
    """The step sizes to freeze after warm-up: ``exp(log ε̄)`` ``[B]`` float64 (the initial
    step sizes if no update happened).

    Example:
        >>> import torch
        >>> s = dual_averaging_init(torch.tensor([0.3]), target=0.5)
        >>> dual_averaging_final(s)
        tensor([0.3000], dtype=torch.float64)
    """
    if state.count == 0:
        return torch.exp(state.log_step)
    return torch.exp(state.log_step_avg)


WINDOWS = ((0.4, 0.5), (0.7, 1.0))
"""Warm-up windows: (fraction of warm-up where a window starts, its γ)."""


class WarmupState(NamedTuple):
    """Windowed warm-up adaptation: the dual-averaging state ``da``, warm-up steps ``done``
    so far, and the warm-up length ``warmup``.

    Example:
        >>> import torch
        >>> warmup_init(torch.full((2,), 0.1), target=0.574, warmup=100).warmup
        100
    """

    da: DualAveragingState
    done: int
    warmup: int


def warmup_init(step_size: Tensor, target: float, warmup: int) -> WarmupState:
    """Start the windowed warm-up of ``warmup`` steps from per-chain ``step_size`` ``[B]``.

    Example:
        >>> import torch
        >>> warmup_init(torch.tensor([0.5]), target=0.8, warmup=10).done
        0
    """
    return WarmupState(dual_averaging_init(step_size, target), 0, warmup)


def warmup_update(state: WarmupState, accept_prob: Tensor) -> tuple[WarmupState, Tensor]:
    """One warm-up update from per-chain acceptance probabilities ``[B]``: the new state and
    the step sizes for the next step ``[B]`` float64 — after the last warm-up step, the frozen
    ones.

    Example:
        >>> import torch
        >>> s = warmup_init(torch.tensor([1.0]), target=0.5, warmup=2)
        >>> s, eps = warmup_update(s, torch.tensor([1.0], dtype=torch.float64))
        >>> s, eps = warmup_update(s, torch.tensor([1.0], dtype=torch.float64))
        >>> bool(eps > 1.0)       # everything accepted: the step grows
        True
    """
    da, eps = dual_averaging_update(state.da, accept_prob)
    done = state.done + 1
    if done == state.warmup:
        eps = dual_averaging_final(da)
    elif state.warmup >= 20:
        for start, gamma in WINDOWS:
            if done == int(start * state.warmup):                # a fine-tuning window starts
                eps = dual_averaging_final(da)
                da = dual_averaging_init(eps, da.target, gamma=gamma, mu=torch.log(eps))
    return WarmupState(da, done, state.warmup), eps
