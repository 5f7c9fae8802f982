"""Hamiltonian Monte Carlo (HMC) with a leapfrog integrator.

With momentum ``p ~ N(0, I)`` and ``H(x, p) = E(x)/T + |p|²/2``, one step integrates Hamilton's
equations with ``L = num_leapfrog`` leapfrog steps of size ``ε``,

    p ← p − (ε/2) ∇E(x)/T;  repeat L times: { x ← x + ε p;  p ← p − ε ∇E(x)/T }  (last kick ε/2)

and accepts the end point per chain with probability ``min(1, exp(H(x, p) − H(x', p')))``
(float64). The leapfrog map is volume-preserving and reversible, so ``exp(−E/T)`` is exactly
stationary. ``ε`` is jittered per chain and step, ``ε·U[1 − jitter, 1 + jitter]`` (default
``U[0.8, 1.2]``), which avoids periodic orbits. With ``bounds`` the gradient is taken at the
clamped position (any force field keeps leapfrog volume-preserving and reversible) and end points
outside the box are rejected. Step sizes adapt per chain during warm-up towards acceptance 0.8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Union

import torch
from torch import Tensor

from .base import (AcceptInfo, Bounds, EnergyFn, Kernel, State, accept_step, chain_view,
                   check_positive, energy_and_grad, per_chain_sum)

__all__ = ["HMC", "HMCKernel", "HMCInfo", "State", "init"]

HMCInfo = AcceptInfo


@dataclass(frozen=True)
class HMC:
    """Configuration of HMC (``sampler="hmc"``).

    ``step_size`` is the initial leapfrog ``ε`` (default 0.1; adapted per chain during warm-up
    unless ``adapt=False``), ``num_leapfrog`` the leapfrog steps per transition (each costs one
    energy-and-gradient evaluation), ``jitter`` the relative half-width of the step-size jitter
    and ``target_accept`` the acceptance rate adaptation aims for.

    Example:
        >>> import torch, conceptalg
        >>> from conceptalg.sampling import HMC
        >>> x = conceptalg.sample(lambda x: 0.5 * (x ** 2).sum(1), 8, shape=(2,),
        ...                       sampler=HMC(num_leapfrog=3), steps=50, seed=0)
        >>> x.shape
        torch.Size([8, 2])
    """

    step_size: Optional[float] = None
    num_leapfrog: int = 5
    jitter: float = 0.2
    target_accept: float = 0.8
    adapt: bool = True

    name: ClassVar[str] = "hmc"
    adapts: ClassVar[bool] = True
    default_step_size: ClassVar[float] = 0.1
    default_steps: ClassVar[int] = 500

    def __post_init__(self) -> None:
        check_positive("step_size", self.step_size)
        check_positive("target_accept", self.target_accept, upper=1.0)
        if isinstance(self.num_leapfrog, bool) or not isinstance(self.num_leapfrog, int) \
                or self.num_leapfrog < 1:
            raise ValueError(f"num_leapfrog must be an integer ≥ 1, got {self.num_leapfrog!r}")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float)) \
                or not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be a number in [0, 1), got {self.jitter!r}")

    def build_kernel(self, energy_fn: EnergyFn, *, bounds: Optional[Bounds] = None,
                     mask: Optional[Tensor] = None) -> "HMCKernel":
        """The HMC kernel for ``energy_fn`` with these options."""
        return HMCKernel(energy_fn, num_leapfrog=self.num_leapfrog, jitter=self.jitter,
                         bounds=bounds, mask=mask)


class HMCKernel(Kernel):
    """HMC bound to an energy: ``init(x, step_size, temperature)`` and ``step(generator, state)``.

    Example:
        >>> import torch
        >>> k = HMCKernel(lambda x: 0.5 * (x ** 2).sum(1), num_leapfrog=3)
        >>> s = k.init(torch.zeros(10, 2), step_size=0.5)
        >>> s, info = k.step(torch.Generator().manual_seed(0), s)
        >>> info.log_accept_ratio.shape
        torch.Size([10])
    """

    sampler_name = "hmc"

    def __init__(self, energy_fn: EnergyFn, *, num_leapfrog: int = 5, jitter: float = 0.2,
                 bounds: Optional[Bounds] = None, mask: Optional[Tensor] = None) -> None:
        super().__init__(energy_fn, bounds=bounds, mask=mask)
        self.num_leapfrog = num_leapfrog
        self.jitter = jitter

    def draw(self, generator: torch.Generator, state: State) -> tuple[Tensor, Tensor, Tensor]:
        x = state.x
        p = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        jit = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=x.device)
        u = torch.rand(x.shape[0], generator=generator, dtype=torch.float64, device=x.device)
        return p, jit, u

    def apply(self, state: State, noise: tuple[Tensor, Tensor, Tensor]) -> tuple[State, AcceptInfo]:
        p, jit, u = noise                                                 # [B, *shape], [B], [B]
        if self.mask is not None:
            p = torch.where(self.mask, p, 0.0)
        eps = state.step_size * (1.0 + self.jitter * (2.0 * jit - 1.0))   # [B]
        step = chain_view(eps, p)                                         # [B, 1, ...]
        kick = step / state.temperature.to(p.dtype)                       # ε/T
        k0 = 0.5 * per_chain_sum(p.square(), torch.float64)               # [B]
        q, e, g = state.x, state.energy, state.grad
        p = p - 0.5 * kick * g
        visited = None                                                    # Σ interior energies
        for i in range(self.num_leapfrog):
            q = q + step * p
            q_eval = q if self.bounds is None else self.bounds.clamp(q)
            e, g = energy_and_grad(self.energy_fn, q_eval, self.mask)
            if i + 1 < self.num_leapfrog:
                p = p - kick * g
                visited = e if visited is None else visited + e
            else:
                p = p - 0.5 * kick * g
        x1, inside = self._restrict(q, state.x)
        k1 = 0.5 * per_chain_sum(p.square(), torch.float64)
        log_ratio = (state.energy.double() - e.double()) / state.temperature + k0 - k1
        new, info = accept_step(state, e, g, x1, log_ratio, torch.log(u), inside)
        if visited is not None:      # a NaN energy at an interior point must be caught too
            info = info._replace(probe=log_ratio + visited)
        return new, info


def init(x: Tensor, energy_fn: EnergyFn, *, step_size: Union[float, Tensor],
         temperature: Union[float, Tensor] = 1.0, mask: Optional[Tensor] = None) -> State:
    """The HMC state at ``x``: energy and gradient evaluated once, per-chain step sizes.

    Example:
        >>> import torch
        >>> init(torch.ones(2, 3), lambda x: (x ** 2).sum(1), step_size=0.1).energy
        tensor([3., 3.])
    """
    return HMCKernel(energy_fn, mask=mask).init(x, step_size, temperature)
