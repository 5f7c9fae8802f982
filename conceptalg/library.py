"""Concept libraries: concept names → energy functions, grouped by the model that computes them.

Every concept ``c`` has an energy ``E_c(x)`` with ``p(x|c) ∝ exp(−E_c(x))``, exposed **at
temperature 1**: a head registered with temperature ``T_c`` (a head trained with Langevin step
λ and noise σ has ``T_c = σ²/(2λ)``) is exposed as ``E_c / T_c``. A library may have a base
energy ``E_0`` (an unconditional model or a prior), also exposed as ``E_0 / T_0``. A
*classifier head* (``kind="log_prob"``) returns ``log p(c|x) ≤ 0`` and defines
``E_c = E_0 − log p(c|x)``; a library whose heads are all classifier heads over a base is
*probabilistic* and supports ``semantics="logic"``.

Names: ``red`` (bare), ``color=red`` (value ``red`` of factor ``color``), and parametric
concepts such as ``at``, written ``at(0.3, 0.7)`` in expressions. A bare name resolves to the
unfactored concept of that name if there is one, else to the single factor that has it; if
several factors have it, resolution is an ambiguity error listing the qualified spellings.
A parametric concept may declare its number of arguments (``arity``) and a range every
argument must lie in (``arg_range``); an expression that breaks either, writes a parametric
concept without arguments or gives arguments to a concept that takes none is a
:class:`~conceptalg.errors.ConceptArgumentError` at ``compose`` (with a caret under the concept
or the argument when the expression is text). A trained model's ``config.parametric`` (name →
number of arguments) declares the arities of its heads.

Two ways to compute energies:

- a function per concept: ``fn(x) -> E[B]``; parametric: ``fn(x, args) -> E[B]`` where ``args``
  is a ``[B, n_args]`` tensor with ``x``'s dtype and device (the expression's constant
  arguments broadcast over the batch, an expanded view: do not write to it);
- one model for several heads, implementing :class:`ConceptEnergyModel`:
  ``model.concept_energies(x, heads) -> Tensor[B, K]``, one column per requested head, so a
  shared trunk runs once for any number of heads. When a requested head is parametric, the
  compiler passes a third positional argument, ``args``: a list aligned with ``heads`` holding
  ``None`` or a ``[B, n_args]`` tensor. The same head may be requested twice with different
  arguments (``at(0.1, 0.2) & at(0.8, 0.5)``).

A plain ``dict[str, callable]`` works wherever a library is accepted (:func:`as_library`):
keys are written as in the language (``"red"``, ``"color=red"``, ``"at"``), and whether a
dict entry is parametric is decided by how the expression spells it.

**Noise levels.** An energy may take the noise level as a keyword argument ``sigma`` (a ``[B]``
tensor): level σ is the data law convolved with ``N(0, σ² I)``, in data units. A function is
*σ-aware* when its signature has a parameter named ``sigma`` (:func:`accepts_sigma`); a model
when its ``concept_energies`` (or ``concept_scores``) has one, and it is then called
``concept_energies(x, heads, [args,] sigma=s)``.

**Score heads** (``kind="score"``): a model that gives only scores implements
:class:`ConceptScoreModel`, ``concept_scores(x, heads, [args,] sigma=s) -> [B, K, *shape]``,
column ``k`` being ``−∇_x E_k`` (divided by the head's temperature, like an energy). Such heads
compose wherever the composed energy is linear in its concepts (AND, NOT, weights), through
``ComposedEnergy.score``; they have no energy values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator, Mapping, Sequence

from .errors import ConceptArgumentError, UnknownConceptError
from .expr import Concept, format_number
from .heads import (KINDS, ConceptEnergyModel, ConceptScoreModel, ConceptSource, Head, _as_concept,
                    _check_arg_range, _check_arity, _check_kind, _check_temperature, _join,
                    _split_key, accepts_sigma, unknown_concept_message)

__all__ = ["ConceptLibrary", "ConceptEnergyModel", "ConceptScoreModel", "ConceptSource", "Head",
           "as_library", "accepts_sigma", "KINDS", "SAMPLING_HINTS", "COMPOSE_HINTS"]

# Attributes a library (or trained model) may carry for the sampler; compose copies them.
SAMPLING_HINTS = ("sample_shape", "bounds", "sampler_defaults", "init_samples", "data_mean",
                  "sigma_data")
# Attributes a library (or trained model) may carry for compose: its defaults for
# ``semantics=None`` and ``guidance_scale=None``.
COMPOSE_HINTS = ("default_semantics", "guidance_scale")


class ConceptLibrary:
    """Concept names → energy functions, with factors, an optional base energy ``E_0`` and
    per-head temperatures. Everything it exposes is at temperature 1 (module docstring).

    ``concepts`` maps keys (``"red"``, ``"color=red"``, ``"at"``) to functions; ``factors``
    (``{"color": ["red", "green"]}``) assigns bare keys to factors; ``temperatures`` maps keys
    to head temperatures. Sampling hints (``sample_shape``, ``bounds``, ``sampler_defaults``,
    ``init_samples``) may be set as attributes; :func:`conceptalg.compose` copies them onto the
    composed energy. So may ``default_semantics`` and ``guidance_scale``: the values
    :func:`conceptalg.compose` uses when its ``semantics`` / ``guidance_scale`` are ``None``.

    Example:
        >>> import torch
        >>> lib = ConceptLibrary({"red": lambda x: (x - 1).pow(2).sum(-1),
        ...                       "green": lambda x: (x + 1).pow(2).sum(-1)},
        ...                      factors={"color": ["red", "green"]}, temperatures={"red": 0.5})
        >>> lib.set_base(lambda x: x.pow(2).sum(-1) / 8)
        ConceptLibrary(2 concepts, base)
        >>> lib.resolve("red").key
        'color=red'
        >>> print(lib)
        ConceptLibrary: 2 concepts, base energy, not probabilistic
          color=red    energy  T=0.5  function <lambda>  (also: red)
          color=green  energy         function <lambda>  (also: green)
          base         energy         function <lambda>
    """

    sample_shape: Any = None
    bounds: Any = None
    sampler_defaults: Any = None
    init_samples: Any = None
    data_mean: Any = None
    sigma_data: Any = None
    default_semantics: str | None = None   # what compose(..., semantics=None) uses
    guidance_scale: float | None = None    # what compose(..., guidance_scale=None) uses

    def __init__(self, concepts: Mapping[str, Callable] | None = None, *,
                 base: Callable | None = None,
                 factors: Mapping[str, Sequence[str]] | None = None,
                 temperatures: Mapping[str, float] | None = None) -> None:
        self._heads: dict[tuple[str | None, str], Head] = {}
        self._base: Head | None = None
        self._objects: dict[str, ConceptLibrary] = {}  # place -> its objects' properties
        factor_of: dict[str, list[str]] = {}
        for factor, values in (factors or {}).items():
            if isinstance(values, str):
                raise TypeError(f"factors[{factor!r}] must be a list of names, got the string "
                                f"{values!r}")
            for value in values:
                factor_of.setdefault(str(value), []).append(factor)
        temperatures = dict(temperatures or {})
        placed: set[tuple[str, str]] = set()
        for key, fn in (concepts or {}).items():
            factor, name = _split_key(key)
            if factor is None and name in factor_of:
                owners = factor_of[name]
                if len(owners) > 1:
                    raise ValueError(f"concept {key!r} is listed under factors "
                                     f"{', '.join(owners)}; key it as "
                                     f"{' or '.join(repr(f + '=' + name) for f in owners)}")
                factor = owners[0]
            elif factor is not None and name in factor_of and factor not in factor_of[name]:
                raise ValueError(f"concept {key!r} is listed under factor "
                                 f"{factor_of[name][0]!r} in factors, not {factor!r}")
            if factor is not None:
                placed.add((factor, name))
            t = temperatures.pop(key, 1.0)
            self.add(name, fn, factor=factor, parametric=None, temperature=t)
        missing = [f"{f}={v}" for v, fs in factor_of.items() for f in fs if (f, v) not in placed]
        if missing:
            raise ValueError(f"factors list {', '.join(missing)} but concepts has no energy for "
                             f"{'it' if len(missing) == 1 else 'them'}")
        if temperatures:
            raise ValueError(f"temperatures names unknown concepts {sorted(temperatures)}; "
                             f"known: {self.names()}")
        if base is not None:
            self.set_base(base)

    # --- building --------------------------------------------------------------------------
    def add(self, name: str, fn: Callable, *, factor: str | None = None,
            parametric: bool | None = False, kind: str = "energy",
            temperature: float = 1.0, arity: int | None = None,
            arg_range: tuple[float, float] | None = None) -> "ConceptLibrary":
        """Register one concept computed by ``fn`` (``fn(x) -> E[B]``, or ``fn(x, args)`` when
        parametric, ``args`` ``[B, n_args]``). ``name`` may be qualified (``"color=red"``).
        ``arity`` (the number of arguments) and ``arg_range`` (``(low, high)``, closed, for
        every argument) declare a parametric concept and are checked at ``compose``.
        ``kind="log_prob"``: ``fn`` returns ``log p(c|x)`` and ``E_c = E_0 − log p(c|x)``
        (needs a base). A function that takes ``sigma`` is σ-aware (module docstring). Score
        heads come from models (:meth:`add_model` with ``kind="score"``). Returns the library,
        so calls chain.

        Example:
            >>> at = lambda x, args: (x - args).pow(2).sum(-1)
            >>> lib = ConceptLibrary().add("at", at, arity=2, arg_range=(0, 1))
            >>> lib.resolve("at(0.5, 0.5)").spelling
            'at(...)'
            >>> lib.resolve("at(0.5)")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
              ...
            conceptalg.errors.ConceptArgumentError: `at` takes 2 arguments, got 1 in `at(0.5)`; ...
        """
        if not callable(fn):
            raise TypeError(f"the energy of {name!r} must be callable, got {type(fn).__name__}")
        factor, name = _split_key(name, factor)
        t = _check_temperature(temperature, repr(name))
        _check_kind(kind, t, repr(name))
        if kind == "score":
            raise ValueError(f"{name!r}: a function registered with add() gives an energy; score "
                             f"heads come from a model with concept_scores: "
                             f"add_model(model, heads, kind='score')")
        arity, arg_range = _check_arity(arity, repr(name)), _check_arg_range(arg_range, repr(name))
        if arity is not None or arg_range is not None:
            parametric = True                      # a declared signature makes it parametric
        self._insert(Head(name, factor, fn, None, kind, parametric, t, arity, arg_range))
        return self

    def add_model(self, model: ConceptEnergyModel,
                  heads: Mapping[str, str | None] | Sequence[str], *, kind: str = "energy",
                  parametric: Sequence[str] | Mapping[str, int] = (),
                  temperature: float | Mapping[str, float] = 1.0,
                  arg_ranges: Mapping[str, tuple[float, float]] | None = None,
                  ) -> "ConceptLibrary":
        """Register several heads computed by one ``model`` in one batched call
        (:class:`ConceptEnergyModel`). ``heads`` is a list of head names (``"red"`` or
        ``"color=red"``) or a mapping head name → factor (``None`` for none); the model receives
        the names exactly as given here. ``parametric`` lists parametric heads, or maps them to
        their numbers of arguments (``{"at": 2}``); given as names, their numbers come from
        the model's ``config.parametric`` when it has one. ``arg_ranges`` maps parametric heads
        to the range ``(low, high)`` of their arguments. ``temperature`` is one number or a
        mapping head name → temperature. ``kind="score"``: the model gives only scores, through
        ``concept_scores`` (:class:`ConceptScoreModel`). Returns the library.
        """
        method = "concept_scores" if kind == "score" else "concept_energies"
        if not callable(getattr(model, method, None)):
            protocol = "ConceptScoreModel" if kind == "score" else "ConceptEnergyModel"
            raise TypeError(f"{type(model).__name__} has no {method}(x, heads) method "
                            f"(see {protocol}); register single functions with add()")
        if isinstance(heads, str):
            raise TypeError("heads must be a list of head names or a mapping name -> factor, "
                            f"got the string {heads!r}")
        items = heads.items() if isinstance(heads, Mapping) else [(h, None) for h in heads]
        temps = temperature if isinstance(temperature, Mapping) else None
        if isinstance(parametric, str):
            raise TypeError(f"parametric must be a list of head names or a mapping name -> "
                            f"number of arguments, got the string {parametric!r}")
        declared = _declared_arities(model)
        arities = dict(parametric) if isinstance(parametric, Mapping) else \
            {name: declared.get(name) for name in parametric}
        ranges = dict(arg_ranges or {})
        new = []
        for head_name, factor in items:
            f, name = _split_key(head_name, factor)
            t = _check_temperature(temps.get(head_name, 1.0) if temps is not None else temperature,
                                   repr(head_name))
            _check_kind(kind, t, repr(head_name))
            new.append(Head(name, f, model, head_name, kind, head_name in arities, t,
                            _check_arity(arities.get(head_name), repr(head_name)),
                            _check_arg_range(ranges.get(head_name), repr(head_name))))
        given = {h.head for h in new}
        extra = sorted((set(arities) | set(temps or ()) | set(ranges)) - given)
        if extra:
            raise ValueError(f"parametric/temperature/arg_ranges name heads that were not "
                             f"given: {extra}")
        if set(ranges) - set(arities):
            raise ValueError(f"arg_ranges names heads that are not parametric: "
                             f"{sorted(set(ranges) - set(arities))}; list them in parametric")
        for h in new:
            self._insert(h)
        return self

    def add_objects(self, place: str, model: ConceptEnergyModel,
                    heads: Mapping[str, str]) -> "ConceptLibrary":
        """Register what the object at the parametric concept ``place`` can be — the
        properties a binding ``place(args)[body]`` asks about (docs/design.md §4): ``heads``
        maps each property's key (``"color=red"``) to the name ``model.concept_energies``
        receives for it, a ``log p(property | the object at the place)`` head evaluated at the
        place's arguments (kind ``"log_prob"``). Returns the library.

        Example:
            >>> import torch
            >>> class Objects(torch.nn.Module):   # log P(property | object at p), made up
            ...     def concept_energies(self, x, heads, args):
            ...         return torch.stack([-a.sum(1) for a in args], 1)   # [B, K]
            >>> lib = ConceptLibrary().add("at", lambda x, a: x.sum(1), arity=2, kind="log_prob")
            >>> lib = lib.add_objects("at", Objects(), {"color=red": "at[color=red]"})
            >>> place = Concept("at", args=(0.2, 0.3))
            >>> lib.resolve_bound(Concept("red"), place).head
            'at[color=red]'
        """
        place_head = self._heads.get((None, place))
        if place_head is None or place_head.parametric is False:
            raise ValueError(f"{place!r} is not a parametric concept of this library; register "
                             f"the place first (add or add_model with parametric=...)")
        objects = ConceptLibrary()
        for key, name in heads.items():
            factor, value = _split_key(key)
            objects._insert(Head(value, factor, model, name, "log_prob", True, 1.0,
                                 place_head.arity, place_head.arg_range))
        self._objects[place] = objects
        return self

    def resolve_bound(self, concept: Concept, place: Concept) -> Head:
        """The :class:`Head` of ``concept`` as a property of the object at ``place`` (a
        binding's leaf, :meth:`add_objects`); raises :class:`UnknownConceptError` when the
        place's objects have no such property, or when ``place`` names no object with
        properties here."""
        place_head = self.resolve(place)
        objects = self._objects.get(place_head.name)
        if objects is None:
            raise UnknownConceptError(
                f"`{place}[...]`: the objects at `{place_head.name}` have no properties in this "
                f"library, so nothing can be bound to them (a binding needs object heads: a "
                f"model trained with --heads classifier on data whose objects are labelled, "
                f"such as scenes); write `{place}` alone, or name its properties with &")
        try:
            head = objects._lookup(Concept(concept.name, concept.factor))
        except UnknownConceptError:
            raise UnknownConceptError(
                f"`{Concept(concept.name, concept.factor)}` is not a property of the object at "
                f"`{place_head.name}`; it can be: {', '.join(objects.spellings())}") from None
        _check_arguments(head, place)
        return head

    def set_base(self, fn: Callable | ConceptEnergyModel | None, head: str | None = None, *,
                 temperature: float = 1.0, kind: str = "energy") -> "ConceptLibrary":
        """Set the base energy ``E_0`` (``None`` removes it). With ``head``, ``fn`` is a
        :class:`ConceptEnergyModel` and ``E_0`` is that head's column, computed in the same
        batched call as the model's concept heads. ``kind="score"``: ``fn`` is a
        :class:`ConceptScoreModel` and ``head`` its unconditional head (the base then has a
        score but no energy value); a function base is always an energy. Returns the library.
        """
        if fn is None:
            self._base = None
            return self
        if kind not in ("energy", "score"):
            raise ValueError(f"kind of the base must be 'energy' or 'score', got {kind!r}")
        if head is None and kind == "score":
            raise ValueError("a base given as a function is an energy E_0(x); kind='score' needs "
                             "a model with concept_scores and the name of its head")
        if head is None and not callable(fn):
            raise TypeError(f"the base energy must be callable, got {type(fn).__name__}")
        method = "concept_scores" if kind == "score" else "concept_energies"
        if head is not None and not callable(getattr(fn, method, None)):
            raise TypeError(f"a base given by head name needs a model with {method}, "
                            f"got {type(fn).__name__}")
        t = _check_temperature(temperature, "the base")
        self._base = Head("base", None, fn, head, kind, False, t)
        return self

    def _insert(self, head: Head) -> None:
        k = (head.factor, head.name)
        if k in self._heads:
            raise ValueError(f"concept {head.key!r} is already defined in this library "
                             f"({self._heads[k].computed_by()})")
        self._heads[k] = head

    def merge(self, other: "ConceptLibrary | Mapping[str, Callable]",
              prefix: str | None = None) -> "ConceptLibrary":
        """A new library with the concepts of both (neither input changes). A name defined in
        both is an error unless ``prefix`` is given: it is prepended to every concept name of
        ``other`` (``prefix="m2_"``: ``color=red`` → ``color=m2_red``). Two different bases
        are an error; set one to ``None`` first. Hints (:data:`SAMPLING_HINTS`,
        :data:`COMPOSE_HINTS`) come from this library, else from ``other``.
        """
        other = as_library(other)
        out = ConceptLibrary()
        for k, h in self._heads.items():
            out._heads[k] = h
        clashes = []
        for h in _heads_of(other):
            if prefix:
                h = dataclasses.replace(h, name=prefix + h.name)
            if (h.factor, h.name) in out._heads:
                clashes.append(h.key)
            else:
                out._heads[(h.factor, h.name)] = h
        if clashes:
            raise ValueError(f"both libraries define {', '.join(repr(c) for c in clashes)}; "
                             f"give merge a prefix (e.g. prefix='other_') to keep both")
        b1, b2 = self.base, getattr(other, "base", None)
        if b1 is not None and b2 is not None and (b1.source, b1.head) != (b2.source, b2.head):
            raise ValueError("both libraries have a base energy; call set_base(None) on one "
                             "before merging")
        out._base = b1 if b1 is not None else b2
        out._objects = {**getattr(other, "_objects", {}), **self._objects}
        for hint in SAMPLING_HINTS + COMPOSE_HINTS:
            value = getattr(self, hint, None)
            setattr(out, hint, value if value is not None else getattr(other, hint, None))
        return out

    # --- looking up --------------------------------------------------------------------------
    @property
    def base(self) -> Head | None:
        """The base energy ``E_0`` as a :class:`Head`, or ``None``."""
        return self._base

    @property
    def is_probabilistic(self) -> bool:
        """True when there is a base and every head is a classifier head (``log p(c|x)``):
        then ``semantics="logic"`` is available for any expression over this library."""
        return (self._base is not None and bool(self._heads)
                and all(h.kind == "log_prob" for h in self._heads.values()))

    @property
    def factors(self) -> dict[str, list[str]]:
        """Factor → its values, in registration order."""
        out: dict[str, list[str]] = {}
        for f, name in self._heads:
            if f is not None:
                out.setdefault(f, []).append(name)
        return out

    def names(self) -> list[str]:
        """Every concept's key (``"red"``, ``"color=red"``, ``"at"``), in registration order."""
        return [h.key for h in self._heads.values()]

    def heads(self) -> list[Head]:
        """Every concept's :class:`Head`, in registration order."""
        return list(self._heads.values())

    def resolve(self, concept: Concept | str) -> Head:
        """The :class:`Head` that computes ``concept`` (a :class:`Concept` or its text).

        Raises :class:`UnknownConceptError` for an unknown or ambiguous name (with the known
        names and a did-you-mean) and :class:`~conceptalg.errors.ConceptArgumentError` when
        arguments are given to a concept that takes none, missing for a parametric one, or do
        not fit its declared number and range (module docstring).

        Example:
            >>> lib = ConceptLibrary({"color=red": abs, "tone=red": abs})
            >>> lib.resolve("red")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
              ...
            conceptalg.errors.UnknownConceptError: `red` is ambiguous: ... `color=red` or `tone=red`
        """
        c = _as_concept(concept)
        head = self._lookup(c)
        _check_arguments(head, c)
        return head

    def _lookup(self, c: Concept) -> Head:
        if c.factor is not None:
            head = self._heads.get((c.factor, c.name))
            if head is not None:
                return head
            raise UnknownConceptError(self._unknown_message(c))
        head = self._heads.get((None, c.name))
        if head is not None:
            return head
        found = [h for (f, n), h in self._heads.items() if n == c.name]
        if len(found) == 1:
            return found[0]
        if found:
            choices = [f"`{h.spelling}`" for h in found]
            raise UnknownConceptError(
                f"`{c.name}` is ambiguous: it is a value of factors "
                f"{_join([h.factor for h in found])}; write {_join(choices, 'or')}")
        raise UnknownConceptError(self._unknown_message(c))

    def _unknown_message(self, c: Concept) -> str:
        return unknown_concept_message(c, self.spellings())

    def spellings(self) -> list[str]:
        """How every concept may be written: qualified keys plus bare names that resolve."""
        out = []
        counts: dict[str, int] = {}
        for f, n in self._heads:
            counts[n] = counts.get(n, 0) + 1
        for h in self._heads.values():
            out.append(str(Concept(h.name, h.factor)))
            if h.factor is not None and counts[h.name] == 1 and (None, h.name) not in self._heads:
                out.append(str(Concept(h.name)))
        return out

    # --- listing -----------------------------------------------------------------------------
    def describe(self) -> str:
        """A listing: one line per concept with its DSL spelling, kind, temperature, what
        computes it and its bare alias, then the base."""
        n = len(self._heads)
        lines = [f"ConceptLibrary: {n} concept{'s' if n != 1 else ''}, "
                 f"{'base energy' if self._base is not None else 'no base energy'}, "
                 f"{'probabilistic' if self.is_probabilistic else 'not probabilistic'}"]
        counts: dict[str, int] = {}
        for _, name in self._heads:
            counts[name] = counts.get(name, 0) + 1
        rows = []
        for (f, name), h in self._heads.items():
            alias = ""
            if f is not None and counts[name] == 1:
                alias = f"  (also: {str(Concept(name))})"
            rows.append((h.spelling, h, alias))
        if self._base is not None:
            rows.append(("base", self._base, ""))
        width = max((len(r[0]) for r in rows), default=0)
        for spelling, h, alias in rows:
            t = f"T={h.temperature:g}" if h.temperature != 1.0 else ""
            lines.append(f"  {spelling:<{width}}  {h.kind:<8}{t:<7}{h.computed_by()}{alias}"
                         .rstrip())
        return "\n".join(lines)

    __str__ = describe

    def __repr__(self) -> str:
        base = ", base" if self._base is not None else ""
        return f"ConceptLibrary({len(self._heads)} concepts{base})"

    def __len__(self) -> int:
        return len(self._heads)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, concept: object) -> bool:
        try:
            self._lookup(_as_concept(concept))  # type: ignore[arg-type]
        except (LookupError, ValueError, TypeError):
            return False
        return True


def _check_arguments(head: Head, c: Concept) -> None:
    """Raise :class:`ConceptArgumentError` when ``c``'s arguments do not fit ``head``: none for
    a parametric head, some for one that takes none, a count other than its arity, or one
    outside its range (``argument`` names which)."""
    if head.parametric is False:
        if c.args is not None:
            raise ConceptArgumentError(f"`{head.key}` takes no arguments; write "
                                       f"`{Concept(c.name, head.factor)}`")
        return
    n = head.arity
    middle = 0.5 if head.arg_range is None else _middle(head.arg_range)
    example = f"`{Concept(head.name, args=(middle,) * (n or 2))}`"
    if c.args is None:
        if head.parametric is True:
            count = f" ({n} number{'s' if n != 1 else ''})" if n is not None else ""
            raise ConceptArgumentError(f"`{head.name}` is parametric: give its arguments"
                                       f"{count}, e.g. {example}")
        return
    if n is not None and len(c.args) != n:
        raise ConceptArgumentError(f"`{head.name}` takes {n} argument{'s' if n != 1 else ''}, "
                                   f"got {len(c.args)} in `{c}`; write e.g. {example}")
    if head.arg_range is not None:
        low, high = head.arg_range
        for i, a in enumerate(c.args):
            if not low <= a <= high:
                raise ConceptArgumentError(
                    f"argument {i + 1} of `{c}` is {format_number(a)}, outside the range "
                    f"[{format_number(low)}, {format_number(high)}] that `{head.name}` "
                    f"declares", argument=i)


def _middle(arg_range: tuple[float, float]) -> float:
    """A point of ``arg_range`` for examples: its midpoint, else its finite end, else 0."""
    low, high = arg_range
    if math.isfinite(low) and math.isfinite(high):
        return (low + high) / 2
    return low if math.isfinite(low) else high if math.isfinite(high) else 0.0


def _declared_arities(model: Any) -> dict[str, int]:
    """The numbers of arguments a trained model declares, ``config.parametric`` (name → n)."""
    declared = getattr(getattr(model, "config", None), "parametric", None)
    return dict(declared) if isinstance(declared, Mapping) else {}


def _heads_of(library: Any) -> list[Head]:
    heads = getattr(library, "heads", None)
    if callable(heads):
        return list(heads())
    return [library.resolve(name) for name in library.names()]


def as_library(concepts: Any) -> Any:
    """What :func:`conceptalg.compose` accepts, as a library: a :class:`ConceptLibrary` as is,
    an object with ``as_concept_library()`` via that method, a ``dict`` wrapped in a
    :class:`ConceptLibrary`, any other object with the :class:`ConceptSource` interface as is.

    Example:
        >>> as_library({"red": abs}).names()
        ['red']
    """
    if isinstance(concepts, ConceptLibrary):
        return concepts
    convert = getattr(concepts, "as_concept_library", None)
    if callable(convert):
        return convert()
    if isinstance(concepts, Mapping):
        return ConceptLibrary(concepts)
    if callable(getattr(concepts, "resolve", None)) and hasattr(concepts, "base"):
        return concepts
    raise TypeError(f"concepts must be a ConceptLibrary, a trained model or a dict of energy "
                    f"functions, got {type(concepts).__name__}")
