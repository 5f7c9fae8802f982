"""Turning the tensor arguments of a ``sample()`` call into checked tensors.

Device and dtype, one sample's shape, bounds, mask, the starting points (``init``, the energy's
own ``init_samples``, uniform within finite bounds, standard normal — or, with noise levels,
``centre + σ₀ ξ``), temperature schedules and per-chain step sizes; and the two context managers
a run executes in (the energy in ``eval()`` mode with its module state restored; deterministic
algorithms on request). Everything here runs once per call, never per step.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .base import Bounds
from .buffer import ReplayBuffer

__all__ = ["device_dtype", "resolve_shape", "broadcasts_to", "resolve_bounds", "resolve_mask",
           "default_noise", "data_centre", "resolve_init", "resolve_temperature",
           "resolve_step_size", "sampling_mode", "deterministic_mode"]


def device_dtype(energy, init, device) -> tuple[torch.device, torch.dtype]:
    first = next(energy.parameters(), None) if isinstance(energy, nn.Module) else None
    if isinstance(init, Tensor):
        ref_device, dtype = init.device, init.dtype
    elif isinstance(init, ReplayBuffer):
        ref_device, dtype = init.samples.device, init.samples.dtype
    elif first is not None:
        ref_device, dtype = first.device, first.dtype
    else:
        ref_device, dtype = torch.device("cpu"), torch.get_default_dtype()
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return (torch.device(device) if device is not None else ref_device), dtype


def resolve_shape(energy, shape, init, n: int) -> tuple[int, ...]:
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


def broadcasts_to(small, shape) -> bool:
    try:
        return torch.broadcast_shapes(small, shape) == shape
    except RuntimeError:
        return False


def resolve_bounds(bounds, shape, device, dtype) -> Optional[Bounds]:
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (low, high), got {bounds!r}")
    sides = []
    for name, side in zip(("low", "high"), bounds):
        if isinstance(side, Tensor):
            side = side.to(device=device, dtype=dtype)
            if not broadcasts_to(side.shape, shape):
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


def resolve_mask(mask, shape, device) -> Optional[Tensor]:
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = free, False = fixed), got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if not broadcasts_to(mask.shape, shape):
        raise ValueError(f"mask of shape {list(mask.shape)} must broadcast to one sample's "
                         f"shape {list(shape)}")
    return mask.to(device)


def default_noise(energy, box: Optional[Bounds], shape, device, dtype,
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


def data_centre(energy, box: Optional[Bounds], shape, device, dtype) -> Union[float, Tensor]:
    """Where noise-level sampling starts its chains, ``x₀ = centre + σ₀ ξ``: the energy's
    ``data_mean`` (a number or a tensor broadcastable to one sample), else the midpoint of
    finite bounds, else 0.

    Example:
        >>> import torch
        >>> data_centre(lambda x: x.sum(1), Bounds(0.0, 1.0), (2,), "cpu", torch.float32)
        tensor(0.5000)
    """
    mean = getattr(energy, "data_mean", None)
    if mean is not None:
        if isinstance(mean, bool) or not isinstance(mean, (int, float, Tensor)):
            raise ValueError(f"energy.data_mean must be a number or a tensor broadcastable to "
                             f"one sample, got {type(mean).__name__}")
        centre = torch.as_tensor(mean).detach().to(device=device, dtype=dtype)
        if not broadcasts_to(centre.shape, tuple(shape)):
            raise ValueError(f"energy.data_mean of shape {list(centre.shape)} does not "
                             f"broadcast to one sample's shape {list(shape)}")
        if not bool(torch.isfinite(centre).all()):
            raise ValueError("energy.data_mean must be finite")
        return centre
    if box is not None:
        mid = (torch.as_tensor(box.low, dtype=dtype, device=device)
               + torch.as_tensor(box.high, dtype=dtype, device=device)) / 2
        if bool(torch.isfinite(mid).all()):
            return mid
    return 0.0


def resolve_init(init, n: int, shape, box: Optional[Bounds], noise, generator, device,
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


def resolve_temperature(temperature, steps: int, device) -> Tensor:
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        value = float(temperature)                       # one number: checked without tensors
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"temperature must be finite and > 0 at every step, got "
                             f"{temperature!r}")
        return torch.tensor(value, dtype=torch.float64, device=device)
    if callable(temperature):
        values = torch.tensor([float(temperature(t)) for t in range(steps)], dtype=torch.float64)
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


def resolve_step_size(step_size, n: int, device, dtype) -> Tensor:
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
def sampling_mode(energy) -> Iterator[None]:
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
    if any(flag for _, flag in flags):                # already all in eval mode: nothing to set
        energy.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            if module.training != flag:               # (nn.Module's setattr is not free)
                module.training = flag
        with torch.no_grad():
            for buf, version, copy in saved:
                if buf._version != version:
                    buf.copy_(copy)


@contextmanager
def deterministic_mode(on: bool) -> Iterator[None]:
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
