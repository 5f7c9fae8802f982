"""Multi-process training and sampling with ``torch.distributed`` (docs/design.md §6).

``torchrun --nproc_per_node=N`` (or any launcher that sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) starts N copies of the same command;
:func:`from_environment` joins them into one process group — gloo on CPU, NCCL on GPU, each
process on ``cuda:LOCAL_RANK`` — with a timeout, so a process that dies or stalls ends the
others with a :class:`DistributedError` instead of a hang. A single process (no ``WORLD_SIZE``,
or ``WORLD_SIZE=1``) gets ``None`` and runs exactly as without torchrun.

How the trainer uses a group (:class:`~conceptalg.training.Trainer`): every rank trains on its
own batch of ``batch_size`` samples (the global batch is ``batch_size × world_size``; the
learning rate is not rescaled) drawn with its own generator, seeded by :func:`rank_seed`; it keeps
its own replay buffers and its own chains; DistributedDataParallel averages the gradients, so
the weights stay identical. Rank 0 logs, writes metrics and checkpoints; checkpoints gather every
rank's buffers and generator (:func:`gather_to_main`). :func:`check_same_setup` compares a hash of
every rank's configuration at start, so ranks started with different arguments fail with a
``ValueError`` on every rank rather than training on silently.

Sharded sampling (``sample(..., distributed=True)``) splits the chains into contiguous blocks
(:func:`shard_bounds`) and gathers them back in order (:func:`all_gather_rows`).
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import ConceptAlgError

__all__ = ["Distributed", "DistributedError", "DEFAULT_TIMEOUT", "from_environment", "current",
           "shutdown", "rank_seed", "shard_bounds", "check_same_setup", "gather_to_main",
           "all_gather_rows", "broadcast_int", "guard", "redeal"]

DEFAULT_TIMEOUT = 600.0
"""Seconds a process waits for the others (at start-up and in every collective) before failing."""


class DistributedError(ConceptAlgError, RuntimeError):
    """A multi-process run could not start or lost a process: a peer died, stalled past the
    timeout, or could not be reached. The message names this rank and what it was waiting for;
    the cause is usually in the log of another rank."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in a multi-process run: ``rank`` of ``world_size`` (``local_rank``
    on its node), the ``backend`` (``"gloo"`` or ``"nccl"``), the ``device`` it computes on and
    the ``timeout`` (seconds; ``None`` when the group was started by someone else).

    Example:
        >>> ctx = from_environment()  # under torchrun --nproc_per_node=2  # doctest: +SKIP
        >>> ctx.rank, ctx.world_size, ctx.is_main  # doctest: +SKIP
        (1, 2, False)
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    timeout: float | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"the environment variable {name}={text!r} is not an integer; "
                               f"start the processes with torchrun") from None


def _device_for(device: str | torch.device | None, local_rank: int) -> torch.device:
    """``None`` → CPU; ``"cuda"`` → this process's GPU ``cuda:LOCAL_RANK``; an index is kept."""
    device = torch.device(device or "cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def from_environment(device: str | torch.device | None = None, *,
                     timeout: float = DEFAULT_TIMEOUT) -> Distributed | None:
    """Join the process group torchrun describes in the environment, or return ``None`` for a
    single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``).

    ``device``: ``None``/``"cpu"`` (gloo) or ``"cuda"`` (NCCL, this process on
    ``cuda:LOCAL_RANK``). ``timeout`` (seconds) bounds the wait for the other processes at
    start-up and in every later collective. If a group is already initialised it is used as is.
    Raises :class:`DistributedError` when the others do not show up in time.

    Example:
        >>> ctx = from_environment("cuda", timeout=300)  # doctest: +SKIP
        >>> trainer = Trainer(data, device=ctx.device if ctx else None)  # doctest: +SKIP
    """
    if dist.is_available() and dist.is_initialized():
        return current(device)
    world = _env_int("WORLD_SIZE")
    if world is None or world == 1:
        return None
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None:
        raise DistributedError(f"WORLD_SIZE={world} is set but RANK is not; start the processes "
                               f"with torchrun (it sets both)")
    if not dist.is_available():
        raise DistributedError("this build of torch has no torch.distributed; it cannot run "
                               f"{world} processes")
    local_rank = rank if local_rank is None else local_rank
    device = _device_for(device, local_rank)
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout))
    except RuntimeError as e:  # DistStoreError (timeout), DistNetworkError (address), ...
        raise DistributedError(
            f"rank {rank} of {world} could not start the process group ({backend} via {where}) "
            f"within {timeout:g} s: {e}. Another process probably failed before joining (its "
            f"log shows why), or the address or port is wrong or blocked") from e
    return Distributed(rank, world, local_rank, backend, device, float(timeout))


def current(device: str | torch.device | None = None) -> Distributed | None:
    """The initialised default process group as a :class:`Distributed`, or ``None`` when there
    is none or it has a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    local_rank = _env_int("LOCAL_RANK")
    rank = dist.get_rank()
    local_rank = rank if local_rank is None else local_rank
    return Distributed(rank, dist.get_world_size(), local_rank, dist.get_backend(),
                       _device_for(device, local_rank))


def shutdown(*, wait: bool = True) -> None:
    """Leave the process group (if one is initialised); call it once at the end of a run.

    ``wait=True`` (a normal end) first meets the other ranks at a barrier, so that no process
    tears down its connections while another is still finishing a collective over them; after
    a failure pass ``wait=False`` (the others may be gone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait and dist.get_world_size() > 1:
        try:
            dist.barrier()
        except RuntimeError:  # a peer is gone: nothing left to wait for
            pass
    # Free unreachable DDP wrappers now: gloo work they hold must not outlive the group into
    # interpreter exit, where its destruction can abort the process.
    gc.collect()
    dist.destroy_process_group()


@contextmanager
def guard(ctx: Distributed, what: str) -> Iterator[None]:
    """Turn a failed collective into a :class:`DistributedError` that says which rank was doing
    what, and the usual causes (conceptalg's own errors pass through unchanged)."""
    try:
        yield
    except ConceptAlgError:
        raise
    except RuntimeError as e:
        limit = f"the timeout of {ctx.timeout:g} s" if ctx.timeout else "the group's timeout"
        raise DistributedError(
            f"{ctx.describe()} failed while {what}: {e}. Another process probably stopped (its "
            f"log shows why) or fell behind by more than {limit}") from e


# --- seeds and shards ----------------------------------------------------------------------

def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s generator: ``seed`` itself on rank 0 (so a one-process run is
    the plain run), and for other ranks 32 bits of SHA-256 of ``(seed, rank)`` — unrelated to
    the streams of neighbouring seeds (a CPU generator keeps only 32 bits of its seed, so
    ``seed + rank`` would replay seed ``seed + 1``'s stream on rank 1).

    Example:
        >>> rank_seed(7, 0), rank_seed(7, 1) == rank_seed(8, 0)
        (7, False)
    """
    if rank == 0:
        return int(seed)
    digest = hashlib.sha256(f"conceptalg seed {int(seed)} rank {int(rank)}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def shard_bounds(n: int, world_size: int) -> list[int]:
    """Boundaries of ``world_size`` contiguous blocks of ``n`` rows, as even as possible: rank
    ``r`` holds rows ``b[r]:b[r + 1]``.

    Example:
        >>> shard_bounds(7, 2), shard_bounds(6, 3)
        ([0, 3, 7], [0, 2, 4, 6])
    """
    return [(n * r) // world_size for r in range(world_size + 1)]


def redeal(parts: list[Tensor], rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s share of buffers ``parts`` (each oldest first): all rows merged by
    relative age (stable, so ties keep rank order), then every ``world_size``-th row: how a
    run resumed on another number of processes shares out the saved replay buffers.

    Example:
        >>> parts = [torch.tensor([[1.], [2.]]), torch.tensor([[10.], [20.]])]
        >>> redeal(parts, 0, 1)[:, 0].tolist()
        [1.0, 10.0, 2.0, 20.0]
    """
    ages = torch.cat([torch.arange(1, len(p) + 1, dtype=torch.float64) / max(len(p), 1)
                      for p in parts])                                   # (0, 1], 1 = newest
    merged = torch.cat(parts)[torch.argsort(ages, stable=True)]
    return merged[rank::world_size]


# --- collectives -----------------------------------------------------------------------------

def _comm_device(t: Tensor) -> torch.device:
    """NCCL moves CUDA tensors only; gloo any CPU tensor."""
    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device


def _all_gather_flat(t: Tensor) -> list[Tensor]:
    """All-gather 1-D tensors of any lengths (same dtype): each rank's tensor, in rank order."""
    device = _comm_device(t)
    t = t.to(device).reshape(-1)
    world = dist.get_world_size()
    size = torch.tensor([t.numel()], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    padded = torch.zeros(max(max(counts), 1), dtype=t.dtype, device=device)
    padded[:t.numel()] = t
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return [p[:c] for p, c in zip(parts, counts)]


def all_gather_rows(t: Tensor, bounds: list[int]) -> Tensor:
    """Concatenate every rank's rows in rank order: rank ``r`` passes its block ``t`` of
    ``bounds[r + 1] − bounds[r]`` rows ``[k, ...]``; every rank gets ``[bounds[-1], ...]``
    on ``t``'s device (padded to the largest block for the collective).

    Example:
        >>> full = all_gather_rows(x[b[rank]:b[rank + 1]], b)  # doctest: +SKIP
    """
    world = dist.get_world_size()
    counts = [bounds[r + 1] - bounds[r] for r in range(world)]
    device = _comm_device(t)
    padded = torch.zeros((max(max(counts), 1), *t.shape[1:]), dtype=t.dtype, device=device)
    padded[:t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(t.device)


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every rank of the default group."""
    t = torch.tensor([int(value)], dtype=torch.int64)
    t = t.to(_comm_device(t))
    dist.broadcast(t, src=0)
    return int(t)


def gather_to_main(tensors: dict[str, Tensor], ctx: Distributed) -> list[dict[str, Tensor]] | None:
    """Every rank's ``tensors`` (the same keys on every rank; any shapes) on rank 0, as a list
    indexed by rank, on the CPU; ``None`` on the other ranks. Nothing is pickled."""
    gathered: list[dict[str, Tensor]] = [{} for _ in range(ctx.world_size)]
    for key in sorted(tensors):
        t = tensors[key].detach()
        shape = torch.tensor(list(t.shape), dtype=torch.int64)
        shapes = _all_gather_flat(shape)
        parts = _all_gather_flat(t.reshape(-1))
        if ctx.is_main:
            for r, (p, s) in enumerate(zip(parts, shapes)):
                gathered[r][key] = p.cpu().reshape(s.tolist())
    return gathered if ctx.is_main else None


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def check_same_setup(setup: dict[str, Any], ctx: Distributed) -> None:
    """Raise ``ValueError`` on every rank unless all ranks pass the same ``setup`` (a JSON-able
    dict: configuration, data description). Costs one small all-gather (a SHA-256 per rank);
    only on a mismatch are the set-ups themselves exchanged, to name the differing fields."""
    text = json.dumps(setup, sort_keys=True, default=str)
    digest = torch.frombuffer(bytearray(hashlib.sha256(text.encode()).digest()), dtype=torch.uint8)
    digests = _all_gather_flat(digest)
    if all(torch.equal(d, digests[0]) for d in digests):
        return
    texts = [bytes(t.cpu().tolist()).decode() for t in
             _all_gather_flat(torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8))]
    reference = _flatten(json.loads(texts[0]))
    lines = []
    for r, other in enumerate(texts[1:], start=1):
        mine = _flatten(json.loads(other))
        keys = sorted(k for k in set(reference) | set(mine) if reference.get(k) != mine.get(k))
        if keys:
            shown = ", ".join(f"{k} = {mine.get(k)!r} (rank 0: {reference.get(k)!r})"
                              for k in keys[:6])
            lines.append(f"rank {r}: {shown}{', ...' if len(keys) > 6 else ''}")
    raise ValueError(f"{ctx.describe()}: the {ctx.world_size} processes were started with "
                     f"different training set-ups; every rank must run the same command with the "
                     f"same data. Differences: {'; '.join(lines)}")
