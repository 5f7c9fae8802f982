"""A replay buffer of past samples for persistent short-run chains (Du & Mordatch 2019).

Contrastive-divergence training starts each batch of negative chains from the buffer with
probability ``1 − reinit`` (default 95 %) and from fresh noise otherwise (5 %), then pushes the
chains' end points back. The buffer is a ring of ``capacity`` samples: a push overwrites the
oldest entries. Fresh noise is uniform within ``bounds`` (default ``[0, 1]``, the range of
images) or comes from a ``noise(n, generator)`` callable. All randomness comes from the
``torch.Generator`` passed to :meth:`ReplayBuffer.sample`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """A ring buffer of samples ``[capacity, *shape]`` with 95 % replay / 5 % fresh-noise draws.

    ``push(x)`` stores the rows of ``x`` (oldest overwritten first); ``sample(n, generator)``
    returns ``n`` rows, each a uniformly chosen stored sample with probability ``1 − reinit`` and
    fresh noise otherwise (all fresh while the buffer is empty). ``state_dict()`` /
    ``load_state_dict()`` save and restore it as plain tensors. It can be given to
    :func:`conceptalg.sample` as ``init``.

    Example:
        >>> import torch
        >>> buf = ReplayBuffer(1000, (2,), bounds=(-1.0, 1.0))
        >>> g = torch.Generator().manual_seed(0)
        >>> x = buf.sample(64, g)          # empty: all fresh noise
        >>> buf.push(x)
        >>> len(buf), buf.sample(8, g).shape
        (64, torch.Size([8, 2]))
    """

    def __init__(self, capacity: int, shape: Sequence[int], *, reinit: float = 0.05,
                 bounds: Optional[tuple[float, float]] = (0.0, 1.0),
                 noise: Optional[Callable[[int, torch.Generator], Tensor]] = None,
                 device: Optional[torch.device | str] = None,
                 dtype: torch.dtype = torch.float32) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer ≥ 1, got {capacity!r}")
        if isinstance(reinit, bool) or not isinstance(reinit, (int, float)) \
                or not 0.0 <= reinit <= 1.0:
            raise ValueError(f"reinit must be a probability in [0, 1], got {reinit!r}")
        if noise is None and bounds is None:
            raise ValueError("give bounds=(low, high) for uniform fresh noise, or noise=callable")
        if bounds is not None and not (len(bounds) == 2 and float(bounds[0]) < float(bounds[1])):
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
        self.capacity = capacity
        self.shape = tuple(int(s) for s in shape)
        self.reinit = float(reinit)
        self.bounds = None if bounds is None else (float(bounds[0]), float(bounds[1]))
        self.noise = noise
        self.samples = torch.empty((capacity, *self.shape), device=device, dtype=dtype)
        self._size = 0
        self._next = 0

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (f"ReplayBuffer(capacity={self.capacity}, shape={self.shape}, "
                f"reinit={self.reinit}, size={self._size})")

    def fresh(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` samples of fresh noise ``[n, *shape]``."""
        if self.noise is not None:
            return self.noise(n, generator).to(self.samples)
        low, high = self.bounds
        u = torch.rand((n, *self.shape), generator=generator, dtype=self.samples.dtype,
                       device=self.samples.device)
        return low + (high - low) * u

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` starting points: stored samples with probability ``1 − reinit``, else noise.

        Draws, in order: ``n`` indices, ``n`` uniforms, then the fresh noise.
        """
        if self._size == 0:
            return self.fresh(n, generator)
        dev = self.samples.device
        index = torch.randint(self._size, (n,), generator=generator, device=dev)
        from_noise = torch.rand(n, generator=generator, device=dev) < self.reinit   # [n]
        noise_rows = self.fresh(n, generator)
        keep = from_noise.view(n, *([1] * len(self.shape)))
        return torch.where(keep, noise_rows, self.samples[index])

    def push(self, x: Tensor) -> None:
        """Store the rows of ``x`` ``[k, *shape]`` (detached copies), overwriting the oldest."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"push: samples must have shape [k, {', '.join(map(str, self.shape))}]"
                             f", got {list(x.shape)}")
        x = x.detach().to(self.samples)[-self.capacity:]
        k = x.shape[0]
        index = (self._next + torch.arange(k, device=self.samples.device)) % self.capacity
        self.samples[index] = x
        self._next = (self._next + k) % self.capacity
        self._size = min(self.capacity, self._size + k)

    def state_dict(self) -> dict[str, Tensor]:
        """The buffer as tensors: ``samples`` (the filled rows, oldest first) — enough to
        restore it exactly with :meth:`load_state_dict`."""
        if self._size < self.capacity:
            rows = self.samples[:self._size]
        else:
            rows = torch.roll(self.samples, -self._next, dims=0)
        return {"samples": rows.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the buffer from :meth:`state_dict` (the rows are pushed oldest first)."""
        self.samples.zero_()
        self._size = self._next = 0
        self.push(state["samples"])
