"""Metropolis-adjusted Langevin algorithm (MALA).

The Langevin move is a proposal, ``x' = x − h d(x) + σξ`` with ``σ² = 2hT``, ``ξ ~ N(0, I)``
and ``d = ∇E`` (or its element-wise clip, ``grad_clip``), so
``q(x'|x) = N(x'; x − h d(x), σ² I)``. Each chain accepts ``x'`` with probability
``min(1, r)``, where, in float64,

    log r = −(E(x') − E(x))/T − |x − x' + h d(x')|²/(2σ²) + |ξ|²/2

(the last term is ``|x' − x + h d(x)|²/(2σ²)``). This makes ``exp(−E/T)`` exactly stationary.
Proposals outside ``bounds`` are rejected (the energy is evaluated at the clamped point, never
outside the box). The step size adapts per chain during warm-up towards acceptance 0.574, the
optimal rate of Roberts & Rosenthal (1998).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Union

import torch
from torch import Tensor

from .base import (AcceptInfo, Bounds, EnergyFn, Kernel, State, accept_step, chain_view,
                   check_positive, per_chain_sum)

__all__ = ["MALA", "MALAKernel", "MALAInfo", "State", "init"]

MALAInfo = AcceptInfo


@dataclass(frozen=True)
class MALA:
    """Configuration of MALA (``sampler="mala"``).

    ``step_size`` is the initial ``h`` (default 0.1; it adapts per chain by dual averaging during
    warm-up unless ``adapt=False``); ``target_accept`` is the acceptance rate adaptation aims for;
    ``grad_clip`` clips each gradient element in the drift (the correction stays exact).

    Example:
        >>> import torch, conceptalg
        >>> from conceptalg.sampling import MALA
        >>> x = conceptalg.sample(lambda x: 0.5 * (x ** 2).sum(1), 8, shape=(2,),
        ...                       sampler=MALA(step_size=0.5), steps=100, seed=0)
        >>> x.shape
        torch.Size([8, 2])
    """

    step_size: Optional[float] = None
    target_accept: float = 0.574
    grad_clip: Optional[float] = None
    adapt: bool = True

    name: ClassVar[str] = "mala"
    adapts: ClassVar[bool] = True
    default_step_size: ClassVar[float] = 0.1
    default_steps: ClassVar[int] = 1000

    def __post_init__(self) -> None:
        check_positive("step_size", self.step_size)
        check_positive("target_accept", self.target_accept, upper=1.0)
        check_positive("grad_clip", self.grad_clip)

    def build_kernel(self, energy_fn: EnergyFn, *, bounds: Optional[Bounds] = None,
                     mask: Optional[Tensor] = None) -> "MALAKernel":
        """The MALA kernel for ``energy_fn`` with these options."""
        return MALAKernel(energy_fn, grad_clip=self.grad_clip, bounds=bounds, mask=mask)


class MALAKernel(Kernel):
    """MALA bound to an energy: ``init(x, step_size, temperature)`` and ``step(generator, state)``.

    Example:
        >>> import torch
        >>> k = MALAKernel(lambda x: 0.5 * (x ** 2).sum(1))
        >>> g = torch.Generator().manual_seed(0)
        >>> s = k.init(torch.zeros(100, 2), step_size=0.5)
        >>> s, info = k.step(g, s)
        >>> info.is_accepted.shape
        torch.Size([100])
    """

    sampler_name = "mala"

    def __init__(self, energy_fn: EnergyFn, *, grad_clip: Optional[float] = None,
                 bounds: Optional[Bounds] = None, mask: Optional[Tensor] = None) -> None:
        super().__init__(energy_fn, bounds=bounds, mask=mask)
        self.grad_clip = grad_clip

    def draw(self, generator: torch.Generator, state: State) -> tuple[Tensor, Tensor]:
        x = state.x
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        u = torch.rand(x.shape[0], generator=generator, dtype=torch.float64, device=x.device)
        return xi, u

    def _coefficients(self, state: State) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
        def compute():
            t = state.temperature
            var = (2.0 * t) * state.step_size.to(torch.float64)           # σ² = 2hT [B]
            sigma = torch.sqrt(var).to(state.x.dtype)                     # [B]
            # 1/T is None at T = 1 on the CPU (read there without a device sync): multiplying
            # by exactly 1 changes no bit, so the step skips that tensor op
            inv_t = None if t.device.type == "cpu" and float(t) == 1.0 else 1.0 / t
            return (chain_view(state.step_size, state.x), chain_view(sigma, state.x),
                    0.5 / var, inv_t)
        return self._cached(state, compute)

    def _drift(self, grad: Tensor) -> Tensor:
        return grad if self.grad_clip is None else grad.clamp(-self.grad_clip, self.grad_clip)

    def apply(self, state: State, noise: tuple[Tensor, Tensor]) -> tuple[State, AcceptInfo]:
        xi, u = noise                                                     # [B, *shape], [B]
        h, sigma, inv_4ht, inv_t = self._coefficients(state)
        if self.mask is not None:
            xi = torch.where(self.mask, xi, 0.0)
        x = state.x
        proposal = x - h * self._drift(state.grad) + sigma * xi           # [B, *shape]
        x1, inside = self._restrict(proposal, x)
        e1, g1 = self.evaluate(x1)
        backward = per_chain_sum((x - x1 + h * self._drift(g1)).square(), torch.float64)
        forward = per_chain_sum(xi.square(), torch.float64)               # [B]
        delta = state.energy.double() - e1.double()                      # [B] float64
        if inv_t is not None:
            delta = delta * inv_t
        log_ratio = delta + 0.5 * forward - backward * inv_4ht            # [B] float64
        return accept_step(state, e1, g1, x1, log_ratio, torch.log(u), inside)


def init(x: Tensor, energy_fn: EnergyFn, *, step_size: Union[float, Tensor],
         temperature: Union[float, Tensor] = 1.0, mask: Optional[Tensor] = None) -> State:
    """The MALA state at ``x``: energy and gradient evaluated once, per-chain step sizes.

    Example:
        >>> import torch
        >>> init(torch.ones(2, 3), lambda x: (x ** 2).sum(1), step_size=0.1).grad
        tensor([[2., 2., 2.],
                [2., 2., 2.]])
    """
    return MALAKernel(energy_fn, mask=mask).init(x, step_size, temperature)
