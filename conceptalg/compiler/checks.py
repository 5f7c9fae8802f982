"""Construction-time resolution and checks for :class:`~conceptalg.compiler.ComposedEnergy`.

Everything that can fail by name or structure fails here, before any tensor is seen: the
semantics in force (the caller's, else the library's ``default_semantics``, else
``"product"``) and the guidance scale ``w`` (``E = E_0 + w·D``); OR log-weights; the base
``E_0`` an expression needs; and heads that give only scores (``kind="score"``), which
compose only where the energy is linear in its concepts — no OR, not ``semantics="logic"`` —
except a base that gives a score under logic's classifier heads (``∇ log P`` is autograd's). An
OR over such heads raises :class:`OrNeedsEnergyValues`, which ``compose()`` answers with a
mixture.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..errors import CompileError
from ..expr import Expr, as_expr
from ..heads import Head
from .bindings import lower_bindings
from .leaves import Leaf
from .normalize import SEMANTICS, _NOr, _Term, _normal_form
from .semantics import semantics_named

# The fix for a score-only concept where energy values are needed (a CLI and a Python spelling).
TRAIN_ENERGY = 'train with `--parameterization energy` (Python: parameterization="energy")'


def hint(concepts: Any, library: Any, name: str) -> Any:
    """``name`` from the object passed as ``concepts`` (e.g. a trained model), else from its
    library; ``None`` when neither carries it."""
    value = getattr(concepts, name, None)
    return getattr(library, name, None) if value is None else value


def resolve_semantics(concepts: Any, library: Any, semantics: str | None,
                      guidance_scale: Any) -> tuple[str, bool, float | None]:
    """``(semantics, from_library, w)``: ``w`` is the guidance scale under guidance and logic
    (default 1), else None."""
    from_library = semantics is None
    if from_library:
        semantics = hint(concepts, library, "default_semantics")
        if semantics is None:
            semantics, from_library = "product", False
        elif semantics not in SEMANTICS:
            raise CompileError(f"the library's default_semantics is {semantics!r}; it must be "
                               f"one of {', '.join(SEMANTICS)}")
    scaled = semantics_named(semantics).scaled  # a CompileError for an unknown name
    whose = " (the library's default)" if from_library else ""
    if guidance_scale is not None and not scaled:
        raise CompileError(f"guidance_scale applies to semantics='guidance' (E = E_0 + w*D) and "
                           f"'logic' (E = E_0 - w*log P), and the semantics in force is "
                           f"{semantics!r}{whose}; pass semantics='guidance' or drop "
                           f"guidance_scale")
    if not scaled:
        return semantics, from_library, None
    what = "guidance_scale"
    if guidance_scale is None:
        guidance_scale = hint(concepts, library, "guidance_scale")
        what = "the library's guidance_scale"
        if guidance_scale is None:
            return semantics, from_library, 1.0
    try:
        w = float(guidance_scale)
    except (TypeError, ValueError):
        raise CompileError(f"{what} must be a number, got {guidance_scale!r}") from None
    if not (math.isfinite(w) and w > 0):
        raise CompileError(f"{what} must be finite and > 0 (E = E_0 + w*D), got {guidance_scale!r}")
    return semantics, from_library, w


def composition_hint(concepts: Any, library: Any, name: str) -> Any:
    """:func:`hint`, else ``name`` in the ``config.composition`` of the object passed as
    ``concepts`` (a trained model's composition defaults); ``None`` when none carries it."""
    value = hint(concepts, library, name)
    if value is None:
        composition = getattr(getattr(concepts, "config", None), "composition", None)
        if isinstance(composition, Mapping):
            value = composition.get(name)
    return value


def resolve_negation(concepts: Any, library: Any, semantics: str, from_library: bool,
                     negation_scale: Any, negation_sigmas: Any
                     ) -> tuple[float | None, tuple[float, float] | None]:
    """``(ν, (σ_lo, σ_hi))`` for guidance's negated terms: each negated term's weight is
    multiplied by ``ν`` (default 1), and negated terms count only at noise levels
    ``σ_lo ≤ σ ≤ σ_hi`` (``None``: at every level; ``σ_hi`` ``None`` or ``inf``: no upper
    bound). ``None`` arguments take the library's (a trained model's composition) defaults.
    Other semantics return ``(None, None)`` and refuse an explicit value.

    Example:
        >>> resolve_negation(None, None, "guidance", False, 0.5, (1, None))
        (0.5, (1.0, inf))
        >>> resolve_negation(None, None, "product", False, None, None)
        (None, None)
    """
    if not semantics_named(semantics).negation_options:
        given = [n for n, v in (("negation_scale", negation_scale),
                                ("negation_sigmas", negation_sigmas)) if v is not None]
        if given:
            whose = " (the library's default)" if from_library else ""
            raise CompileError(
                f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} to "
                f"semantics='guidance' (a negated term is -nu*D[c] in E = E_0 + w*D, counted "
                f"over a range of noise levels), and the semantics in force is "
                f"{semantics!r}{whose}; pass semantics='guidance' or drop {given[0]}")
        return None, None
    what = "negation_scale"
    if negation_scale is None:
        negation_scale = composition_hint(concepts, library, "negation_scale")
        what = "the library's negation_scale"
    nu = 1.0 if negation_scale is None else _number(negation_scale, what)
    if not (math.isfinite(nu) and nu >= 0):
        raise CompileError(f"{what} must be finite and >= 0 (each negated term's weight is "
                           f"multiplied by it; 1 leaves it as written), got {negation_scale!r}")
    what = "negation_sigmas"
    if negation_sigmas is None:
        negation_sigmas = composition_hint(concepts, library, "negation_sigmas")
        what = "the library's negation_sigmas"
    if negation_sigmas is None:
        return nu, None
    return nu, _sigma_range(negation_sigmas, what)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or isinstance(value, str):
        raise CompileError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CompileError(f"{what} must be a number, got {value!r}") from None


def _sigma_range(value: Any, what: str) -> tuple[float, float]:
    """``(lo, hi)`` from a pair of noise levels, ``0 ≤ lo < hi`` (``hi`` ``None``: ∞)."""
    usage = (f"{what} must be a pair (lo, hi) of noise levels with 0 <= lo < hi (hi None or "
             f"inf: no upper bound), e.g. (1.0, None)")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise CompileError(f"{usage}; got {value!r}")
    lo = _number(value[0], f"{what}[0]")
    hi = math.inf if value[1] is None else _number(value[1], f"{what}[1]")
    if not (math.isfinite(lo) and lo >= 0 and not math.isnan(hi) and hi > lo):
        raise CompileError(f"{usage}; got {value!r}")
    return lo, hi


def check_or_temperature(or_temperature: Any, semantics: str, or_log_weights: Any) -> float:
    tau = float(or_temperature)
    if not (math.isfinite(tau) and tau > 0):
        raise CompileError(f"or_temperature must be finite and > 0, got {or_temperature!r}")
    if semantics == "logic" and (tau != 1.0 or or_log_weights is not None):
        raise CompileError("or_temperature and or_log_weights apply to the product and "
                           "guidance semantics; logic's OR is 1 - (1 - P(a))(1 - P(b))")
    return tau


def base_head(base: Any) -> Head:
    """The head of an explicit ``base=``: a :class:`Head` as is, a function as an energy."""
    if isinstance(base, Head):
        return base
    if not callable(base):
        raise TypeError(f"base must be a callable energy E_0(x) -> [B], got {type(base).__name__}")
    return Head("base", None, base)


def finite_log_weight(value: Any, what: str) -> float:
    v = float(value)
    if math.isnan(v) or v == math.inf:
        raise CompileError(f"{what} must be a finite log-weight (or -inf), got {value!r}")
    return v


def log_weight_table(expr: Expr, nf: _Term, semantics: str, or_log_weights: Any) -> dict:
    """``or_log_weights`` keyed by the disjunct's normal-form term."""
    if or_log_weights is None:
        return {}
    linear = semantics != "logic"
    if isinstance(or_log_weights, Mapping):
        return {_normal_form(lower_bindings(as_expr(text)), linear):
                finite_log_weight(value, f"or_log_weights[{text!r}]")
                for text, value in or_log_weights.items()}
    values = list(or_log_weights)
    if not (nf.weight == 1.0 and nf.sign > 0 and isinstance(nf.body, _NOr)):
        raise CompileError(f"a sequence of or_log_weights needs an OR at the root, and "
                           f"`{expr}` has none; pass a dict keyed by disjunct text")
    if len(values) != len(nf.body.terms):
        raise CompileError(f"or_log_weights has {len(values)} values for the "
                           f"{len(nf.body.terms)} disjuncts of the OR at the root of `{expr}`")
    return {t: finite_log_weight(v, f"or_log_weights[{i}]")
            for i, (t, v) in enumerate(zip(nf.body.terms, values))}


def check_base(expr: Expr, semantics: str, leaves: list[Leaf], base: Head | None,
               anchored: list) -> None:
    """A base where the plan needs one; classifier heads where logic needs them."""
    if base is not None:
        if semantics == "logic":
            energy_leaves = [leaf.text for leaf in leaves if leaf.head.kind != "log_prob"]
            if energy_leaves:
                raise CompileError(
                    f"semantics='logic' needs classifier heads (kind='log_prob', giving "
                    f"log p(c|x)); {', '.join(f'`{t}`' for t in energy_leaves)} "
                    f"{'is an energy head' if len(energy_leaves) == 1 else 'are energy heads'}"
                    f". Use semantics='product' or 'guidance', or register classifier heads")
        return
    fix = "give a base: compose(..., base=E0) or library.set_base(E0)"
    if semantics == "guidance":
        raise CompileError(f"semantics='guidance' needs a base energy E_0 (D_c = E_c - E_0) "
                           f"and none was given; {fix}")
    if semantics == "logic":
        raise CompileError(f"semantics='logic' needs a probabilistic library: classifier "
                           f"heads (kind='log_prob') over a base energy E_0, and there is no "
                           f"base; {fix}")
    if anchored:
        text, why = anchored[0]
        raise CompileError(f"`{text}` needs a base energy E_0 ({why}) in `{expr}`, and "
                           f"there is none. Anchor the negation: `x & ~a`, or give a base "
                           f"(compose(..., base=E0) or library.set_base(E0))")
    clf = [leaf.text for leaf in leaves if leaf.head.kind == "log_prob"]
    if clf:
        raise CompileError(f"classifier head `{clf[0]}` gives log p(c|x); its energy "
                           f"E_0 - log p(c|x) needs a base energy; {fix}")


class OrNeedsEnergyValues(CompileError):
    """An OR over a head that gives only scores: :class:`ComposedEnergy` cannot compute it, and
    :func:`~conceptalg.compiler.compose` samples it as a mixture
    (:class:`~conceptalg.compiler.mixture.MixtureEnergy`). ``what`` names the head."""

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


def check_scores(expr: Expr, semantics: str, leaves: list[Leaf], base: Head | None,
                 has_or: bool) -> str | None:
    """Refuse expressions that need energy values from a score-only head (``base``: the base
    the plan uses). Returns the message ``forward`` raises when the energy has only a score, or
    ``None`` when every needed head gives energy values."""
    only = [f"concept `{leaf.text}`" for leaf in leaves if leaf.head.kind == "score"]
    if base is not None and base.kind == "score":
        only.append("the base E_0")
    if not only:
        return None
    what = only[0]
    if semantics == "logic" and only != ["the base E_0"]:
        raise CompileError(f"semantics='logic' needs energy values (E = E_0 - log P) in `{expr}`, "
                           f"and {what} has only a score: {TRAIN_ENERGY}, or use "
                           f"semantics='product' or 'guidance' without an OR")
    if has_or:
        raise OrNeedsEnergyValues(
            f"`{expr}` needs energy values for one energy: an OR mixes its disjuncts by their "
            f"energy values, and {what} has only a score. compose() samples such an OR as a "
            f"mixture instead (a disjunct per chain, under equal partition functions); for the "
            f"exact OR, {TRAIN_ENERGY}", what)
    return (f"energy values are unavailable: {what} has only a score (its model gives -grad E, "
            f"not E); {TRAIN_ENERGY}, or use a gradient-only sampler (\"langevin\" or the "
            f"reverse-diffusion sampler), which needs only ComposedEnergy.score")
