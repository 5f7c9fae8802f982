"""Samplers for ``p(x) ∝ exp(−E(x)/T)``: Langevin (ULA), MALA, HMC, random-walk MH — and, over
noise levels, annealed versions of each and the reverse-diffusion Heun sampler.

:func:`sample` is the one-call entry point (``conceptalg.sample``). Underneath, each sampler is
blackjax-shaped — a ``State`` and an ``Info`` (NamedTuples of tensors), ``init(x, energy_fn,
...)`` and a kernel ``step(generator, state) -> (state, info)`` — with per-chain dual-averaging
step-size adaptation (:mod:`.adaptation`), a :class:`ReplayBuffer` for persistent chains, and the
diagnostics :func:`effective_sample_size` and :func:`split_rhat`. ``sample(..., sigmas=...)``
runs the kernel level by level on a σ-aware energy (:mod:`.anneal`); :class:`Heun` integrates
the probability-flow ODE (:mod:`.heun`); :func:`karras_sigmas` makes EDM's level schedule.

Example:
    >>> import torch
    >>> from conceptalg.sampling import sample
    >>> x = sample(lambda x: 0.5 * (x ** 2).sum(1), 100, shape=(2,), steps=50, seed=0)
    >>> x.shape
    torch.Size([100, 2])
"""

from . import adaptation, anneal, diagnostics, heun, hmc, langevin, mala, mh
from .anneal import karras_sigmas
from .api import SAMPLERS, SamplerConfig, sample
from .base import AcceptInfo, Bounds, State, energy_and_grad
from .buffer import ReplayBuffer
from .diagnostics import effective_sample_size, split_rhat
from .heun import Heun
from .hmc import HMC
from .langevin import Langevin
from .mala import MALA
from .mh import MH

__all__ = [
    "sample", "SAMPLERS", "SamplerConfig", "karras_sigmas",
    "Langevin", "MALA", "HMC", "MH", "Heun",
    "State", "AcceptInfo", "Bounds", "energy_and_grad",
    "ReplayBuffer", "effective_sample_size", "split_rhat",
    "langevin", "mala", "hmc", "mh", "heun", "anneal", "adaptation", "diagnostics",
]
