"""``conceptalg.sample``: draw ``n`` samples from ``p(x) ∝ exp(−E(x)/T)`` with one call.

The call resolves every setting (:mod:`.settings`: explicit argument > the sampler object's
field > the energy's ``sampler_defaults`` > the sampler's default) and the starting tensors,
validates them, builds the kernel, runs it with
:func:`conceptalg.sampling.loop.run` and returns the final state of the ``n`` chains. The
energy runs in ``eval()`` mode, its module state is restored afterwards, and all randomness
comes from one ``torch.Generator`` seeded with ``seed``.

**Noise levels** (``sigmas``, docs/design.md §0): for a σ-aware energy (``energy(x, sigma=σ[B])``
works), a non-increasing sequence of levels ≥ 0 (0 is the data level), default
``sampler_defaults["sigmas"]``. The kernel runs ``steps`` steps (default: its default total
split over the levels) on ``E(·, σ_l)`` at each level in turn (:mod:`.anneal`), chains and
generator continuing; level ``l`` starts from the step size
``step_size·(σ_l² + σ_d²)/(σ_L² + σ_d²)`` (exactly ``step_size`` at the last level, never 0,
levels of 0 included; ``σ_d`` is the option ``sigma_data``, else the energy's ``sigma_data``,
else 1) and MALA/HMC/MH adapt it per chain in each level's first ``warmup`` steps, keeping
their exact corrections. ``temperature`` must be one number. Without ``init`` chains start at
``centre + σ₀·ξ``, ``centre`` = ``energy.data_mean``, else the midpoint of finite bounds, else
0 (``init_samples`` is not used). Chains are not confined to ``bounds`` while levels run (the
noised law is unbounded: no clamp, no rejection); the returned samples are clamped into them
(an ``init`` is not checked against them). ``sampler="heun"`` (:class:`Heun`, :mod:`.heun`)
integrates the probability-flow ODE over ``sigmas`` and denoises to σ = 0; a trailing 0 in
``sigmas`` is that end, not a level to take a Heun step from (``[4, 0.5, 0]`` runs as
``[4, 0.5]``). ``steps``, ``warmup`` and ``step_size`` do not apply to it (an error when given,
ignored in ``sampler_defaults``); ``churn`` > 0 makes it stochastic. Heun and ULA also run
score-only models (``score_only = True`` with ``score(x, sigma)``), which MALA/HMC/MH refuse.
``return_info`` adds ``"sigmas"`` and ``"acceptance rate per level"``.

**Mixtures.** A mixture (``energy.branches`` with ``energy.branch_weights``: what ``compose``
gives for an OR over a score-only model) is sampled a branch per chain (:mod:`.mixture`): each
chain's branch is drawn from ``seed``, the chains of a branch run on that branch's energy with
these settings, and the samples come back in chain order; ``return_info`` adds ``"branch"``
(each chain's branch), ``"branch weights"``, ``"branch counts"`` and ``"branch info"``.

**Distributed.** ``distributed=True`` (opt-in, never automatic) splits the ``n`` chains into
contiguous blocks over the processes of the initialised ``torch.distributed`` group (under
``torchrun``; without a group it is one process; :class:`conceptalg.sampling.loop.Shard`) and
returns all ``n`` samples on every process, all-gathered in chain order. Every process must
make the same call; each draws the random numbers of all chains and keeps its block's, so a
seed gives the same samples whatever the number of processes (bitwise for elementwise
energies, to rounding for networks, whose batched kernels may round differently).
``seed=None`` takes rank 0's seed. The energy must live on each process's device
(``cuda:LOCAL_RANK`` with NCCL).

Example (noise levels, then the probability-flow ODE):
    >>> import torch, conceptalg
    >>> wide = lambda x, sigma: 0.5 * ((x - 2.0) ** 2).sum(1) / (1 + sigma ** 2)
    >>> x = conceptalg.sample(wide, 500, shape=(2,), sampler="mala", steps=40,
    ...                       sigmas=[4.0, 1.0, 0.1], seed=0)     # ends at N(2, 1.01 I)
    >>> bool((x.mean(0) - 2.0).abs().max() < 0.3)
    True
    >>> x = conceptalg.sample(wide, 500, shape=(2,), sampler="heun", seed=0,
    ...                       sigmas=conceptalg.sampling.karras_sigmas(30, 0.01, 20.0))
    >>> x.shape
    torch.Size([500, 2])
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor

from ..progress import progress_bar
from . import heun
from .anneal import level_info, run_levels
from .base import is_score_only, require_energy_values
from .buffer import ReplayBuffer
from .diagnostics import effective_sample_size, split_rhat
from .loop import Shard, run
from .mixture import is_mixture, sample_mixture
from .resolve import (data_centre, default_noise, deterministic_mode, device_dtype, resolve_bounds,
                      resolve_init, resolve_mask, resolve_shape, resolve_step_size,
                      resolve_temperature, sampling_mode)
from .settings import (DEFAULT_SAMPLER, DEFAULT_TEMPERATURE, SAMPLERS, Plan, SamplerConfig,
                       check_int, make_plan)

__all__ = ["sample", "SAMPLERS", "SamplerConfig"]


def sample(energy: Callable[[Tensor], Tensor], n: int, *, shape: Optional[Sequence[int]] = None,
           sampler: Union[str, SamplerConfig] = DEFAULT_SAMPLER,
           steps: Optional[int] = None, warmup: Optional[int] = None,
           step_size: Union[float, Tensor, None] = None, noise_scale: Optional[float] = None,
           temperature: Union[float, Sequence[float], Tensor, Callable[[int], float]]
           = DEFAULT_TEMPERATURE,
           bounds: Optional[tuple[Any, Any]] = None, init: Union[Tensor, ReplayBuffer, None] = None,
           seed: Optional[int] = None, device: Union[str, torch.device, None] = None,
           progress: Optional[bool] = None, return_info: bool = False,
           distributed: bool = False, sigmas: Optional[Sequence[float]] = None,
           **options: Any) -> Union[Tensor, tuple[Tensor, dict[str, Any]]]:
    """Draw ``n`` samples ``[n, *shape]`` from ``p(x) ∝ exp(−E(x)/T)`` by MCMC.

    ``energy`` maps ``x[B, *shape]`` to ``E[B]``; it may carry ``sample_shape``, ``bounds``,
    ``sampler_defaults`` (a dict of defaults for these keywords) and ``init_samples(n, generator,
    device)``; explicit arguments win. ``sampler`` is ``"langevin"`` (ULA, default), ``"mala"``,
    ``"hmc"``, ``"mh"``, ``"heun"`` (needs ``sigmas``) or a configured
    :class:`Langevin`/:class:`MALA`/:class:`HMC`/:class:`MH`/:class:`Heun`. ``steps`` counts all
    steps; the first ``warmup`` (default ``steps // 2``) adapt MH-corrected step sizes per chain
    and are discarded. ``temperature`` is a number, a per-step schedule (sequence or callable
    ``step -> T``) for annealing. ``bounds=(low, high)``: ULA clamps, the others reject proposals
    outside. ``init``: a tensor ``[n, *shape]`` (or one sample), or a :class:`ReplayBuffer`;
    default ``energy.init_samples`` (the model's own starting points, e.g. a trained model's stored
    bank), else uniform within ``bounds``, else standard normal. ``options``: ``mask`` (bool, one
    sample's shape: ``True`` = free, ``False`` = kept at ``init``), ``grad_clip``,
    ``num_leapfrog``, ``jitter``, ``target_accept``, ``adapt``, ``on_nonfinite`` (``"raise"``, or
    ``"reset"``: restart non-finite chains from fresh noise), ``batch_size`` (chains per energy
    call; same result as unchunked for energies that treat chains independently), ``thin``,
    ``check_every`` (default 10), ``deterministic`` (deterministic GPU kernels), ``sigma_data`` and
    ``churn`` (module docstring). With ``return_info=True`` it returns ``(samples, info)``,
    ``info`` a dict of diagnostics ("acceptance rate", "step size", "energy trace", "gradient
    norm", "ess", "split r-hat", ...).

    ``sigmas`` (noise levels, docs/design.md §0), a mixture (an OR over a score-only model) and
    ``distributed=True`` (the chains in blocks over the processes of a ``torch.distributed``
    group): the module docstring.

    Example:
        >>> import torch, conceptalg
        >>> energy = lambda x: 0.5 * ((x - 2.0) ** 2).sum(1)         # N(2, I)
        >>> x, info = conceptalg.sample(energy, 500, shape=(2,), sampler="mala", steps=200,
        ...                             seed=0, return_info=True)
        >>> x.shape, bool((x.mean(0) - 2.0).abs().max() < 0.3)
        (torch.Size([500, 2]), True)
        >>> 0.4 < info["mean acceptance rate"] < 0.75
        True
    """
    if is_mixture(energy):  # an OR of a score-only model: a branch per chain (docs/design.md §0)
        return sample_mixture(sample, energy, n, shape=shape, sampler=sampler, steps=steps,
                              warmup=warmup, step_size=step_size, noise_scale=noise_scale,
                              temperature=temperature, bounds=bounds, init=init, seed=seed,
                              device=device, progress=progress, return_info=return_info,
                              distributed=distributed, sigmas=sigmas, options=options)
    _check_energy(energy)
    check_int("n", n, 1)
    plan = make_plan(energy, sampler, steps, warmup, step_size, noise_scale, temperature, options,
                     sigmas)
    require_energy_values(energy, plan.config.name)
    device, dtype = device_dtype(energy, init, device)
    generator = torch.Generator(device=device)
    shard = _shard(n) if distributed else None
    seed = _seed(generator, seed, shard)
    start = _start(energy, plan, n, shape, bounds, init, options.get("mask"), generator, device,
                   dtype)
    temps, starts = _schedule(plan, n, device, dtype)
    bar = _progress_bar(progress, shard, plan)
    try:
        with sampling_mode(energy), deterministic_mode(plan.deterministic):
            if plan.config.name == "heun":
                return _integrate(energy, plan, start, generator, bar, shard, seed, return_info)
            result, rates = _run_chains(energy, plan, start, temps, starts, generator, bar, shard,
                                        return_info)
    finally:
        if bar is not None:
            bar.close()
    if not return_info:
        return result.state.x
    info = _info(result, plan, seed, temps)
    return result.state.x, (info if plan.sigmas is None
                            else {**info, **level_info(plan.sigmas, rates)})


class _Start(NamedTuple):
    """Where the chains start: ``x0`` ``[n, *shape]``, the ``box`` of ``bounds`` (or None), the
    ``mask`` of free coordinates (or None), and fresh noise for restarted chains: ``noise(k)``
    without noise levels, ``noise_at(σ)(k)`` with them."""

    x0: Tensor
    box: Any
    mask: Optional[Tensor]
    noise: Optional[Callable[[int], Tensor]]
    noise_at: Optional[Callable[[float], Callable[[int], Tensor]]]

    def fresh(self, noise: Callable[[int], Tensor]) -> Callable[[Tensor], Tensor]:
        """Fresh starting points for the chains ``index`` (masked coordinates kept at ``x0``)."""
        def fresh(index: Tensor) -> Tensor:
            x = noise(len(index))
            return x if self.mask is None else torch.where(self.mask, x, self.x0[index])
        return fresh


def _check_energy(energy: Any) -> None:
    if not callable(energy) and not is_score_only(energy):
        raise TypeError(f"energy must be callable (x[B, ...] -> E[B]), got {type(energy).__name__}")
    if is_score_only(energy) and not callable(getattr(energy, "score", None)):
        raise TypeError("a score-only energy (score_only=True) needs a method score(x, sigma)")


def _seed(generator: torch.Generator, seed: Optional[int], shard: Optional[Shard]) -> int:
    """Seed ``generator`` with ``seed`` (``None``: a fresh seed, rank 0's under a shard, since
    every process must draw the same numbers); returns the seed used."""
    if seed is None:
        seed = generator.seed()
        if shard is not None:
            from ..distributed import broadcast_int
            seed = broadcast_int(seed % 2 ** 63)
            generator.manual_seed(seed)
        return seed
    check_int("seed", seed, 0)
    generator.manual_seed(seed)
    return seed


def _start(energy: Any, plan: Plan, n: int, shape: Optional[Sequence[int]], bounds: Any,
           init: Any, mask: Any, generator: torch.Generator, device: torch.device,
           dtype: torch.dtype) -> _Start:
    """The chains' starting points, box and mask; with noise levels they start in the noised
    law: unbounded, centred on the data."""
    shape = resolve_shape(energy, shape, init, n)
    box = resolve_bounds(bounds if bounds is not None else plan.bounds, shape, device, dtype)
    mask = resolve_mask(mask, shape, device)
    noise = noise_at = None
    if plan.sigmas is None:
        noise = default_noise(energy, box, shape, device, dtype, generator)
        x0 = resolve_init(init, n, shape, box, noise, generator, device, dtype)
    else:
        centre = data_centre(energy, box, shape, device, dtype)

        def noise_at(sigma: float) -> Callable[[int], Tensor]:
            return lambda k: centre + sigma * torch.randn((k, *shape), generator=generator,
                                                          device=device, dtype=dtype)
        x0 = resolve_init(init, n, shape, None, noise_at(plan.sigmas[0]), generator, device,
                          dtype)
    if mask is not None and not isinstance(init, (Tensor, ReplayBuffer)):
        raise ValueError("mask keeps coordinates fixed at their initial values: pass init= "
                         "(a tensor or a ReplayBuffer) with the values to keep")
    return _Start(x0, box, mask, noise, noise_at)


def _schedule(plan: Plan, n: int, device: torch.device,
              dtype: torch.dtype) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """The temperature per step and each chain's starting step size (``None`` for Heun, which
    takes neither)."""
    if plan.config.name == "heun":
        return None, None
    return (resolve_temperature(plan.temperature, plan.steps, device),
            resolve_step_size(plan.step_size, n, device, dtype))


def _progress_bar(progress: Optional[bool], shard: Optional[Shard], plan: Plan) -> Any:
    """One progress report (the first process's), over every step of every level."""
    if not progress or (shard is not None and shard.start != 0):
        return None
    levels = 1 if plan.sigmas is None or plan.config.name == "heun" else len(plan.sigmas)
    return progress_bar(plan.steps * levels, f"sampling ({plan.config.name})", unit="step")


def _integrate(energy: Any, plan: Plan, start: _Start, generator: torch.Generator, bar: Any,
               shard: Optional[Shard], seed: int, return_info: bool) -> Any:
    """The probability-flow ODE over ``plan.sigmas`` (:mod:`.heun`), clamped into the box."""
    config = plan.config
    samples = heun.integrate(config, energy, start.x0, plan.sigmas, generator=generator,
                             mask=start.mask, batch_size=plan.batch_size, progress=bar,
                             shard=shard)
    samples = samples if start.box is None else start.box.clamp(samples)
    if not return_info:
        return samples
    return samples, {"sampler": "heun", "sigmas": list(plan.sigmas), "seed": seed,
                     "levels": len(plan.sigmas), "churn": config.churn,
                     "score evaluations": 2 * plan.steps - 1}


def _run_chains(energy: Any, plan: Plan, start: _Start, temps: Tensor, starts: Tensor,
                generator: torch.Generator, bar: Any, shard: Optional[Shard],
                record: bool) -> tuple[Any, list[float]]:
    """The MCMC chains, at one level or through ``plan.sigmas`` (then clamped into the box):
    the loop's result and the acceptance rate per level."""
    config = plan.config
    common = dict(steps=plan.steps, warmup=plan.warmup, step_size=starts,
                  temperature=temps, generator=generator, check_every=plan.check_every,
                  on_nonfinite=plan.on_nonfinite, record=record, thin=plan.thin,
                  batch_size=plan.batch_size, progress=bar, shard=shard)
    if plan.sigmas is None:
        kernel = config.build_kernel(energy, bounds=start.box, mask=start.mask)
        target = config.target_accept if config.adapts and config.adapt else None
        return run(kernel, start.x0, target_accept=target, fresh=start.fresh(start.noise),
                   **common), []
    result, rates, resets = run_levels(
        config, energy, start.x0, sigmas=plan.sigmas, sigma_data=plan.sigma_data,
        fresh_at=lambda sigma: start.fresh(start.noise_at(sigma)), mask=start.mask, **common)
    x = result.state.x if start.box is None else start.box.clamp(result.state.x)
    return result._replace(state=result.state._replace(x=x), resets=resets), rates


def _shard(n: int) -> Optional[Shard]:
    """This process's block of the ``n`` chains, or None without a multi-process group."""
    from ..distributed import all_gather_rows, current, shard_bounds

    group = current()
    if group is None:
        return None
    if n < group.world_size:
        raise ValueError(f"distributed sampling needs at least one chain per process: n={n} "
                         f"chains for {group.world_size} processes")
    bounds = shard_bounds(n, group.world_size)
    return Shard(bounds[group.rank], bounds[group.rank + 1], n,
                 lambda t: all_gather_rows(t, bounds))


def _info(result, plan: Plan, seed: int, temps: Tensor) -> dict[str, Any]:
    """The human-keyed diagnostics dict of a run."""
    state, kept = result.state, plan.steps - plan.warmup
    n = state.x.shape[0]
    if result.accepted is None:
        rate = torch.ones(n, dtype=torch.float64, device=state.x.device)
    else:
        rate = result.accepted.to(torch.float64) / kept
    trace = result.energy_trace
    enough = trace.shape[0] >= 4
    info: dict[str, Any] = {
        "sampler": plan.config.name, "steps": plan.steps, "warmup": plan.warmup,
        "thin": plan.thin, "seed": seed,
        "temperature": float(temps[-1] if temps.dim() == 1 else temps),
        "step size": state.step_size, "acceptance rate": rate,
        "mean acceptance rate": float(rate.mean()), "energy trace": trace,
        "ess": effective_sample_size(trace) if enough else torch.tensor(math.nan),
        "split r-hat": split_rhat(trace) if enough else torch.tensor(math.nan),
        "resets": result.resets,
    }
    if result.grad_norm_trace is not None:
        info["gradient norm"] = result.grad_norm_trace
    return info
