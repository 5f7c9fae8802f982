"""Unadjusted Langevin algorithm (ULA).

One step moves every chain by

    x' = x − h ∇E(x) + σ ξ,    ξ ~ N(0, I),    σ = sqrt(2 h T),

the Euler–Maruyama discretisation of the Langevin diffusion whose stationary law is
``p(x) ∝ exp(−E(x)/T)``. ULA is not corrected: its samples carry a bias of order ``h`` (for a
Gaussian with precision ``A`` the stationary covariance is ``T·A⁻¹ (I − hA/2)⁻¹``); use MALA for
exact samples.

EBM practice decouples the noise from the step, ``x' = x − λ∇E + σξ`` with a fixed ``σ``
(``noise_scale``): that is exact Langevin on ``E/T`` with ``T = σ²/(2λ)``. Options:
``grad_clip`` clips each element of ``∇E`` to ``[−c, c]`` before the move, and ``bounds`` clamps
every move into the box — which puts atoms (positive probability) on the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Optional, Union

import torch
from torch import Tensor

from .base import Bounds, EnergyFn, Kernel, State, chain_view, check_positive, finiteness_probe

__all__ = ["Langevin", "LangevinKernel", "LangevinInfo", "State", "init"]


class LangevinInfo(NamedTuple):
    """What one ULA step reports: ``probe`` ``[B]``, the new energy plus the sum of the new
    gradient's entries — non-finite exactly when either is.

    Example:
        >>> import torch
        >>> k = Langevin().build_kernel(lambda x: (x ** 2).sum(1))
        >>> _, info = k.step(torch.Generator().manual_seed(0), k.init(torch.zeros(3, 2), 0.01))
        >>> bool(torch.isfinite(info.probe).all())
        True
    """

    probe: Tensor


@dataclass(frozen=True)
class Langevin:
    """Configuration of the unadjusted Langevin sampler (``sampler="langevin"``).

    ``step_size`` is ``h`` (default 0.01 when neither ``sample()`` nor the energy gives one);
    ``noise_scale`` fixes ``σ`` instead of ``sqrt(2hT)``; ``grad_clip`` clips each gradient
    element to ``[−grad_clip, grad_clip]``. ULA does not adapt its step size.

    Example:
        >>> import torch, conceptalg
        >>> from conceptalg.sampling import Langevin
        >>> x = conceptalg.sample(lambda x: 0.5 * (x ** 2).sum(1), 8, shape=(2,),
        ...                       sampler=Langevin(step_size=0.05), steps=100, seed=0)
        >>> x.shape
        torch.Size([8, 2])
    """

    step_size: Optional[float] = None
    noise_scale: Optional[float] = None
    grad_clip: Optional[float] = None

    name: ClassVar[str] = "langevin"
    adapts: ClassVar[bool] = False
    target_accept: ClassVar[Optional[float]] = None
    default_step_size: ClassVar[float] = 0.01
    default_steps: ClassVar[int] = 1000

    def __post_init__(self) -> None:
        check_positive("step_size", self.step_size)
        check_positive("noise_scale", self.noise_scale)
        check_positive("grad_clip", self.grad_clip)

    def build_kernel(self, energy_fn: EnergyFn, *, bounds: Optional[Bounds] = None,
                     mask: Optional[Tensor] = None) -> "LangevinKernel":
        """The ULA kernel for ``energy_fn`` with these options."""
        return LangevinKernel(energy_fn, noise_scale=self.noise_scale, grad_clip=self.grad_clip,
                              bounds=bounds, mask=mask)


class LangevinKernel(Kernel):
    """ULA bound to an energy: ``init(x, step_size, temperature)`` and ``step(generator, state)``.

    Example:
        >>> import torch
        >>> k = LangevinKernel(lambda x: 0.5 * (x ** 2).sum(1))
        >>> g = torch.Generator().manual_seed(0)
        >>> s = k.init(torch.zeros(100, 2), step_size=0.1)
        >>> for _ in range(50):
        ...     s, _ = k.step(g, s)
        >>> s.x.shape
        torch.Size([100, 2])
    """

    def __init__(self, energy_fn: EnergyFn, *, noise_scale: Optional[float] = None,
                 grad_clip: Optional[float] = None, bounds: Optional[Bounds] = None,
                 mask: Optional[Tensor] = None) -> None:
        super().__init__(energy_fn, bounds=bounds, mask=mask)
        self.noise_scale = noise_scale
        self.grad_clip = grad_clip

    def draw(self, generator: torch.Generator, state: State) -> tuple[Tensor]:
        x = state.x
        return (torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device),)

    def _coefficients(self, state: State) -> tuple[Tensor, Union[Tensor, float]]:
        def compute():
            h = chain_view(state.step_size, state.x)                      # [B, 1, ...]
            if self.noise_scale is not None:
                return h, self.noise_scale
            t = state.temperature.to(state.x.dtype)
            return h, torch.sqrt(2.0 * h * t)                             # [B, 1, ...]
        return self._cached(state, compute)

    def apply(self, state: State, noise: tuple[Tensor]) -> tuple[State, LangevinInfo]:
        (xi,) = noise                                                     # [B, *shape]
        h, sigma = self._coefficients(state)
        drift = state.grad if self.grad_clip is None else \
            state.grad.clamp(-self.grad_clip, self.grad_clip)
        x = state.x - h * drift + sigma * xi                              # [B, *shape]
        if self.mask is not None:
            x = torch.where(self.mask, x, state.x)
        if self.bounds is not None:
            x = self.bounds.clamp(x)
        energy, grad = self.evaluate(x)
        probe = finiteness_probe(energy, grad)                            # [B]
        return State(x, energy, grad, state.step_size, state.temperature), LangevinInfo(probe)


def init(x: Tensor, energy_fn: EnergyFn, *, step_size: Union[float, Tensor],
         temperature: Union[float, Tensor] = 1.0, mask: Optional[Tensor] = None) -> State:
    """The ULA state at ``x``: energy and gradient evaluated once, per-chain step sizes.

    Example:
        >>> import torch
        >>> s = init(torch.ones(2, 3), lambda x: (x ** 2).sum(1), step_size=0.1)
        >>> s.energy
        tensor([3., 3.])
    """
    return LangevinKernel(energy_fn, mask=mask).init(x, step_size, temperature)

