"""``conceptalg.sample``: draw ``n`` samples from ``p(x) ∝ exp(−E(x)/T)`` with one call.

The call resolves every setting (:mod:`.settings`: explicit argument > the sampler object's
field > the energy's ``sampler_defaults`` > the sampler's default) and the starting tensors,
validates them, builds the kernel, runs it with
:func:`conceptalg.sampling.loop.run` and returns the final state of the ``n`` chains. The
energy runs in ``eval()`` mode, its module state is restored afterwards, and all randomness
comes from one ``torch.Generator`` seeded with ``seed``.

``distributed=True`` (opt-in, never automatic) shards the chains over the processes of an
initialised ``torch.distributed`` group (:class:`conceptalg.sampling.loop.Shard`): each process
advances a contiguous block of chains, draws the random numbers of all of them, and the samples
are all-gathered in chain order — the same samples as one process for the same seed.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .base import Bounds
from .buffer import ReplayBuffer
from .diagnostics import effective_sample_size, split_rhat
from .loop import Shard, run
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
           distributed: bool = False,
           **options: Any) -> Union[Tensor, tuple[Tensor, dict[str, Any]]]:
    """Draw ``n`` samples ``[n, *shape]`` from ``p(x) ∝ exp(−E(x)/T)`` by MCMC.

    ``energy`` maps ``x[B, *shape]`` to ``E[B]``; it may carry ``sample_shape``, ``bounds``,
    ``sampler_defaults`` (a dict of defaults for these keywords) and ``init_samples(n,
    generator, device)``; explicit arguments win. ``sampler`` is ``"langevin"`` (ULA, default),
    ``"mala"``, ``"hmc"``, ``"mh"`` or a configured :class:`Langevin`/:class:`MALA`/:class:`HMC`/
    :class:`MH`. ``steps`` counts all steps; the first ``warmup`` (default ``steps // 2``) adapt
    MH-corrected step sizes per chain and are discarded. ``temperature`` is a number, a
    per-step schedule (sequence or callable ``step -> T``) for annealing. ``bounds=(low, high)``:
    ULA clamps, the others reject proposals outside. ``init``: a tensor ``[n, *shape]`` (or one
    sample), or a :class:`ReplayBuffer`; default ``energy.init_samples`` (the model's own
    starting points, e.g. a trained model's stored bank), else uniform within ``bounds``,
    else standard normal. ``options``: ``mask`` (bool, one sample's
    shape: ``True`` = free, ``False`` = kept at ``init``), ``grad_clip``, ``num_leapfrog``,
    ``jitter``, ``target_accept``, ``adapt``, ``on_nonfinite`` (``"raise"``, or ``"reset"``:
    restart non-finite chains from fresh noise), ``batch_size`` (chains per energy call; same
    result as unchunked for energies that treat chains independently), ``thin``,
    ``check_every`` (default 10) and ``deterministic`` (deterministic GPU kernels). With ``return_info=True`` it returns
    ``(samples, info)``, ``info`` a dict of diagnostics ("acceptance rate", "step size",
    "energy trace", "gradient norm", "ess", "split r-hat", ...).

    ``distributed=True`` splits the ``n`` chains into contiguous blocks over the processes of
    the initialised ``torch.distributed`` group (under ``torchrun``; without a group it is one
    process) and returns all ``n`` samples on every process. Every process must make the same
    call; each draws the random numbers of all chains and keeps its block's, so a seed gives the
    same samples whatever the number of processes (bitwise for elementwise energies, to rounding
    for networks, whose batched kernels may round differently). ``seed=None`` takes rank 0's
    seed. The energy must live on each process's device (``cuda:LOCAL_RANK`` with NCCL).

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
    if not callable(energy):
        raise TypeError(f"energy must be callable (x[B, ...] -> E[B]), got {type(energy).__name__}")
    check_int("n", n, 1)
    plan = make_plan(energy, sampler, steps, warmup, step_size, noise_scale, temperature, options)
    config = plan.config
    device, dtype = _device_dtype(energy, init, device)
    generator = torch.Generator(device=device)
    shard = _shard(n) if distributed else None
    if seed is None:
        seed = generator.seed()
        if shard is not None:  # every process must draw the same numbers
            from ..training.distributed import broadcast_int
            seed = broadcast_int(seed % 2 ** 63)
            generator.manual_seed(seed)
    else:
        check_int("seed", seed, 0)
        generator.manual_seed(seed)
    shape = _resolve_shape(energy, shape, init, n)
    box = _resolve_bounds(bounds if bounds is not None else plan.bounds, shape, device, dtype)
    mask = _resolve_mask(options.get("mask"), shape, device)
    noise = _noise(energy, box, shape, device, dtype, generator)
    x0 = _resolve_init(init, n, shape, box, noise, generator, device, dtype)
    if mask is not None and not isinstance(init, (Tensor, ReplayBuffer)):
        raise ValueError("mask keeps coordinates fixed at their initial values: pass init= "
                         "(a tensor or a ReplayBuffer) with the values to keep")

    def fresh(index: Tensor) -> Tensor:
        x = noise(len(index))
        return x if mask is None else torch.where(mask, x, x0[index])

    temps = _resolve_temperature(plan.temperature, plan.steps, device)
    starts = _resolve_step_size(plan.step_size, n, device, dtype)
    kernel = config.build_kernel(energy, bounds=box, mask=mask)
    target = config.target_accept if config.adapts and config.adapt else None
    bar = None
    if progress and (shard is None or shard.start == 0):  # one bar: the first process's
        from tqdm import tqdm
        bar = tqdm(total=plan.steps, desc=f"sampling ({config.name})", unit="step")
    try:
        with _sampling_mode(energy), _deterministic(plan.deterministic):
            result = run(kernel, x0, steps=plan.steps, warmup=plan.warmup, step_size=starts,
                         temperature=temps, target_accept=target, generator=generator,
                         fresh=fresh, check_every=plan.check_every,
                         on_nonfinite=plan.on_nonfinite, record=return_info, thin=plan.thin,
                         batch_size=plan.batch_size, progress=bar, shard=shard)
    finally:
        if bar is not None:
            bar.close()
    samples = result.state.x
    if not return_info:
        return samples
    return samples, _info(result, plan, seed, temps)


def _shard(n: int) -> Optional[Shard]:
    """This process's block of the ``n`` chains, or None without a multi-process group."""
    from ..training.distributed import all_gather_rows, current, shard_bounds

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



# ----------------------------------------------------------------------------- tensors
def _device_dtype(energy, init, device) -> tuple[torch.device, torch.dtype]:
    params = list(energy.parameters())[:1] if isinstance(energy, nn.Module) else []
    if isinstance(init, Tensor):
        ref_device, dtype = init.device, init.dtype
    elif isinstance(init, ReplayBuffer):
        ref_device, dtype = init.samples.device, init.samples.dtype
    elif params:
        ref_device, dtype = params[0].device, params[0].dtype
    else:
        ref_device, dtype = torch.device("cpu"), torch.get_default_dtype()
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return (torch.device(device) if device is not None else ref_device), dtype


def _resolve_shape(energy, shape, init, n: int) -> tuple[int, ...]:
    declared = getattr(energy, "sample_shape", None)
    if shape is None:
        shape = declared
    if shape is None and isinstance(init, ReplayBuffer):
        shape = init.shape
    if shape is None and isinstance(init, Tensor):
        if init.dim() < 1 or init.shape[0] != n:
            raise ValueError(f"cannot tell the sample shape: give shape=, or init of shape "
                             f"[n={n}, ...] (got {list(init.shape)})")
        shape = tuple(init.shape[1:])
    if shape is None:
        raise ValueError("give shape= (one sample's shape, e.g. shape=(2,)), init=, or an "
                         "energy with a sample_shape attribute")
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of integers, got {shape!r}") from None
    if any(s < 1 for s in shape):
        raise ValueError(f"shape must contain positive sizes, got {shape}")
    return shape


def _broadcasts_to(small, shape) -> bool:
    try:
        return torch.broadcast_shapes(small, shape) == shape
    except RuntimeError:
        return False


def _resolve_bounds(bounds, shape, device, dtype) -> Optional[Bounds]:
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (low, high), got {bounds!r}")
    sides = []
    for name, side in zip(("low", "high"), bounds):
        if isinstance(side, Tensor):
            side = side.to(device=device, dtype=dtype)
            if not _broadcasts_to(side.shape, shape):
                raise ValueError(f"bounds: {name} of shape {list(side.shape)} does not "
                                 f"broadcast to one sample's shape {list(shape)}")
            if torch.isnan(side).any():
                raise ValueError(f"bounds: {name} contains NaN")
        else:
            side = float(side)
            if math.isnan(side):
                raise ValueError(f"bounds: {name} is NaN")
        sides.append(side)
    low, high = sides
    if not bool(torch.all(torch.as_tensor(low) < torch.as_tensor(high))):
        raise ValueError(f"bounds must satisfy low < high everywhere, got {bounds!r}")
    return Bounds(low, high)


def _resolve_mask(mask, shape, device) -> Optional[Tensor]:
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = free, False = fixed), got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if not _broadcasts_to(mask.shape, shape):
        raise ValueError(f"mask of shape {list(mask.shape)} must broadcast to one sample's "
                         f"shape {list(shape)}")
    return mask.to(device)


def _noise(energy, box: Optional[Bounds], shape, device, dtype,
           generator) -> Callable[[int], Tensor]:
    """Fresh starting points: the energy's own init_samples, else uniform in finite bounds,
    else N(0, I)."""
    own = getattr(energy, "init_samples", None)
    finite = box is not None and all(bool(torch.isfinite(torch.as_tensor(s)).all())
                                     for s in box)

    def noise(k: int) -> Tensor:
        if own is not None:
            x = own(k, generator, device)
            if not isinstance(x, Tensor) or tuple(x.shape) != (k, *shape):
                raise ValueError(f"energy.init_samples({k}, generator, device) must return a "
                                 f"tensor of shape {[k, *shape]}, got "
                                 f"{list(getattr(x, 'shape', []))}")
            x = x.to(device=device, dtype=dtype)
        elif finite:
            u = torch.rand((k, *shape), generator=generator, device=device, dtype=dtype)
            return box.low + (box.high - box.low) * u
        else:
            x = torch.randn((k, *shape), generator=generator, device=device, dtype=dtype)
        return x if box is None else box.clamp(x)
    return noise


def _resolve_init(init, n: int, shape, box: Optional[Bounds], noise, generator, device,
                  dtype) -> Tensor:
    if init is None:
        return noise(n)
    if isinstance(init, ReplayBuffer):
        if init.samples.device != device:
            raise ValueError(f"init buffer lives on {init.samples.device}; sample on that device "
                             f"(device={str(device)!r} was asked for)")
        if init.shape != shape:
            raise ValueError(f"init buffer holds samples of shape {list(init.shape)}, the "
                             f"sample shape is {list(shape)}")
        x = init.sample(n, generator).to(device=device, dtype=dtype)
    elif isinstance(init, Tensor):
        if tuple(init.shape) == (n, *shape):
            x = init
        elif tuple(init.shape) in (tuple(shape), (1, *shape)):
            x = init.reshape(1, *shape).expand(n, *shape)
        else:
            raise ValueError(f"init must have shape [n, *shape] = {[n, *shape]} (or one "
                             f"sample's shape {list(shape)}), got {list(init.shape)}")
        x = x.detach().to(device=device, dtype=dtype).clone()
    else:
        raise TypeError(f"init must be a tensor or a ReplayBuffer, got {type(init).__name__}")
    if box is not None:
        below = int((x < box.low).sum())
        above = int((x > box.high).sum())
        if below or above:
            parts = []
            if below:
                parts.append(f"{below} values below the lower bound {_show(box.low)}")
            if above:
                parts.append(f"{above} values above the upper bound {_show(box.high)}")
            raise ValueError(f"init has {' and '.join(parts)} (of {x.numel()}); clamp it into "
                             f"the bounds or widen them")
    return x


def _show(side) -> str:
    return repr(side) if not isinstance(side, Tensor) else f"tensor of shape {list(side.shape)}"


def _resolve_temperature(temperature, steps: int, device) -> Tensor:
    if callable(temperature):
        values = torch.tensor([float(temperature(t)) for t in range(steps)], dtype=torch.float64)
    elif isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        values = torch.tensor(float(temperature), dtype=torch.float64)
    elif isinstance(temperature, (Sequence, Tensor)) and not isinstance(temperature, str):
        values = torch.as_tensor(temperature, dtype=torch.float64).detach().cpu()
        if values.shape != (steps,):
            raise ValueError(f"a temperature schedule needs one value per step ({steps}), got "
                             f"shape {list(values.shape)}")
    else:
        raise TypeError(f"temperature must be a number, a per-step sequence or a callable "
                        f"step -> T, got {type(temperature).__name__}")
    if not bool(torch.all(torch.isfinite(values) & (values > 0))):
        raise ValueError(f"temperature must be finite and > 0 at every step, got {temperature!r}")
    return values.to(device)


def _resolve_step_size(step_size, n: int, device, dtype) -> Tensor:
    if isinstance(step_size, Tensor):
        s = step_size.detach().to(device=device, dtype=dtype).reshape(-1)
        if s.numel() == 1:
            s = s.expand(n)
        if s.shape != (n,) or not bool(torch.all(torch.isfinite(s) & (s > 0))):
            raise ValueError(f"step_size as a tensor must hold n={n} finite values > 0 (one "
                             f"per chain), got shape {list(step_size.shape)}")
        return s.clone()
    return torch.full((n,), float(step_size), device=device, dtype=dtype)


@contextmanager
def _sampling_mode(energy) -> Iterator[None]:
    """Run an ``nn.Module`` energy (or a bound method of one) in eval mode; restore every
    submodule's training flag and any buffer the energy changed (unchanged ones are not
    touched, so their version counters — which autograd checks — stay as they were)."""
    if not isinstance(energy, nn.Module):
        energy = getattr(energy, "__self__", None)            # a bound method of a module
    if not isinstance(energy, nn.Module):
        yield
        return
    flags = [(m, m.training) for m in energy.modules()]
    saved = [(b, b._version, b.detach().clone()) for b in energy.buffers()]
    energy.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag
        with torch.no_grad():
            for buf, version, copy in saved:
                if buf._version != version:
                    buf.copy_(copy)


@contextmanager
def _deterministic(on: bool) -> Iterator[None]:
    """Deterministic algorithms (GPU reproducibility); needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
    in the environment on CUDA, as PyTorch documents."""
    if not on:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2:]
