"""Sampling a mixture ``Σ_n π_n p_n``: a branch per chain, then each branch on its own energy.

A *mixture energy* carries ``branches`` (energies, one per component ``p_n ∝ exp(−E_n)``) and
``branch_weights`` (``π``, summing to 1) — :class:`conceptalg.compiler.MixtureEnergy`, the OR of
a score-only model. :func:`sample_mixture` draws from a CPU generator seeded with ``seed`` — so
the draw is the same on every device — the branch of every chain, ``b_i ~ Categorical(π)``,
then one seed per branch. Branch ``n``'s chains, in chain order, are sampled by one ``sample()``
call on ``E_n`` with the call's settings and that seed; per-chain arguments (an ``init`` or a
``step_size`` with one row per chain) are split with them. The samples come back in chain
order: ``x[i]`` is a draw of branch ``b_i``. As the chains are independent, ``x`` is a sample of
the mixture whatever the kernel (with the kernel's own bias inside each branch).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from .base import require_energy_values
from .resolve import resolve_shape
from .settings import check_int, make_plan

__all__ = ["is_mixture", "sample_mixture"]


def is_mixture(energy: Any) -> bool:
    """Whether ``energy`` is a mixture of branches (``branches`` and ``branch_weights``).

    Example:
        >>> class Two:
        ...     branches, branch_weights = (abs, abs), (0.5, 0.5)
        >>> is_mixture(Two()), is_mixture(abs)
        (True, False)
    """
    return (getattr(energy, "branches", None) is not None
            and getattr(energy, "branch_weights", None) is not None)


def sample_mixture(draw: Callable, energy: Any, n: int, *, shape: Any, init: Any,
                   step_size: Any, seed: int | None, distributed: bool, return_info: bool,
                   sampler: Any, steps: Any, warmup: Any, noise_scale: Any, temperature: Any,
                   sigmas: Any, bounds: Any, device: Any, progress: Any,
                   options: dict[str, Any]) -> Any:
    """``n`` chains of the mixture ``energy`` (module docstring); ``draw`` is
    :func:`conceptalg.sample`, called once per branch that has chains. Every branch's settings
    are checked before any chain runs, so an error does not depend on the draw. With
    ``return_info`` the info has ``"branch"`` (``[n]``, each chain's branch), ``"branches"``,
    ``"branch weights"``, ``"branch counts"``, ``"branch seeds"`` and ``"branch info"`` (each
    branch's own info, ``None`` for a branch no chain drew).
    """
    check_int("n", n, 1)
    branches, weights = list(energy.branches), [float(w) for w in energy.branch_weights]
    if not branches or len(weights) != len(branches):
        raise ValueError(f"a mixture needs one weight per branch, got {len(weights)} weights for "
                         f"{len(branches)} branches")
    for branch in branches:
        plan = make_plan(branch, sampler, steps, warmup, step_size, noise_scale, temperature,
                         options, sigmas)
        require_energy_values(branch, plan.config.name)
    world = 1
    if distributed:
        from ..distributed import broadcast_int, current

        group = current()
        world = 1 if group is None else group.world_size
    if seed is None:
        seed = torch.Generator().seed() % 2 ** 63
        if world > 1:  # every process must draw the same branches
            seed = broadcast_int(seed)
    else:
        check_int("seed", seed, 0)
    shape = resolve_shape(energy, shape, init, n)
    generator = torch.Generator().manual_seed(seed)
    choice = torch.multinomial(torch.tensor(weights, dtype=torch.float64), n, replacement=True,
                               generator=generator)  # [n]
    seeds = torch.randint(0, 2 ** 62, (len(branches),), generator=generator).tolist()
    split_init = isinstance(init, Tensor) and tuple(init.shape) == (n, *shape)
    split_step = isinstance(step_size, Tensor) and step_size.numel() == n
    samples, infos = None, [None] * len(branches)
    for k, branch in enumerate(branches):
        idx = (choice == k).nonzero().flatten()  # [n_k], chain order
        if len(idx) == 0:
            continue
        out = draw(branch, len(idx), shape=shape, sampler=sampler, steps=steps, warmup=warmup,
                   noise_scale=noise_scale, temperature=temperature, sigmas=sigmas,
                   init=init[idx.to(init.device)] if split_init else init,
                   step_size=(step_size.reshape(-1)[idx.to(step_size.device)] if split_step
                              else step_size),
                   bounds=bounds, device=device, progress=progress, seed=seeds[k],
                   distributed=distributed and len(idx) >= world, return_info=return_info,
                   **options)
        if return_info:
            out, infos[k] = out
        if samples is None:
            samples = out.new_empty((n, *out.shape[1:]))
        samples[idx.to(out.device)] = out
    if not return_info:
        return samples
    return samples, _info(energy, branches, weights, choice, seeds, seed, infos)


def _info(energy, branches, weights, choice: Tensor, seeds, seed: int, infos) -> dict[str, Any]:
    counts = torch.bincount(choice, minlength=len(branches))
    info: dict[str, Any] = {
        "method": "mixture", "seed": seed, "branch": choice,
        "branches": [str(getattr(b, "expr", b)) for b in branches],
        "branch weights": weights, "branch counts": counts.tolist(), "branch seeds": seeds,
        "branch info": infos,
    }
    ran = [(i, int(c)) for i, c in zip(infos, counts) if i is not None]
    info["sampler"] = ran[0][0].get("sampler")
    if all("mean acceptance rate" in i for i, _ in ran):
        info["mean acceptance rate"] = sum(i["mean acceptance rate"] * c
                                           for i, c in ran) / len(choice)
    return info
