"""Evaluating the leaves: one call per model (all its heads), one per function, at a noise level.

A leaf's *raw* output is what its source returns: an energy ``[B]`` (``kind="energy"``),
``log p(c|x)`` ``[B]`` (``"log_prob"``), or a score ``−∇_x E`` ``[B, *shape]`` (``"score"``).
Raw outputs land in slots ``0 .. n_leaves − 1``, the base ``E_0`` (when the plan uses it) in
slot ``n_leaves``. A σ-aware source (:func:`conceptalg.library.accepts_sigma`) also receives
``sigma=s`` with ``s[B]``; the others never see it. The grouping is decided once, at
construction (:func:`plan_calls`); a :class:`Call` only moves tensors.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CompileError
from ..heads import Head
from .leaves import Leaf

__all__ = ["Call", "plan_calls", "as_sigma"]


class Call:
    """One evaluation of one source: a batched model call for several heads, or one function.

    ``method`` is ``concept_energies`` or ``concept_scores`` for a model, ``None`` for a
    function; ``sigma_aware`` says whether the source is passed ``sigma=``. ``args`` names, per
    head, the buffer of its parametric arguments on the module that runs the call (``None``:
    none); ``outs`` are the raw slots it fills.
    """

    __slots__ = ("source", "method", "heads", "args", "outs", "any_args", "sigma_aware",
                 "scores")

    def __init__(self, head: Head, heads, args, outs):
        self.source, self.method, self.heads = head.source, head.method, tuple(heads)
        self.args, self.outs = tuple(args), tuple(outs)
        self.any_args = any(a is not None for a in args)
        self.sigma_aware, self.scores = head.sigma_aware, head.kind == "score"

    @property
    def batched(self) -> bool:
        return self.method is not None

    def __call__(self, module: nn.Module | None, x: Tensor, sigma: Tensor | None,
                 raw: list) -> None:
        B = x.shape[0]
        args = [None if a is None else
                module.get_buffer(a).to(device=x.device, dtype=x.dtype).expand(B, -1)
                for a in self.args]  # type: ignore[union-attr]
        kw = {"sigma": sigma} if self.sigma_aware else {}
        if self.method is not None:
            fn = getattr(self.source, self.method)
            heads = list(self.heads)
            out = fn(x, heads, args, **kw) if self.any_args else fn(x, heads, **kw)
            want = (B, len(heads), *x.shape[1:]) if self.scores else (B, len(heads))
            if out.shape != want:
                raise CompileError(f"{type(self.source).__name__}.{self.method} returned shape "
                                   f"{tuple(out.shape)} for {len(heads)} heads on a batch of "
                                   f"{B}; expected {want}")
            for j, slot in enumerate(self.outs):
                raw[slot] = out[:, j]  # [B] (scores: [B, *shape])
            return
        out = self.source(x, **kw) if args[0] is None else self.source(x, args[0], **kw)
        if out.dim() == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != (B,):
            name = getattr(self.source, "__qualname__", type(self.source).__name__)
            raise CompileError(f"the energy of {self.heads[0]} ({name}) returned shape "
                               f"{tuple(out.shape)} on a batch of {B}; expected ({B},)")
        raw[self.outs[0]] = out


def plan_calls(leaves: tuple[Leaf, ...], base: Head | None
               ) -> tuple[tuple[Call, ...], tuple[nn.Module, ...], tuple[tuple[str, tuple], ...]]:
    """Group the leaf evaluations: one call per (model, method) for all its heads, one per
    function. Returns the calls, the ``nn.Module`` sources, and the parametric arguments as
    ``(buffer name, args)`` pairs: the module that runs the calls keeps each as a float64
    buffer named ``_leaf_args_<slot>`` (so ``.to(device)`` moves them)."""
    heads: list[Head] = [leaf.head for leaf in leaves] + ([base] if base is not None else [])
    groups: dict[tuple, list] = {}  # (id(source), method) -> [(head, arg buffer, raw slot)]
    calls, modules, buffers = [], [], []
    for slot, head in enumerate(heads):
        arg = None
        if slot < len(leaves) and leaves[slot].args is not None:
            arg = f"_leaf_args_{slot}"
            buffers.append((arg, leaves[slot].args))
        if isinstance(head.source, nn.Module) and all(head.source is not m for m in modules):
            modules.append(head.source)
        if head.batched:
            groups.setdefault((id(head.source), head.method), []).append((head, arg, slot))
        else:
            calls.append(Call(head, [head.key], [arg], [slot]))
    for members in groups.values():
        calls.append(Call(members[0][0], [h.head for h, _, _ in members],
                          [a for _, a, _ in members], [s for _, _, s in members]))
    return tuple(calls), tuple(modules), tuple(buffers)


def evaluate_head(head: Head, x: Tensor, sigma: Tensor | None = None) -> Tensor:
    """One energy head on its own, at temperature 1 (for calibrate; forward batches heads)."""
    raw: list = [None]
    Call(head, [head.head if head.batched else head.key], [None], [0])(None, x, sigma, raw)
    return raw[0] / head.temperature


def as_sigma(sigma: Any, x: Tensor) -> Tensor:
    """The noise level as a ``[B]`` tensor of ``x``'s dtype and device (``None`` → zeros).

    ``sigma`` is a number or a tensor ``[B]`` (or 0-d); it must be finite and ≥ 0, else
    :class:`ValueError`. Checking a tensor's values costs one host sync (skipped while
    ``torch.compile`` traces); a number costs none.

    Example:
        >>> as_sigma(0.5, torch.zeros(3, 2))
        tensor([0.5000, 0.5000, 0.5000])
    """
    B = x.shape[0]
    if sigma is None:
        return x.new_zeros(B)
    if isinstance(sigma, Tensor):
        if sigma.dim() == 0:
            sigma = sigma.expand(B)
        elif tuple(sigma.shape) != (B,):
            raise ValueError(f"sigma must be a number or a tensor [B] with B = {B} (one noise "
                             f"level per sample), got a tensor of shape {tuple(sigma.shape)}")
        if sigma.is_complex() or sigma.dtype == torch.bool:
            raise ValueError(f"sigma must be a real noise level, got a {sigma.dtype} tensor")
        s = sigma.to(device=x.device, dtype=x.dtype)
        if not torch.compiler.is_compiling() and not bool(((s >= 0) & torch.isfinite(s)).all()):
            bad = sigma[~((sigma >= 0) & torch.isfinite(sigma))]
            raise ValueError(f"sigma must be finite and >= 0 (a noise level in data units), got "
                             f"{bad.numel()} bad value(s), e.g. {float(bad[0])!r}")
        return s
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise ValueError(f"sigma must be a number or a tensor [B] (a noise level), got "
                         f"{sigma!r}")
    value = float(sigma)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"sigma must be finite and >= 0 (a noise level in data units), "
                         f"got {value!r}")
    return x.new_full((B,), value)
