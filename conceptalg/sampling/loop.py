"""The run loop: a kernel for ``steps`` steps with warm-up adaptation, finiteness checks,
thinned traces, annealing and chunking.

Steps ``1 … warmup`` adapt each chain's step size by dual averaging (MH-corrected kernels) and
then freeze it; steps ``warmup + 1 … steps`` are kept (their energies go to the trace every
``thin`` steps; the returned samples are the final state).

Finiteness costs no host sync per step: every kernel reports a per-chain ``probe`` that is
non-finite exactly when an energy or gradient of the step was, the loop adds it into a
float64 accumulator (one tensor op), and reads the accumulator every ``check_every`` steps and
at the end. ``on_nonfinite="reset"`` restarts the chains found bad from fresh noise (not at the
final check: such chains have nothing finite to return, so that raises too).

Chunking (``batch_size``): each step draws the random numbers of *all* chains first, in the same
order as an unchunked step, then applies the kernel chunk by chunk; so for an energy that treats
chains independently (and computes each chain's value the same way whatever the batch size) the
result is identical to the unchunked run, bitwise on CPU. Only the energy's activations shrink.

Sharding (``shard``, for ``sample(..., distributed=True)``) is the same idea across processes:
every process draws the random numbers of *all* ``n`` chains (and runs every finiteness check
on all chains' probes, all-gathered) and advances only its own block of chains; the final state
and the traces are all-gathered in chain order. So a seed gives the same samples whatever the
number of processes — bitwise for elementwise energies, to rounding for networks.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from ..errors import SamplerError
from .adaptation import warmup_init, warmup_update
from .base import Kernel, per_chain_sum

__all__ = ["RunResult", "Shard", "run"]


class RunResult(NamedTuple):
    """What :func:`run` returns: the final ``state``; post-warm-up accept counts ``accepted``
    ``[n]`` (None for ULA or when not recording); ``energy_trace`` and ``grad_norm_trace``
    ``[T_kept, n]`` (None when not recording / gradient-free); ``resets``: chains restarted."""

    state: Any
    accepted: Optional[Tensor]
    energy_trace: Optional[Tensor]
    grad_norm_trace: Optional[Tensor]
    resets: int


class Shard(NamedTuple):
    """This process's block ``start:stop`` of ``n`` chains in a sharded run, and ``gather``:
    a function that concatenates every process's block ``[k, ...]`` into ``[n, ...]`` in chain
    order (an all-gather; every process calls it at the same points)."""

    start: int
    stop: int
    n: int
    gather: Callable[[Tensor], Tensor]


def _stand_in(state, n: int):
    """A state whose ``x`` has the shape of all ``n`` chains (a broadcast view, no copy):
    ``draw`` reads only ``x``'s shape, dtype and device."""
    x = state.x
    return state._replace(x=x[:1].expand(n, *x.shape[1:]))


def _slice(nt: NamedTuple, sl: slice) -> NamedTuple:
    return type(nt)(*(f if f.dim() == 0 else f[sl] for f in nt))


def _cat(parts: Sequence[NamedTuple]) -> NamedTuple:
    return type(parts[0])(*(fs[0] if fs[0].dim() == 0 else torch.cat(fs)
                            for fs in zip(*parts)))


def _chunks(n: int, batch_size: Optional[int]) -> Optional[list[slice]]:
    if batch_size is None or batch_size >= n:
        return None
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _init(kernel: Kernel, x: Tensor, step_size: Tensor, temperature: Tensor,
          chunks: Optional[list[slice]]):
    if chunks is None:
        return kernel.init(x, step_size, temperature)
    return _cat([kernel.init(x[sl], step_size[sl], temperature) for sl in chunks])


def _step(kernel: Kernel, generator: torch.Generator, state, chunks: Optional[list[slice]],
          shard: Optional[Shard] = None):
    if chunks is None and shard is None:
        return kernel.step(generator, state)
    if shard is None:
        noise = kernel.draw(generator, state)                 # all chains, unchunked order
    else:
        noise = kernel.draw(generator, _stand_in(state, shard.n))        # all n chains
        noise = tuple(z[shard.start:shard.stop] for z in noise)          # this block's
    if chunks is None:
        return kernel.apply(state, noise)
    parts = [kernel.apply(_slice(state, sl), tuple(z[sl] for z in noise)) for sl in chunks]
    return _cat([p[0] for p in parts]), _cat([p[1] for p in parts])


def run(kernel: Kernel, x0: Tensor, *, steps: int, warmup: int, step_size: Tensor,
        temperature: Tensor, target_accept: Optional[float], generator: torch.Generator,
        fresh: Callable[[Tensor], Tensor], check_every: int = 10, on_nonfinite: str = "raise",
        record: bool = False, thin: int = 1, batch_size: Optional[int] = None,
        progress: Any = None, shard: Optional[Shard] = None, final: bool = True) -> RunResult:
    """Run ``kernel`` from ``x0`` ``[n, *shape]`` (see the module docstring).

    ``step_size`` ``[n]`` starts each chain; ``temperature`` is 0-d, or ``[steps]`` for an
    annealing schedule; ``target_accept=None`` disables adaptation; ``fresh(index)`` returns new
    starting points for the chains ``index`` (used by ``on_nonfinite="reset"``); ``progress``
    is None or a reporter with ``update`` (:func:`conceptalg.progress.progress_bar`). With
    ``shard``, ``x0`` and ``step_size`` still hold all ``n`` chains and ``fresh`` takes global
    chain indices; this process advances rows ``start:stop`` and the result holds all chains
    again (see the module docstring). ``final=False`` (a later run
    continues these chains, as the levels of an annealed run do) lets ``"reset"`` restart
    chains at the last check too.

    Example:
        >>> import torch
        >>> from conceptalg.sampling import MALA
        >>> k = MALA().build_kernel(lambda x: 0.5 * (x ** 2).sum(1))
        >>> g = torch.Generator().manual_seed(0)
        >>> r = run(k, torch.zeros(50, 2), steps=40, warmup=20, step_size=torch.full((50,), 0.5),
        ...         temperature=torch.tensor(1.0, dtype=torch.float64), target_accept=0.574,
        ...         generator=g, fresh=lambda i: torch.randn(len(i), 2, generator=g), record=True)
        >>> r.energy_trace.shape
        torch.Size([20, 50])
    """
    n = x0.shape[0]
    if shard is not None:
        x0, step_size = x0[shard.start:shard.stop], step_size[shard.start:shard.stop]
    chunks = _chunks(x0.shape[0], batch_size)
    schedule = temperature if temperature.dim() == 1 else None
    t0 = temperature if schedule is None else schedule[0]
    checks = _Checks(kernel, n, fresh, on_nonfinite, final, check_every, steps, shard)
    state, resets = checks.start(_init(kernel, x0, step_size, t0, chunks))

    acc = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
    adapting = target_accept is not None and warmup > 0
    adapter = warmup_init(state.step_size, target_accept, warmup) if adapting else None
    traces = _Traces(state, (steps - warmup) // thin, thin) if record else None
    for t in range(steps):
        if schedule is not None:
            state = state._replace(temperature=schedule[t])
        state, info = _step(kernel, generator, state, chunks, shard)
        acc.add_(info.probe)
        if adapter is not None and t < warmup:
            prob = torch.exp(torch.clamp(info.log_accept_ratio, max=0.0)).nan_to_num_(0.0)
            adapter, eps = warmup_update(adapter, prob)
            state = state._replace(step_size=eps.to(state.step_size.dtype))
        if traces is not None and t >= warmup:
            traces.add(t - warmup, state, info)
        if (t + 1) % check_every == 0 or t + 1 == steps:
            state, count = checks(state, acc, t + 1, t + 1 == steps)
            resets += count
            acc.zero_()
        if progress is not None:
            progress.update(1)
    if shard is not None:
        state = type(state)(*(f if f.dim() == 0 else shard.gather(f) for f in state))
    kept = (None, None, None) if traces is None else traces.gathered(shard)
    return RunResult(state, *kept, resets)


class _Checks:
    """The finiteness checks of a run: read the accumulated probes, then raise, or restart the
    chains found non-finite from ``fresh`` noise (module docstring)."""

    def __init__(self, kernel: Kernel, n: int, fresh: Callable[[Tensor], Tensor],
                 on_nonfinite: str, final: bool, every: int, steps: int,
                 shard: Optional[Shard]) -> None:
        self.kernel, self.n, self.fresh, self.shard = kernel, n, fresh, shard
        self.on_nonfinite, self.final, self.every, self.steps = on_nonfinite, final, every, steps

    def start(self, state) -> tuple[Any, int]:
        """The initial state with its non-finite chains re-drawn (at most 10 times in
        ``"reset"`` mode), and the number of restarts."""
        resets = 0
        for _ in range(10):
            state, count = self(state, self.kernel.probe(state).double(), 0, False)
            resets += count
            if count == 0:
                return state, resets
        raise SamplerError(f"chains still start non-finite after 10 re-draws of fresh noise "
                           f"(step 0, {count} of {self.n} chains); check the energy")

    def __call__(self, state, acc: Tensor, step: int, last: bool) -> tuple[Any, int]:
        """Read the accumulated probes ``acc``; raise, or restart the chains found non-finite."""
        shard = self.shard
        if shard is not None:   # every process decides on all chains, so all act alike
            acc = shard.gather(acc)
        bad = ~torch.isfinite(acc)
        if not bool(bad.any()):                                         # the host sync
            return state, 0
        count = int(bad.sum())
        if self.on_nonfinite == "raise" or (last and self.final):
            raise SamplerError(_message(count, self.n, step, self.every, self.on_nonfinite,
                                        self.steps))
        index = bad.nonzero().squeeze(1)
        x_new = self.fresh(index)               # drawn for every bad chain, in every process
        if shard is not None:
            mine = (index >= shard.start) & (index < shard.stop)
            index, x_new = index[mine] - shard.start, x_new[mine]
            if index.numel() == 0:
                return state, count
        new = _init(self.kernel, x_new, state.step_size[index], state.temperature, None)
        return type(state)(*(f if f.dim() == 0 else f.index_copy(0, index, g)
                             for f, g in zip(state, new))), count


class _Traces:
    """What a recording run keeps after warm-up: accept counts, and every ``thin``-th step's
    energies and gradient norms (``[kept, k]`` for this process's ``k`` chains)."""

    def __init__(self, state, kept: int, thin: int) -> None:
        k, device, dtype = state.x.shape[0], state.x.device, state.energy.dtype
        self.k, self.thin = k, thin
        self.accepted: Optional[Tensor] = None
        self.energy = torch.empty(kept, k, dtype=dtype, device=device)
        self.has_grad = hasattr(state, "grad")
        self.grad_norm = torch.empty(kept, k, dtype=dtype, device=device) \
            if self.has_grad else None

    def add(self, m: int, state, info) -> None:
        """Step ``m`` after warm-up (0-based)."""
        if m == 0 and hasattr(info, "is_accepted"):
            self.accepted = torch.zeros(self.k, dtype=torch.int64, device=state.x.device)
        if self.accepted is not None:
            self.accepted += info.is_accepted
        if (m + 1) % self.thin == 0:
            self.energy[(m + 1) // self.thin - 1] = state.energy
            if self.has_grad:
                self.grad_norm[(m + 1) // self.thin - 1] = \
                    per_chain_sum(state.grad.square()).sqrt()

    def gathered(self, shard: Optional[Shard]) -> tuple:
        """``(accepted, energy trace, gradient-norm trace)`` of all chains."""
        accepted, trace, grad_trace = self.accepted, self.energy, self.grad_norm
        if shard is not None:
            accepted = None if accepted is None else shard.gather(accepted)
            trace = shard.gather(trace.T).T.contiguous()
            grad_trace = None if grad_trace is None else \
                shard.gather(grad_trace.T).T.contiguous()
        return accepted, trace, grad_trace


def _message(count: int, n: int, step: int, every: int, mode: str, steps: int) -> str:
    if step == 0:
        return (f"{count} of {n} chains start with a non-finite energy or gradient (step 0, "
                f"the initial state); check init and the energy")
    first = max(1, step - every + 1) if step % every == 0 else step - step % every + 1
    where = f"at step {step}" if first == step else f"between steps {first} and {step}"
    text = (f"{count} of {n} chains went non-finite (NaN or infinite energy or gradient) "
            f"{where}; finiteness is checked every {every} steps (check_every={every}), and at "
            f"the end (step {steps}); check_every=1 finds the exact step. ")
    if mode == "reset":
        return text + ("With on_nonfinite='reset' chains are restarted only before the last "
                       "check, so these have no finite sample to return: lower the step size "
                       "or run more steps.")
    return text + ("Lower the step size, check the energy, or pass on_nonfinite='reset' to "
                   "restart only those chains from fresh noise.")
