"""What computes a concept: the :class:`Head` a name resolves to, the protocols of models that
compute several heads in one call, and the spelling of concept names.

A head is exposed at temperature 1 (``E_c / T_c``); its ``kind`` is ``"energy"`` (``E_c(x)``),
``"log_prob"`` (a classifier head, ``log p(c|x) ≤ 0``) or ``"score"`` (only ``−∇_x E_c``). A
source is *σ-aware* when it takes the noise level as a keyword ``sigma`` (:func:`accepts_sigma`).
:class:`~conceptalg.library.ConceptLibrary` (its module docstring tells the whole contract)
maps names to heads; this module holds what a head is and how names are written, so that the
compiler can read heads without the library.
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from .expr import Concept, is_name

__all__ = ["Head", "ConceptEnergyModel", "ConceptScoreModel", "ConceptSource", "accepts_sigma",
           "unknown_concept_message", "KINDS"]

KINDS = ("energy", "log_prob", "score")
_OPERATOR_NAMES = {"AND": "&", "OR": "|", "NOT": "~"}
_SHOW_KNOWN = 20  # names listed in an unknown-concept message


@runtime_checkable
class ConceptEnergyModel(Protocol):
    """A model that computes several concept heads in one call (the batching protocol).

    ``concept_energies(x, heads)`` returns a ``[B, K]`` tensor: column ``k`` is the raw output
    of head ``heads[k]`` on ``x[B, ...]`` (an energy, or ``log p(c|x)`` for classifier heads).
    When a requested head is parametric, a third positional argument ``args`` is passed: a
    list aligned with ``heads`` of ``None`` or ``[B, n_args]`` tensors. A head may appear more
    than once (with different arguments). When the method has a parameter ``sigma``, the model
    is σ-aware and is called ``concept_energies(x, heads, [args,] sigma=s)`` with ``s[B]``.

    Example:
        >>> import torch
        >>> class Heads(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.trunk, self.out = torch.nn.Linear(2, 8), torch.nn.Linear(8, 3)
        ...         self.index = {"red": 0, "green": 1, "blue": 2}
        ...     def concept_energies(self, x, heads):
        ...         h = torch.tanh(self.trunk(x))                       # [B, 8]
        ...         rows = [self.index[name] for name in heads]
        ...         return h @ self.out.weight[rows].T + self.out.bias[rows]  # [B, K]
        >>> from conceptalg.library import ConceptLibrary
        >>> lib = ConceptLibrary().add_model(Heads(), {"red": "color", "green": "color"})
        >>> lib.names()
        ['color=red', 'color=green']
    """

    def concept_energies(self, x: Any, heads: Sequence[str], *args: Any) -> Any: ...


@runtime_checkable
class ConceptScoreModel(Protocol):
    """A model that gives only scores, for several heads in one call (``kind="score"``).

    ``concept_scores(x, heads, [args,] sigma=s)`` returns a ``[B, K, *sample_shape]`` tensor:
    column ``k`` is the score ``−∇_x E_k(x, σ)`` of head ``heads[k]`` (``args`` as for
    :class:`ConceptEnergyModel`; ``sigma`` only when the method has that parameter). A score
    head has no energy value, so it composes only where the composed energy is linear in its
    concepts (AND, NOT, weights; no OR, not ``semantics="logic"``).

    Example:
        >>> import torch
        >>> class Gaussians(torch.nn.Module):  # E_k(x, σ) = |x - μ_k|² / (2 (1 + σ²))
        ...     means = {"left": -1.0, "right": 1.0}
        ...     def concept_scores(self, x, heads, sigma=None):
        ...         mu = torch.tensor([self.means[h] for h in heads])[None, :, None]  # [1, K, 1]
        ...         return -(x[:, None, :] - mu) / (1 + sigma[:, None, None] ** 2)  # [B, K, 2]
        >>> from conceptalg.library import ConceptLibrary
        >>> lib = ConceptLibrary().add_model(Gaussians(), ["left", "right"], kind="score")
        >>> from conceptalg import compose
        >>> energy = compose("left & ~right", lib)
        >>> energy.score_only, energy.sigma_aware
        (True, True)
        >>> energy.score(torch.zeros(1, 2), sigma=1.0)  # -(x + 1)/2 + (x - 1)/2
        tensor([[-1., -1.]])
    """

    def concept_scores(self, x: Any, heads: Sequence[str], *args: Any) -> Any: ...


def accepts_sigma(fn: Any) -> bool:
    """True when ``fn`` takes the noise level as a keyword argument ``sigma`` (it is σ-aware):
    the one rule for heads, energies and samplers.

    Decided from the signature: a parameter named ``sigma`` that can be passed by keyword (a
    bare ``**kwargs`` does not count) — of ``fn`` itself or, for an object with a ``forward``
    (an ``nn.Module``), of its ``forward``; for a score-only energy (``score_only = True``), of
    its ``score``. Callables without a signature (some builtins) are σ-unaware.

    Example:
        >>> accepts_sigma(lambda x, sigma=None: x), accepts_sigma(lambda x: x), accepts_sigma(abs)
        (True, False, False)
    """
    if fn is None:
        return False
    if getattr(fn, "score_only", False) is True:
        fn = getattr(fn, "score", None)
    targets = [fn]
    forward = getattr(fn, "forward", None)
    if callable(forward) and not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        targets.append(forward)
    for target in targets:
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):  # builtins and C callables without a signature
            continue
        p = params.get("sigma")
        if p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            return True
    return False


@dataclass(frozen=True, eq=False)
class Head:
    """One resolved concept: what to call and how to read its output.

    ``source`` is a function (``head`` is ``None``) or a :class:`ConceptEnergyModel` (``head``
    is the name passed to ``concept_energies``; ``concept_scores`` of a
    :class:`ConceptScoreModel` for ``kind="score"``). ``kind`` is one of :data:`KINDS`;
    ``parametric`` is ``None`` when the library does not know (plain dicts: decided by the
    expression). A parametric head may declare its number of arguments, ``arity``, and a
    closed range ``arg_range = (low, high)`` that every argument must lie in (``None``: not
    declared, not checked). Heads compare by identity: two spellings that resolve to the same
    head are one leaf.

    Example:
        >>> from conceptalg.library import ConceptLibrary
        >>> h = ConceptLibrary({"color=red": abs}).resolve("red")
        >>> (h.key, h.spelling, h.kind, h.temperature)
        ('color=red', 'color=red', 'energy', 1.0)
    """

    name: str
    factor: str | None
    source: Any
    head: str | None = None
    kind: str = "energy"
    parametric: bool | None = False
    temperature: float = 1.0
    arity: int | None = None
    arg_range: tuple[float, float] | None = None

    @property
    def key(self) -> str:
        """The dict-style key: ``red``, ``color=red`` or ``at``."""
        return self.name if self.factor is None else f"{self.factor}={self.name}"

    @property
    def spelling(self) -> str:
        """How the concept is written in an expression (``at(...)`` for a parametric one)."""
        text = str(Concept(self.name, self.factor))
        return f"{text}(...)" if self.parametric else text

    @property
    def batched(self) -> bool:
        """True when a model computes this head together with its other heads."""
        return self.head is not None

    @property
    def method(self) -> str | None:
        """The model method that computes a batched head (``concept_energies``, or
        ``concept_scores`` for a score head); ``None`` for a function."""
        if self.head is None:
            return None
        return "concept_scores" if self.kind == "score" else "concept_energies"

    @property
    def sigma_aware(self) -> bool:
        """True when this head takes the noise level ``sigma`` (:func:`accepts_sigma`)."""
        if self.source is None:
            return False
        method = self.method
        return accepts_sigma(self.source if method is None else getattr(self.source, method, None))

    def computed_by(self) -> str:
        """A short description of what computes this head, for listings and ``explain``."""
        if self.source is None:
            return "(not loaded)"
        if self.head is not None:
            return f"model {type(self.source).__name__}, head {self.head!r}"
        name = getattr(self.source, "__qualname__", None) or type(self.source).__name__
        return f"function {name}"


@runtime_checkable
class ConceptSource(Protocol):
    """The interface the compiler needs; a trained model may implement it instead of
    subclassing :class:`ConceptLibrary` (or give an ``as_concept_library()`` method).

    ``resolve(concept)`` returns a :class:`Head` or raises :class:`UnknownConceptError`;
    ``base`` is the base :class:`Head` or ``None``; ``names()`` lists the keys.
    """

    base: Head | None

    def resolve(self, concept: Concept | str) -> Head: ...

    def names(self) -> list[str]: ...


def _check_temperature(value: object, what: str) -> float:
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"temperature of {what} must be a number, got {value!r}") from None
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature of {what} must be finite and > 0, got {t!r}")
    return t


def _check_arity(value: object, what: str) -> int | None:
    """A declared number of arguments: ``None`` or an integer ≥ 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"the number of arguments of {what} must be an integer ≥ 1, "
                         f"got {value!r}")
    return value


def _check_arg_range(value: object, what: str) -> tuple[float, float] | None:
    """A declared argument range: ``None`` or ``(low, high)``, numbers (±inf allowed) with
    low ≤ high."""
    if value is None:
        return None
    try:
        low, high = value  # type: ignore[misc]
        if any(isinstance(v, (bool, str)) for v in (low, high)):
            raise TypeError
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        raise ValueError(f"the argument range of {what} must be a pair (low, high) of numbers, "
                         f"got {value!r}") from None
    if math.isnan(low) or math.isnan(high) or low > high:
        raise ValueError(f"the argument range of {what} must have low ≤ high, got {value!r}")
    return low, high


def _check_kind(kind: str, temperature: float, what: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind of {what} must be one of {KINDS}, got {kind!r}")
    if kind == "log_prob" and temperature != 1.0:
        raise ValueError(f"{what} is a classifier head (kind='log_prob'): log p(c|x) has no "
                         f"temperature, got {temperature!r}; set the base's temperature instead")


def _split_key(key: str, factor: str | None = None) -> tuple[str | None, str]:
    """``"color=red"`` → ``("color", "red")``; ``"red"`` → ``(factor, "red")``."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"a concept name must be a non-empty string, got {key!r}")
    if factor is None and "=" in key:
        factor, key = key.split("=", 1)
    if factor is not None and not is_name(factor):
        raise ValueError(f"a factor must be an identifier that is not a reserved word, "
                         f"got {factor!r}")
    if not key:
        raise ValueError(f"a concept name must be non-empty, got {factor}=")
    return factor, key


def _as_concept(concept: Concept | str) -> Concept:
    if isinstance(concept, Concept):
        return concept
    if isinstance(concept, str):
        from .syntax import parse
        node = parse(concept)
        if isinstance(node, Concept):
            return node
        raise ValueError(f"resolve takes one concept, got the expression {concept!r}")
    raise TypeError(f"expected a Concept or a concept name, got {type(concept).__name__}")



def _join(items: Sequence[Any], word: str = "and") -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"



def unknown_concept_message(c: Concept, known: Sequence[str]) -> str:
    """``unknown concept `rde`; did you mean `red`? known concepts: ...`` (with an operator hint
    for ``AND``/``OR``/``NOT`` spelled as names)."""
    text = str(Concept(c.name, c.factor))
    if c.factor is None and c.name in _OPERATOR_NAMES:
        op = _OPERATOR_NAMES[c.name]
        return (f"`{c.name}` is not a concept (operators are case-sensitive): to combine "
                f"concepts write `{op}` or `{c.name.lower()}`")
    msg = f"unknown concept `{text}`"
    close = difflib.get_close_matches(text, known, n=3, cutoff=0.6)
    if close:
        msg += f"; did you mean {_join([f'`{k}`' for k in close], 'or')}?"
    if not known:
        return msg + "; the library defines no concepts"
    shown = ", ".join(known[:_SHOW_KNOWN])
    more = f" (+{len(known) - _SHOW_KNOWN} more)" if len(known) > _SHOW_KNOWN else ""
    return f"{msg}{' Known' if close else '; known'} concepts: {shown}{more}"
