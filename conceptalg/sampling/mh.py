"""Gradient-free random-walk Metropolis–Hastings (RWMH).

Each chain proposes ``x' = x + ε ξ``, ``ξ ~ N(0, I)`` (a symmetric proposal) and accepts with
probability ``min(1, exp(−(E(x') − E(x))/T))`` (float64). It needs no gradient, so it works
for energies that are not differentiable, at a cost that grows with the dimension. Proposals
outside ``bounds`` are rejected; masked coordinates do not move. The per-chain ``ε`` adapts
during warm-up towards acceptance 0.234, the optimal rate of Roberts, Gelman & Gilks (1997).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Optional, Union

import torch
from torch import Tensor

from .base import (AcceptInfo, Bounds, EnergyFn, Kernel, chain_view, check_positive, energy_only,
                   metropolis, step_sizes_of, temperature_of)

__all__ = ["MH", "MHKernel", "MHState", "MHInfo", "init"]

MHInfo = AcceptInfo


class MHState(NamedTuple):
    """The state of a batch of random-walk chains: positions ``x`` ``[B, *shape]``, their
    ``energy`` ``[B]``, per-chain ``step_size`` ``[B]`` and the 0-d ``temperature``.

    Example:
        >>> import torch
        >>> init(torch.zeros(3, 2), lambda x: (x ** 2).sum(1), step_size=0.5).energy
        tensor([0., 0., 0.])
    """

    x: Tensor
    energy: Tensor
    step_size: Tensor
    temperature: Tensor


@dataclass(frozen=True)
class MH:
    """Configuration of random-walk Metropolis–Hastings (``sampler="mh"``).

    ``step_size`` is the initial proposal standard deviation ``ε`` (default 0.5; adapted per
    chain during warm-up unless ``adapt=False``); ``target_accept`` is the acceptance rate
    adaptation aims for.

    Example:
        >>> import torch, conceptalg
        >>> from conceptalg.sampling import MH
        >>> x = conceptalg.sample(lambda x: 0.5 * (x ** 2).sum(1), 8, shape=(2,),
        ...                       sampler=MH(), steps=100, seed=0)
        >>> x.shape
        torch.Size([8, 2])
    """

    step_size: Optional[float] = None
    target_accept: float = 0.234
    adapt: bool = True

    name: ClassVar[str] = "mh"
    adapts: ClassVar[bool] = True
    default_step_size: ClassVar[float] = 0.5
    default_steps: ClassVar[int] = 2000

    def __post_init__(self) -> None:
        check_positive("step_size", self.step_size)
        check_positive("target_accept", self.target_accept, upper=1.0)

    def build_kernel(self, energy_fn: EnergyFn, *, bounds: Optional[Bounds] = None,
                     mask: Optional[Tensor] = None) -> "MHKernel":
        """The random-walk kernel for ``energy_fn``."""
        return MHKernel(energy_fn, bounds=bounds, mask=mask)


class MHKernel(Kernel):
    """Random-walk MH bound to an energy: ``init(x, step_size, temperature)`` and
    ``step(generator, state)``.

    Example:
        >>> import torch
        >>> k = MHKernel(lambda x: 0.5 * (x ** 2).sum(1))
        >>> s = k.init(torch.zeros(10, 2), step_size=1.0)
        >>> s, info = k.step(torch.Generator().manual_seed(0), s)
        >>> info.is_accepted.shape
        torch.Size([10])
    """

    sampler_name = "mh"

    def init(self, x: Tensor, step_size: Union[float, Tensor],
             temperature: Union[float, Tensor] = 1.0) -> MHState:
        energy = energy_only(self.energy_fn, x, check=True)
        return MHState(x, energy, step_sizes_of(step_size, x), temperature_of(temperature, x))

    def probe(self, state: MHState) -> Tensor:
        return state.energy

    def draw(self, generator: torch.Generator, state: MHState) -> tuple[Tensor, Tensor]:
        x = state.x
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        u = torch.rand(x.shape[0], generator=generator, dtype=torch.float64, device=x.device)
        return xi, u

    def apply(self, state: MHState, noise: tuple[Tensor, Tensor]) -> tuple[MHState, AcceptInfo]:
        xi, u = noise                                                     # [B, *shape], [B]
        x = state.x
        proposal = x + chain_view(state.step_size, x) * xi                # [B, *shape]
        x1, inside = self._restrict(proposal, x)
        e1 = energy_only(self.energy_fn, x1)                              # [B]
        log_ratio = (state.energy.double() - e1.double()) / state.temperature
        accept, reported = metropolis(log_ratio, torch.log(u), inside)
        new = MHState(torch.where(chain_view(accept, x), x1, x),
                      torch.where(accept, e1, state.energy), state.step_size, state.temperature)
        return new, AcceptInfo(x1, reported, accept, log_ratio)


def init(x: Tensor, energy_fn: EnergyFn, *, step_size: Union[float, Tensor],
         temperature: Union[float, Tensor] = 1.0, mask: Optional[Tensor] = None) -> MHState:
    """The random-walk state at ``x``: energy evaluated once, per-chain step sizes.

    Example:
        >>> import torch
        >>> init(torch.ones(2, 3), lambda x: (x ** 2).sum(1), step_size=0.5).step_size
        tensor([0.5000, 0.5000])
    """
    return MHKernel(energy_fn, mask=mask).init(x, step_size, temperature)
