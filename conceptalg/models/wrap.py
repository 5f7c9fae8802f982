"""Any classifier is an energy-based model (JEM, Grathwohl et al. 2020).

A classifier with logits ``f(x)[y]`` defines ``p(y|x) = softmax(f(x))[y]`` and an unconditional
energy ``E_0(x) = −logsumexp_y f(x)[y]``; then ``E_y(x) = E_0(x) − log p(y|x) = −f(x)[y]``.
:class:`ClassifierConcepts` wraps such a module as a concept library whose heads are classifier
heads, so every semantics works, including ``semantics="logic"``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .model import BASE

__all__ = ["ClassifierConcepts"]


class ClassifierConcepts(nn.Module):
    """Wrap ``classifier`` (``x -> logits[B, V]``, or a dict ``factor -> logits``) as concepts.

    ``classes`` names the logits' columns: a list (one factor, called ``factor``) or a mapping
    factor → names (the classifier must then return a dict). The base energy is JEM's
    ``−logsumexp`` of ``base_factor``'s logits (default: the first factor).

    Example:
        >>> net = nn.Linear(2, 3)
        >>> concepts = ClassifierConcepts(net, ["red", "green", "blue"], factor="color")
        >>> import conceptalg
        >>> energy = conceptalg.compose("red | ~blue", concepts, semantics="logic")
        >>> energy(torch.zeros(4, 2)).shape
        torch.Size([4])
    """

    def __init__(self, classifier: nn.Module, classes: Sequence[str] | Mapping[str, Sequence[str]],
                 *, factor: str = "class", base_factor: str | None = None,
                 sample_shape: Sequence[int] | None = None,
                 bounds: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.classifier = classifier
        self.single = not isinstance(classes, Mapping)
        factors = {factor: list(classes)} if self.single else {f: list(v) for f, v in classes.items()}
        if not factors or any(len(v) < 2 for v in factors.values()):
            raise ValueError("every factor needs at least two classes")
        self.factors = factors
        self.base_factor = base_factor or next(iter(factors))
        if self.base_factor not in factors:
            raise ValueError(f"base_factor {self.base_factor!r} is not one of {list(factors)}")
        self.columns = {f"{f}={v}": (f, j) for f, values in factors.items()
                        for j, v in enumerate(values)}
        self.sample_shape = None if sample_shape is None else tuple(sample_shape)
        self.bounds = bounds

    def _logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.classifier(x)
        if self.single:
            out = {next(iter(self.factors)): out}
        for f, values in self.factors.items():
            if f not in out or out[f].shape[-1] != len(values):
                raise ValueError(f"the classifier must return logits [B, {len(values)}] for "
                                 f"factor {f!r}")
        return out

    def concept_energies(self, x: torch.Tensor, heads: Sequence[str]) -> torch.Tensor:
        """``log p(c|x)`` per head (``BASE``: the JEM energy ``E_0``), ``[B, K]``."""
        logits = self._logits(x)
        log_probs = {f: torch.log_softmax(z, dim=1) for f, z in logits.items()}
        columns = []
        for name in heads:
            if name == BASE:
                columns.append(-torch.logsumexp(logits[self.base_factor], dim=1))
            else:
                f, j = self.columns[name]
                columns.append(log_probs[f][:, j])
        return torch.stack(columns, dim=1)  # [B, K]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The JEM base energy ``E_0(x)``, ``[B]``."""
        return self.concept_energies(x, [BASE])[:, 0]

    def as_concept_library(self):
        from ..library import ConceptLibrary

        lib = ConceptLibrary()
        lib.add_model(self, {name: None for name in self.columns}, kind="log_prob")
        lib.set_base(self, BASE)
        lib.sample_shape, lib.bounds = self.sample_shape, self.bounds
        return lib
