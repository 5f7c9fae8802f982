"""Samplers for ``p(x) ∝ exp(−E(x)/T)``: Langevin (ULA), MALA, HMC, random-walk MH.

:func:`sample` is the one-call entry point (``conceptalg.sample``). Underneath, each sampler is
blackjax-shaped — a ``State`` and an ``Info`` (NamedTuples of tensors), ``init(x, energy_fn,
...)`` and a kernel ``step(generator, state) -> (state, info)`` — with per-chain dual-averaging
step-size adaptation (:mod:`.adaptation`), a :class:`ReplayBuffer` for persistent chains, and the
diagnostics :func:`effective_sample_size` and :func:`split_rhat`.

Example:
    >>> import torch
    >>> from conceptalg.sampling import sample
    >>> x = sample(lambda x: 0.5 * (x ** 2).sum(1), 100, shape=(2,), steps=50, seed=0)
    >>> x.shape
    torch.Size([100, 2])
"""

from . import adaptation, diagnostics, hmc, langevin, mala, mh
from .api import SAMPLERS, SamplerConfig, sample
from .base import AcceptInfo, Bounds, State, energy_and_grad
from .buffer import ReplayBuffer
from .diagnostics import effective_sample_size, split_rhat
from .hmc import HMC
from .langevin import Langevin
from .mala import MALA
from .mh import MH

__all__ = [
    "sample", "SAMPLERS", "SamplerConfig",
    "Langevin", "MALA", "HMC", "MH",
    "State", "AcceptInfo", "Bounds", "energy_and_grad",
    "ReplayBuffer", "effective_sample_size", "split_rhat",
    "langevin", "mala", "hmc", "mh", "adaptation", "diagnostics",
]
