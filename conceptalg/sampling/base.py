"""Shared pieces of the samplers: chain state, energy-and-gradient, bounds, masks.

Every sampler targets ``p(x) ∝ exp(−E(x)/T)`` for an energy ``E`` evaluated on a batch of ``B``
independent chains, ``x[B, *shape] -> E[B]``. A gradient-based kernel needs ``E(x)`` and
``∇E(x)`` at its current position; the :class:`State` caches both, so a step evaluates the
energy once, at its proposal (HMC: once per leapfrog step), through :func:`energy_and_grad` — the
one place in the library that differentiates an energy for sampling. It differentiates with
``torch.autograd.grad`` with respect to ``x`` only, so parameters never receive ``.grad``.

A kernel is split into ``draw(generator, state) -> noise`` (every random number of the step, for
all chains, in a fixed order) and ``apply(state, noise) -> (state, info)`` (pure tensor code,
chain by chain). ``step = apply ∘ draw``; splitting lets chunked runs (``batch_size``) draw the
same numbers as an unchunked run and so reproduce it exactly for elementwise energies.

Masks: a boolean tensor broadcastable to one sample, ``True`` = free. Fixed coordinates get a zero
gradient (so they drop out of every proposal density) and are restored with ``torch.where`` after
every move, which keeps them bitwise equal to the initial values.

Bounds ``(low, high)``: MH-corrected kernels evaluate the energy at ``clamp(x', low, high)`` (the
energy is never called outside the box) and reject every proposal with ``x' ≠ clamp(x')``.

Score-only energies: an object with ``score_only = True`` and a method ``score(x, sigma=None)``
(``= −∇E``, e.g. a diffusion model trained to predict scores) has no energy values.
:func:`energy_and_grad` then returns ``−score`` as the gradient and zeros as the energy, which is
all ULA (and the Heun integrator) need; the Metropolis–Hastings-corrected kernels need the energy
values in their acceptance ratio and refuse such an energy (:func:`require_energy_values`).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional, Union

import torch
from torch import Tensor

from ..errors import SamplerError

__all__ = [
    "EnergyFn", "State", "AcceptInfo", "Bounds", "Kernel",
    "energy_and_grad", "energy_only", "per_chain_sum", "chain_view", "is_score_only",
    "require_energy_values", "finiteness_probe",
]

EnergyFn = Callable[[Tensor], Tensor]
"""An energy: ``x[B, *shape] -> E[B]``, lower is more probable."""

Bound = Union[float, Tensor]


class State(NamedTuple):
    """The state of a batch of gradient-based chains (Langevin, MALA, HMC).

    ``x`` is ``[B, *shape]``, ``energy`` is ``E(x)`` ``[B]``, ``grad`` is ``∇E(x)`` ``[B, *shape]``
    (zero on masked coordinates), ``step_size`` is the per-chain step size ``[B]`` (adaptation
    writes it between steps) and ``temperature`` is the 0-d target temperature ``T`` (an annealing
    schedule writes it between steps).

    Example:
        >>> import torch
        >>> from conceptalg.sampling import langevin
        >>> s = langevin.init(torch.zeros(3, 2), lambda x: (x ** 2).sum(1), step_size=0.1)
        >>> s.energy.shape, s.grad.shape, s.step_size.shape
        (torch.Size([3]), torch.Size([3, 2]), torch.Size([3]))
    """

    x: Tensor
    energy: Tensor
    grad: Tensor
    step_size: Tensor
    temperature: Tensor


class AcceptInfo(NamedTuple):
    """What one Metropolis–Hastings-corrected step reports, per chain.

    ``proposal`` ``[B, *shape]``; ``log_accept_ratio`` ``[B]`` float64 (``−inf`` where the proposal
    left the bounds); ``is_accepted`` ``[B]`` bool; ``probe`` ``[B]``: a per-chain number that is
    non-finite exactly when an energy or gradient computed in the step was (the run loop adds it
    into an accumulator and checks it every few steps, without a host sync per step).

    Example:
        >>> import torch
        >>> from conceptalg.sampling import mala
        >>> k = mala.MALA().build_kernel(lambda x: (x ** 2).sum(1))
        >>> s = k.init(torch.zeros(4, 2), step_size=0.1)
        >>> _, info = k.step(torch.Generator().manual_seed(0), s)
        >>> info.is_accepted.dtype, info.log_accept_ratio.dtype
        (torch.bool, torch.float64)
    """

    proposal: Tensor
    log_accept_ratio: Tensor
    is_accepted: Tensor
    probe: Tensor


class Bounds(NamedTuple):
    """A box ``low ≤ x ≤ high``; each side a float or a tensor broadcastable to one sample.

    Example:
        >>> import torch
        >>> Bounds(0.0, 1.0).clamp(torch.tensor([[-1.0, 0.5, 2.0]]))
        tensor([[0.0000, 0.5000, 1.0000]])
    """

    low: Bound
    high: Bound

    def clamp(self, x: Tensor) -> Tensor:
        """``x`` clamped into the box (one tensor op)."""
        low, high = self.low, self.high
        if isinstance(low, Tensor) != isinstance(high, Tensor):     # clamp takes no mixture
            low = torch.as_tensor(low, dtype=x.dtype, device=x.device)
            high = torch.as_tensor(high, dtype=x.dtype, device=x.device)
        return torch.clamp(x, low, high)


def per_chain_sum(t: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
    """Sum over every dimension but the first: ``[B, ...] -> [B]`` (optionally accumulated in
    ``dtype``, e.g. float64 for log acceptance ratios).

    Example:
        >>> import torch
        >>> per_chain_sum(torch.ones(2, 3, 4))
        tensor([12., 12.])
    """
    if t.dim() == 2:                                      # already [B, d]: skip the reshape
        return t.sum(1, dtype=dtype)
    return t.reshape(t.shape[0], -1).sum(1, dtype=dtype)


def chain_view(v: Tensor, like: Tensor) -> Tensor:
    """A per-chain vector ``v[B]`` viewed as ``[B, 1, ..., 1]`` to broadcast against ``like``.

    Example:
        >>> import torch
        >>> chain_view(torch.ones(5), torch.zeros(5, 3, 2)).shape
        torch.Size([5, 1, 1])
    """
    return v.view(v.shape[0], *([1] * (like.dim() - 1)))


def check_positive(name: str, value: Optional[float], *, upper: Optional[float] = None) -> None:
    """Reject a setting that is given but is not a finite number > 0 (and < ``upper``)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0 or (upper is not None and value >= upper):
        rule = "> 0" if upper is None else f"in (0, {upper})"
        raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")


def energy_and_grad(energy_fn: EnergyFn, x: Tensor, mask: Optional[Tensor] = None, *,
                    check: bool = False) -> tuple[Tensor, Tensor]:
    """The energy ``E(x)`` ``[B]`` and its gradient ``∇E(x)`` ``[B, *shape]``, both detached.

    The gradient is taken with ``torch.autograd.grad`` with respect to ``x`` alone, so module
    parameters get no ``.grad``; where ``mask`` is ``False`` the gradient is set to zero.
    ``check=True`` validates the energy's output first (done once, at init, not per step). For a
    score-only energy (``score_only = True``) the gradient is ``−energy_fn.score(x)`` (called
    under ``torch.no_grad()``) and the energy is zeros ``[B]``.

    Example:
        >>> import torch
        >>> e, g = energy_and_grad(lambda x: 0.5 * (x ** 2).sum(1), torch.tensor([[1.0, -2.0]]))
        >>> e, g
        (tensor([2.5000]), tensor([[ 1., -2.]]))
    """
    if is_score_only(energy_fn):
        return _score_and_grad(energy_fn, x, mask, check)
    return _value_and_grad(energy_fn, x, mask, check)


def _value_and_grad(energy_fn: EnergyFn, x: Tensor, mask: Optional[Tensor],
                    check: bool = False) -> tuple[Tensor, Tensor]:
    """:func:`energy_and_grad` of an energy with values (the per-step path: no attribute
    look-ups, no context manager when gradients are already enabled)."""
    if not torch.is_grad_enabled():
        with torch.enable_grad():
            return _value_and_grad(energy_fn, x, mask, check)
    x = x.detach().requires_grad_(True)
    energy = energy_fn(x)
    if check:
        check_energy(energy, x, differentiable=True)
    (grad,) = torch.autograd.grad(energy.sum(), x, allow_unused=True)
    if grad is None:                                     # E does not depend on x: ∇E = 0
        grad = torch.zeros_like(x)
    if mask is not None:
        grad = torch.where(mask, grad, 0.0)
    return energy.detach(), grad


def _score_and_grad(energy_fn, x: Tensor, mask: Optional[Tensor],
                    check: bool = False) -> tuple[Tensor, Tensor]:
    """:func:`energy_and_grad` of a score-only energy: zeros and ``−score``."""
    with torch.no_grad():
        score = energy_fn.score(x)
    if check:
        check_score(score, x)
    grad = -score.detach()                               # [B, *shape]
    if mask is not None:
        grad = torch.where(mask, grad, 0.0)
    return torch.zeros(x.shape[0], dtype=grad.dtype, device=grad.device), grad


def finiteness_probe(energy: Tensor, grad: Tensor) -> Tensor:
    """``E + Σ ∇E`` per chain ``[B]``: non-finite exactly when the chain's energy or gradient
    is (the run loop accumulates it and checks every few steps, with no host sync per step).

    For a ``[B, d]`` float32/float64 gradient on the CPU it is one matrix-vector product,
    ``addmv(E, ∇E, 1)``, instead of a reduction over a short last dimension and an addition (a
    third of the time on 1000 chains in 2-d); every product is by exactly 1, so NaN and ±inf
    propagate as in the sum. (Not on CUDA: cuBLAS gemv would make ``deterministic=True`` need
    ``CUBLAS_WORKSPACE_CONFIG`` for energies that use no cuBLAS themselves.)

    Example:
        >>> import torch
        >>> finiteness_probe(torch.zeros(2), torch.tensor([[1.0, 2.0], [float("inf"), 0.0]]))
        tensor([3., inf])
    """
    if grad.dim() == 2 and energy.dim() == 1 and grad.dtype == energy.dtype \
            and grad.dtype in _MV_DTYPES and grad.device.type == "cpu":
        return torch.addmv(energy, grad, _ones(grad.shape[1], grad.dtype, grad.device))
    return energy + per_chain_sum(grad)


_MV_DTYPES = (torch.float32, torch.float64)


@functools.lru_cache(maxsize=32)
def _ones(d: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A shared, never written vector of ``d`` ones (one allocation per shape, not per step)."""
    return torch.ones(d, dtype=dtype, device=device)


def is_score_only(energy_fn) -> bool:
    """Whether ``energy_fn`` gives only a score: it has ``score_only = True`` (and then a method
    ``score(x, sigma=None) -> −∇E`` ``[B, *shape]``).

    Example:
        >>> class Scores:
        ...     score_only = True
        ...     def score(self, x, sigma=None):
        ...         return -x
        >>> is_score_only(Scores()), is_score_only(lambda x: x.sum(1))
        (True, False)
    """
    return getattr(energy_fn, "score_only", False) is True


NEEDS_ENERGY_VALUES = frozenset({"mala", "hmc", "mh"})
"""The samplers whose Metropolis–Hastings correction needs energy values, not only a score."""


def require_energy_values(energy_fn, sampler: str) -> None:
    """Raise :class:`SamplerError` when ``sampler`` needs energy values and ``energy_fn`` is
    score-only (checked before any work).

    Example:
        >>> require_energy_values(lambda x: x.sum(1), "mala")      # an energy: fine
    """
    if sampler in NEEDS_ENERGY_VALUES and is_score_only(energy_fn):
        raise SamplerError(
            f"sampler={sampler!r} needs energy values for its Metropolis–Hastings correction, "
            f"and the model only gives a score (score_only=True): train with --parameterization "
            f"energy (Python: parameterization='energy'), or use sampler='langevin' or "
            f"sampler='heun'")


def check_score(score: Tensor, x: Tensor) -> None:
    """Raise a clear error when a score-only energy's ``score(x)`` is not ``[B, *shape]``."""
    if not isinstance(score, Tensor) or score.shape != x.shape \
            or not score.is_floating_point():
        got = f"shape {list(score.shape)}, {score.dtype}" if isinstance(score, Tensor) else \
            type(score).__name__
        raise SamplerError(f"a score-only energy's score(x) must return a floating-point "
                           f"tensor shaped like x, {list(x.shape)}; it returned {got}")


def energy_only(energy_fn: EnergyFn, x: Tensor, *, check: bool = False) -> Tensor:
    """The energy ``E(x)`` ``[B]`` without building a graph (for gradient-free samplers).

    Example:
        >>> import torch
        >>> energy_only(lambda x: (x ** 2).sum(1), torch.ones(2, 3))
        tensor([3., 3.])
    """
    with torch.no_grad():
        energy = energy_fn(x)
    if check:
        check_energy(energy, x, differentiable=False)
    return energy


def check_energy(energy: Tensor, x: Tensor, *, differentiable: bool) -> None:
    """Raise a clear error when an energy's output is not ``E[B]`` (checked once, at init)."""
    if not isinstance(energy, Tensor):
        raise SamplerError(f"the energy must return a tensor E[B]; it returned "
                           f"{type(energy).__name__}")
    if energy.shape != (x.shape[0],):
        raise SamplerError(f"the energy must return one value per chain, shape "
                           f"[{x.shape[0]}]; it returned shape {list(energy.shape)} for x of "
                           f"shape {list(x.shape)}")
    if not energy.is_floating_point():
        raise SamplerError(f"the energy must return floating-point values; got {energy.dtype}")
    if differentiable and energy.grad_fn is None and not energy.requires_grad:
        raise SamplerError("the energy is not differentiable with respect to x (its output has "
                           "no autograd graph); use sampler='mh', which needs no gradient")


class Kernel:
    """Base class of the bound kernels: an energy, options, bounds and a mask, plus
    ``init``, ``draw``, ``apply`` and ``step``.

    Subclasses define ``init(x, step_size, temperature)``, ``draw(generator, state)`` and
    ``apply(state, noise)``; ``step(generator, state)`` (also ``kernel(generator, state)``) is one
    transition. ``probe(state)`` gives the per-chain finiteness probe of a state.

    Example:
        >>> import torch
        >>> from conceptalg.sampling import Langevin
        >>> k = Langevin().build_kernel(lambda x: (x ** 2).sum(1))
        >>> s = k.init(torch.zeros(4, 2), step_size=0.01)
        >>> s, info = k.step(torch.Generator().manual_seed(0), s)
        >>> s.x.shape
        torch.Size([4, 2])
    """

    sampler_name: str = ""

    def __init__(self, energy_fn: EnergyFn, *, bounds: Optional[Bounds] = None,
                 mask: Optional[Tensor] = None) -> None:
        if not callable(energy_fn) and not is_score_only(energy_fn):
            raise TypeError(f"energy_fn must be callable, got {type(energy_fn).__name__}")
        require_energy_values(energy_fn, self.sampler_name)
        self.energy_fn = energy_fn
        self.bounds = bounds
        self.mask = mask
        self._score_only = is_score_only(energy_fn)      # looked up once, not per step
        self._cache_key: tuple = ()
        self._cache_value: tuple = ()

    def init(self, x: Tensor, step_size: Union[float, Tensor],
             temperature: Union[float, Tensor] = 1.0) -> State:
        """The state at positions ``x`` (energy and gradient evaluated once)."""
        energy, grad = energy_and_grad(self.energy_fn, x, self.mask, check=True)
        return State(x, energy, grad, step_sizes_of(step_size, x), temperature_of(temperature, x))

    def probe(self, state) -> Tensor:
        """Per-chain value that is non-finite exactly when the state's energy or gradient is."""
        return finiteness_probe(state.energy, state.grad)

    def evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(E(x), ∇E(x))`` of this kernel's energy with its mask, as :func:`energy_and_grad`
        (the per-step path: whether the energy is score-only was decided at construction)."""
        if self._score_only:
            return _score_and_grad(self.energy_fn, x, self.mask)
        return _value_and_grad(self.energy_fn, x, self.mask)

    def draw(self, generator: torch.Generator, state) -> tuple[Tensor, ...]:
        """Every random number of one step, for all chains, in a fixed order (each tensor's
        first dimension is the chain)."""
        raise NotImplementedError

    def apply(self, state, noise: tuple[Tensor, ...]):
        """One step of every chain given its random numbers: ``(state, info)``; pure tensor
        code, chain by chain, so it can run on any slice of the chains."""
        raise NotImplementedError

    def step(self, generator: torch.Generator, state):
        """One transition of every chain: ``(state, info)``."""
        return self.apply(state, self.draw(generator, state))

    __call__ = step

    def _cached(self, state, compute: Callable[[], tuple]) -> tuple:
        """Per-chain coefficients derived from ``(step_size, temperature)``, recomputed only when
        either tensor *object* changes (after warm-up and without annealing: never). So treat
        state tensors as immutable: replace them with ``state._replace``, never edit in place."""
        key = self._cache_key
        if not key or key[0] is not state.step_size or key[1] is not state.temperature:
            self._cache_key, self._cache_value = (state.step_size, state.temperature), compute()
        return self._cache_value

    def _restrict(self, proposal: Tensor, x: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """Mask and bound a proposal: ``(the point to evaluate, inside[B] or None)``."""
        if self.mask is not None:
            proposal = torch.where(self.mask, proposal, x)
        if self.bounds is None:
            return proposal, None
        clamped = self.bounds.clamp(proposal)
        inside = (clamped == proposal).reshape(proposal.shape[0], -1).all(1)   # [B]
        return clamped, inside


def step_sizes_of(step_size: Union[float, Tensor], x: Tensor) -> Tensor:
    """A step size as a per-chain ``[B]`` tensor in ``x``'s dtype and device."""
    s = torch.as_tensor(step_size, dtype=x.dtype, device=x.device)
    return s.expand(x.shape[0]).clone() if s.dim() == 0 else s.reshape(x.shape[0]).clone()


def temperature_of(temperature: Union[float, Tensor], x: Tensor) -> Tensor:
    """A temperature as a 0-d float64 tensor on ``x``'s device."""
    return torch.as_tensor(temperature, dtype=torch.float64, device=x.device).reshape(())


def metropolis(log_ratio: Tensor, log_u: Tensor,
               inside: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-chain Metropolis–Hastings decisions ``log u < log r`` (and inside the bounds):
    ``(accepted[B], reported log ratio[B])`` with ``−inf`` reported outside the bounds. A NaN
    ratio is never accepted."""
    accept = log_u < log_ratio                                            # [B]
    if inside is None:
        return accept, log_ratio
    return accept & inside, torch.where(inside, log_ratio, -torch.inf)


def accept_step(state: State, e1: Tensor, g1: Tensor, x1: Tensor, log_ratio: Tensor,
                log_u: Tensor, inside: Optional[Tensor]) -> tuple[State, AcceptInfo]:
    """Keep the proposal ``(x1, e1, g1)`` where accepted, the old state elsewhere."""
    accept, reported = metropolis(log_ratio, log_u, inside)
    a = chain_view(accept, x1)
    new = State(torch.where(a, x1, state.x), torch.where(accept, e1, state.energy),
                torch.where(a, g1, state.grad), state.step_size, state.temperature)
    return new, AcceptInfo(x1, reported, accept, log_ratio)
