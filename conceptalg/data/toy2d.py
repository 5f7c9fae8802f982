"""toy2d: named 2-D concepts with exact densities, and the exact density of any composition.

**Concepts.** The box ``[-3, 3]²`` carries a uniform base ``p_0 = 1/36``. Each concept ``c`` is a
calibrated soft classifier ``P(c|x) = σ(s_c(x))`` (a logistic of a smooth score, see
:data:`SCORES`), and its class-conditional density is Bayes' rule

    p(x|c) = p_0(x) · P(c|x) / Z_c,        Z_c = ∫ p_0 P(c|x) dx   (Gauss–Legendre, float64)

so one concept serves all three semantics of docs/design.md §4: the normalised energy
``E_c = −log p(x|c) = E_0 − log P(c|x) + log Z_c``, the base ``E_0 = log 36`` (constant inside
the box) and the classifier log-probability ``log P(c|x)``. Every score lies in ``[-4.5, 4.5]``,
so ``P`` stays within ``[0.011, 0.989]``: densities, their products and their ratios are smooth
and bounded away from zero on the whole box, and MCMC mixes for any expression. The box walls
are the only hard edges (give samplers ``bounds=BOUNDS``).

**Exact composition** (:func:`reference_energy`, numpy float64, never calls ``compose``).
Normal form: ``split_term`` peels weights and negations (double negations cancel, weights move
outward), so every term is ``(w, sign, body)`` with ``body`` a concept, And or Or; then a
*positive* And child of an And is merged into it (its weights multiply in) and a positive
weight-1 Or child of an Or is merged into it. A weighted Or child is kept: ``w·E[Or]`` is not an
Or of weighted children. Under product and guidance a weighted or negated And is distributed, ``2*~(b & ~c)`` →
``2*~b & 2*c`` (an And is a weighted sum, so this is exact for its terms), and then merged like
any positive And child; product's "no positive child" ``E_0`` is decided, once, on the result. This is the compiler's
reading of §4 too: it makes ``compose(simplify(e)) == compose(e)`` hold (the literal reading,
``E_0 − E[b & ~c]`` for a negated And at the root or in an Or, does not survive ``simplify``
folding ``~a & ~a`` into ``2*~a``). Logic never distributes (``1 − P(b)(1 − P(c))`` is not a
product). Then

- ``product``: a term is ``w·E[body]`` if positive, ``E_0 − w·E[body]`` if negative (the root
  and every Or child); an And is ``Σ w_i·sign_i·E[body_i]`` plus one ``E_0`` when no child is
  positive; an Or is ``−τ·logsumexp(−E[child_i]/τ)``; a concept is ``E_c``.
- ``guidance``: ``E = E_0 + D[root]`` with ``D_c = E_c − E_0``; a term is ``sign·w·D[body]``
  (``~f → −D[f]``, also as an Or child and at the root); an And is ``Σ w_i·sign_i·D[body_i]``
  (no ``E_0`` rule); an Or is ``−τ·logsumexp(−D[child_i]/τ)``. A weighted Or child is
  ``w·D[body]``, so ``a | 2*b`` mixes ``p_a`` with ``p_0 (p_b/p_0)²`` — not product's ``p_b²``.
- ``logic``: ``E = E_0 − log P(root)``; a term is ``P(body)^w`` if positive,
  ``(1 − P(body))^w`` if negative (so ``~(2*a)`` = ``2*~a`` = ``~a & ~a`` = ``(1 − P_a)²``, the
  normal form's reading); ``P(And) = Π P(child)``; ``P(Or) = 1 − Π (1 − P(child))``. Computed in
  log space. Logic is therefore not invariant under ``simplify``: ``~(a & a)`` is ``1 − P_a²``
  but its simplification ``2*~a`` is ``(1 − P_a)²``.

**Exact samples** (:func:`exact_samples`): a piecewise-constant proposal over a fine grid of cell
centres (inverse CDF, then a uniform position inside the cell), corrected by rejection with
acceptance ``q(x) / (q(centre)·e^m)``, where the margin ``m`` bounds the within-cell variation of
``log q`` (the largest neighbour-to-neighbour difference on the grid; a draw that breaks the
bound raises). The accepted draws are therefore exact draws from ``q``; the grid only sets the
acceptance rate (≈ 0.8–0.95). The grid itself enters only through cell masses, so there is no
discretisation error in the samples. :func:`exact_density_grid` (for plots and integrals) is a
midpoint rule: relative error O(h²) ≈ 1e-5 at 512 cells per side.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Mapping, NamedTuple

import numpy as np

from ..errors import CompileError, UnknownConceptError
from ..expr import And, Concept, Expr, Or, split_term

__all__ = [
    "BOUNDS", "AREA", "CONCEPTS", "SCORES", "energies", "log_probs", "base_energy", "library",
    "training_data", "log_normalizer", "reference_energy", "exact_log_density",
    "exact_density_grid", "exact_samples", "DensityGrid",
]

BOUNDS: tuple[float, float] = (-3.0, 3.0)
"""The box, the same interval for both coordinates."""
AREA: float = (BOUNDS[1] - BOUNDS[0]) ** 2
LOG_AREA: float = math.log(AREA)
SEMANTICS = ("product", "guidance", "logic")


def _exp(t):
    try:
        return t.exp()          # a torch tensor
    except AttributeError:
        return np.exp(t)        # a numpy array or scalar


def _bump(d2, width: float = 1.0):
    """A score from −3 far away to +3 where ``d2`` = 0 (squared distance, length scale ``width``)."""
    return -3.0 + 6.0 * _exp(-d2 / (2.0 * width ** 2))


# The scores s_c(x, y): P(c|x) = σ(s_c). Written with arithmetic only, so one formula serves
# numpy arrays and torch tensors (float32 or float64) alike.
SCORES: dict[str, Callable] = {
    "left":   lambda x, y: -1.5 * x,                                # soft half-plane x < 0
    "right":  lambda x, y: 1.5 * x,                                 # soft half-plane x > 0
    "bottom": lambda x, y: -1.5 * y,                                # soft half-plane y < 0
    "top":    lambda x, y: 1.5 * y,                                 # soft half-plane y > 0
    "center": lambda x, y: _bump(x * x + y * y),                    # blob at the origin
    "ring":   lambda x, y: _bump((x * x + y * y - 4.0) ** 2 / 4.0),   # annulus at radius 2
    "diag":   lambda x, y: _bump((x - y) ** 2 / 2.0),               # band along y = x
    "corner": lambda x, y: _bump((x - 1.5) ** 2 + (y - 1.5) ** 2),  # blob at (1.5, 1.5)
}
CONCEPTS: tuple[str, ...] = tuple(SCORES)


def _np_log_sigmoid(s: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -s)


@functools.cache
def log_normalizer(concept: str) -> float:
    """``log Z_c``, ``Z_c = ∫ p_0(x) P(c|x) dx`` = the mean of ``P(c|x)`` over the box.

    Tensor-product Gauss–Legendre with 256 nodes per axis in float64 (the integrand is smooth:
    exact to ≈ 1e-15). Example: ``log_normalizer("left") == log(0.5)`` by symmetry.
    """
    t, w = np.polynomial.legendre.leggauss(256)
    lo, hi = BOUNDS
    nodes = lo + (hi - lo) * (t + 1.0) / 2.0
    x, y = np.meshgrid(nodes, nodes, indexing="ij")
    p = np.exp(_np_log_sigmoid(SCORES[_check_concept(concept)](x, y)))
    return float(math.log(w @ p @ w / 4.0))  # mean = ∫∫ / area, and the rule integrates over 4


def _check_concept(name: str) -> str:
    if name not in SCORES:
        raise UnknownConceptError(f"toy2d has no concept {name!r}; it has {', '.join(CONCEPTS)}")
    return name


# --- numpy: per-concept quantities ------------------------------------------------------------

def _split_xy(xy) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape[-1] != 2:
        raise ValueError(f"toy2d points have 2 coordinates, got an array of shape {xy.shape}")
    return xy[..., 0], xy[..., 1]


def _np_leaves(names, xy, kind: str) -> tuple[dict, dict, np.ndarray]:
    """Energies, log-probabilities and the base energy of the named concepts at ``xy [N, 2]``."""
    x, y = _split_xy(xy)
    base = np.full(x.shape, LOG_AREA)
    lp = {c: _np_log_sigmoid(SCORES[_check_concept(c)](x, y)) for c in names}
    shift = (lambda c: log_normalizer(c)) if kind == "energy" else (lambda c: 0.0)
    en = {c: base - lp[c] + shift(c) for c in names}
    return en, lp, base


# --- the exact composed energy (docs/design.md §4, from scratch) --------------------------------------

class _Node(NamedTuple):
    op: str                       # "and" | "or"
    terms: tuple                  # ((w, sign, body), ...)


def _normal(e: Expr, linear: bool = True) -> tuple[float, int, object]:
    """The normal form of a term: ``(w, sign, body)``, body a Concept or an And/Or ``_Node``.

    ``linear`` (product and guidance, where an And is a weighted sum): the weight and sign of
    an And term move into its terms, ``2*~(b & ~c)`` → ``2*~b & 2*c``, so it merges into an
    enclosing And and gets product's ``E_0`` (once) only when no term of the result is
    positive.
    """
    w, sign, body = split_term(e)
    if isinstance(body, (And, Or)):
        op = "and" if isinstance(body, And) else "or"
        terms: list = []
        for t in body.terms:
            cw, cs, cb = _normal(t, linear)
            if isinstance(cb, _Node) and cb.op == op and cs > 0 and (op == "and" or cw == 1.0):
                terms.extend((cw * gw, gs, gb) for gw, gs, gb in cb.terms)  # flatten
            else:
                terms.append((cw, cs, cb))
        if linear and op == "and":  # weight and sign move into the sum's terms
            terms, w, sign = [(w * cw, sign * cs, cb) for cw, cs, cb in terms], 1.0, 1
        body = _Node(op, tuple(terms))
    return w, sign, body


def _logsumexp(arrays: list[np.ndarray]) -> np.ndarray:
    a = np.stack(arrays)
    m = np.max(a, axis=0)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return m_safe + np.log(np.sum(np.exp(a - m_safe), axis=0))


def _log1mexp(a: np.ndarray) -> np.ndarray:
    """``log(1 − exp(a))`` for ``a ≤ 0``, accurate at both ends."""
    with np.errstate(divide="ignore"):
        return np.where(a > -math.log(2.0), np.log(-np.expm1(a)), np.log1p(-np.exp(a)))


def reference_energy(expr: Expr | str, energies: Mapping[str, np.ndarray],
                     base: np.ndarray | None = None, *, semantics: str = "product",
                     or_temperature: float = 1.0,
                     log_probs: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """The composed energy of ``expr`` from per-concept arrays: a float64 oracle for the compiler.

    ``energies`` maps each concept key (``"red"``, ``"color=red"``) to ``E_c`` at some points,
    ``base`` is ``E_0`` there, and ``log_probs`` maps keys to ``log P(c|x)`` (``logic`` only).
    Implements docs/design.md §4 as read in this module's docstring; parametric concepts are not
    supported. Raises ``CompileError`` when ``E_0`` is needed and ``base`` is None.

    Example:
        >>> e = {"a": np.array([1.0, 2.0]), "b": np.array([0.5, 0.5])}
        >>> reference_energy("a & 2*b", e).tolist()
        [2.0, 3.0]
    """
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
    tau = float(or_temperature)
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"or_temperature must be finite and > 0, got {or_temperature!r}")
    expr = _parse(expr)
    table = log_probs if semantics == "logic" else energies
    if table is None:
        raise ValueError("semantics='logic' needs log_probs (log P(c|x) per concept)")
    oracle = _Oracle(expr, table, base, tau)
    root = _normal(expr, linear=semantics != "logic")
    if semantics == "product":
        return oracle.p_term(root)
    if semantics == "guidance":
        w, s, b = root
        return oracle.e0() + w * s * oracle.g_body(b)
    return oracle.e0() - oracle.l_term(root)


class _Oracle:
    """The three semantics of docs/design.md §4 read literally, over per-concept arrays:
    ``p_*`` energies under product, ``g_*`` ``D = E − E_0`` under guidance, ``l_*`` log P under
    logic, each of a body (a concept, or an And/Or of ``(w, sign, body)`` terms) or a term."""

    def __init__(self, expr: Expr, table: Mapping[str, np.ndarray], base: np.ndarray | None,
                 tau: float) -> None:
        self.expr, self.table, self.base, self.tau = expr, table, base, tau

    def leaf(self, c: Concept) -> np.ndarray:
        if c.is_parametric:
            raise UnknownConceptError(f"parametric concept {c} is not supported here")
        try:
            return np.asarray(self.table[c.key], dtype=np.float64)
        except KeyError:
            raise UnknownConceptError(f"unknown concept {c.key!r}; known: "
                                      f"{', '.join(map(str, self.table))}") from None

    def e0(self) -> np.ndarray:
        if self.base is None:
            raise CompileError(f"{self.expr} needs a base energy E_0: anchor the negation "
                               "(`x & ~a`), or give a base")
        return np.asarray(self.base, dtype=np.float64)

    def p_body(self, b):
        if isinstance(b, Concept):
            return self.leaf(b)
        if b.op == "and":
            total = sum(w * s * self.p_body(cb) for w, s, cb in b.terms)
            return total + self.e0() if all(s < 0 for _, s, _ in b.terms) else total
        return -self.tau * _logsumexp([-self.p_term(t) / self.tau for t in b.terms])

    def p_term(self, t):
        w, s, b = t
        return w * self.p_body(b) if s > 0 else self.e0() - w * self.p_body(b)

    def g_body(self, b):
        if isinstance(b, Concept):
            return self.leaf(b) - self.e0()
        if b.op == "and":
            return sum(w * s * self.g_body(cb) for w, s, cb in b.terms)
        return -self.tau * _logsumexp([-(w * s * self.g_body(cb)) / self.tau
                                       for w, s, cb in b.terms])

    def l_body(self, b):
        if isinstance(b, Concept):
            return self.leaf(b)
        if b.op == "and":
            return sum(self.l_term(t) for t in b.terms)
        return _log1mexp(sum(_log1mexp(self.l_term(t)) for t in b.terms))

    def l_term(self, t):
        w, s, b = t
        lp = self.l_body(b)
        return w * (lp if s > 0 else _log1mexp(lp))


def _parse(expr: Expr | str) -> Expr:
    if isinstance(expr, str):
        from ..syntax import parse
        return parse(expr)
    return expr


def exact_log_density(expr: Expr | str, xy: np.ndarray, semantics: str = "product",
                      or_temperature: float = 1.0, *, kind: str = "energy") -> np.ndarray:
    """The exact unnormalised log density ``−E(x)`` of ``expr`` over toy2d, float64, ``[N]``.

    ``kind="energy"`` uses the normalised energies ``E_c = −log p(x|c)`` (what
    ``library("energy")`` exposes); ``kind="classifier"`` uses ``E_c = E_0 − log P(c|x)`` (what
    ``library("classifier")`` exposes: it differs by ``log Z_c``, which moves OR's mixture
    weights). Points outside the box get ``−inf``.

    Example:
        >>> d = exact_log_density("left & top", np.zeros((1, 2)))  # p_left p_top at the origin
        >>> bool(np.isclose(d[0], 2 * math.log(0.5 / 36 / 0.5)))
        True
    """
    if kind not in ("energy", "classifier"):
        raise ValueError(f"kind must be 'energy' or 'classifier', got {kind!r}")
    expr = _parse(expr)
    from ..expr import concepts
    names = [c.key for c in concepts(expr)]
    en, lp, base = _np_leaves(names, xy, kind)
    out = -reference_energy(expr, en, base, semantics=semantics, or_temperature=or_temperature,
                            log_probs=lp)
    x, y = _split_xy(xy)
    lo, hi = BOUNDS
    inside = (x >= lo) & (x <= hi) & (y >= lo) & (y <= hi)
    return np.where(inside, out, -np.inf)


class DensityGrid(NamedTuple):
    """A density on the grid of cell centres: ``density[j, i] = p(x[i], y[j])`` (imshow order
    with ``origin="lower"``), normalised so that ``density.sum() * cell**2 == 1``."""
    x: np.ndarray
    y: np.ndarray
    density: np.ndarray
    cell: float


@functools.lru_cache(maxsize=16)
def _grid(expr: Expr, semantics: str, tau: float, kind: str, resolution: int):
    lo, hi = BOUNDS
    h = (hi - lo) / resolution
    c = lo + h * (np.arange(resolution) + 0.5)
    xx, yy = np.meshgrid(c, c)                                          # [R, R], [j, i] = (y_j, x_i)
    logq = exact_log_density(expr, np.stack([xx, yy], -1).reshape(-1, 2), semantics, tau,
                             kind=kind).reshape(resolution, resolution)
    top = np.max(logq)
    q = np.exp(logq - top)
    for a in (c, logq, q):
        a.setflags(write=False)
    return c, h, logq, q


def exact_density_grid(expr: Expr | str, semantics: str = "product", resolution: int = 256,
                       or_temperature: float = 1.0, *, kind: str = "energy") -> DensityGrid:
    """The normalised density of ``expr`` at the centres of a ``resolution``² grid on the box.

    Midpoint rule: the normaliser has relative error O(h²) (≈ 1e-5 at 512 cells per side).

    Example:
        >>> g = exact_density_grid("center | corner", resolution=64)
        >>> bool(np.isclose(g.density.sum() * g.cell ** 2, 1.0))
        True
    """
    c, h, _, q = _grid(_parse(expr), semantics, float(or_temperature), kind, int(resolution))
    return DensityGrid(c, c, q / (q.sum() * h * h), h)


def exact_samples(expr: Expr | str, n: int, seed: int = 0, semantics: str = "product",
                  or_temperature: float = 1.0, *, kind: str = "energy",
                  resolution: int = 512) -> np.ndarray:
    """``n`` exact draws ``[n, 2]`` (float64) from the composed density of ``expr``.

    Grid proposal plus a rejection correction (module docstring): the draws are exact, the grid
    only sets the acceptance rate. Deterministic given ``seed``.

    Example:
        >>> exact_samples("left & top", 3, seed=1).shape
        (3, 2)
    """
    expr = _parse(expr)
    tau = float(or_temperature)
    c, h, logq, q = _grid(expr, semantics, tau, kind, int(resolution))
    with np.errstate(invalid="ignore"):
        steps = [np.abs(np.diff(logq, axis=a)) for a in (0, 1)]
    margin = sum(float(np.nanmax(np.where(np.isfinite(s), s, np.nan))) for s in steps) + 1e-6
    cdf = np.cumsum(q.ravel())
    rng = np.random.default_rng(seed)
    out, have = [], 0
    while have < n:
        m = int(1.3 * (n - have)) + 64
        cells = np.minimum(np.searchsorted(cdf, rng.random(m) * cdf[-1], side="right"),
                           cdf.size - 1)
        j, i = np.divmod(cells, logq.shape[1])
        pts = np.stack([c[i], c[j]], -1) + (rng.random((m, 2)) - 0.5) * h     # [m, 2]
        log_ratio = exact_log_density(expr, pts, semantics, tau, kind=kind) - logq[j, i] - margin
        if np.any(log_ratio > 0):
            raise RuntimeError(f"exact_samples: the density of {expr} varies more within a grid "
                               f"cell than the margin {margin:.3g}; raise resolution")
        keep = pts[np.log(rng.random(m)) < log_ratio]
        out.append(keep)
        have += len(keep)
    return np.concatenate(out)[:n]


# --- torch: concept energies, log-probabilities, the library, training data ---------------------

class _ToyFunction:
    """A toy2d head as a torch function ``x [B, 2] -> [B]`` (any float dtype, differentiable)."""

    def __init__(self, concept: str, what: str) -> None:
        self.concept, self.what = concept, what

    def __call__(self, x):
        import torch.nn.functional as F
        if x.shape[-1] != 2:
            raise ValueError(f"toy2d points have 2 coordinates, got a tensor of shape "
                             f"{tuple(x.shape)}")
        if self.what == "base":
            return x[..., 0] * 0.0 + LOG_AREA                         # constant, but in the graph
        log_p = F.logsigmoid(SCORES[self.concept](x[..., 0], x[..., 1]))   # [B]
        if self.what == "log_prob":
            return log_p
        return (LOG_AREA + log_normalizer(self.concept)) - log_p

    def __repr__(self) -> str:
        return f"toy2d.{self.what}({self.concept!r})" if self.concept else "toy2d.base_energy"


base_energy = _ToyFunction("", "base")
"""``E_0(x) = log 36``: the uniform base on the box, as a torch function ``[B, 2] -> [B]``."""


def energies() -> dict[str, Callable]:
    """The normalised concept energies ``E_c = −log p(x|c)`` as torch functions ``[B, 2] -> [B]``.

    Example:
        >>> import torch
        >>> energies()["left"](torch.zeros(1, 2)).shape
        torch.Size([1])
    """
    return {c: _ToyFunction(c, "energy") for c in CONCEPTS}


def log_probs() -> dict[str, Callable]:
    """The classifier heads ``log P(c|x)`` as torch functions ``[B, 2] -> [B]``."""
    return {c: _ToyFunction(c, "log_prob") for c in CONCEPTS}


def library(kind: str = "energy"):
    """A ``ConceptLibrary`` of the toy2d concepts over the uniform base, ready to ``compose``.

    ``kind="energy"``: heads are the normalised energies (OR mixes the concepts' densities with
    equal weight). ``kind="classifier"``: heads return ``log P(c|x)``, so ``E_c = E_0 − log
    P(c|x)`` (unnormalised by ``log Z_c``; what ``semantics="logic"`` expects). The library
    carries ``sample_shape = (2,)`` and ``bounds = BOUNDS`` for the samplers.

    Example:
        >>> lib = library()                 # doctest: +SKIP
        >>> E = conceptalg.compose("left & top", lib)  # doctest: +SKIP
    """
    if kind not in ("energy", "classifier"):
        raise ValueError(f"kind must be 'energy' or 'classifier', got {kind!r}")
    from ..library import ConceptLibrary
    lib = ConceptLibrary()
    heads = energies() if kind == "energy" else log_probs()
    for name, fn in heads.items():
        lib.add(name, fn, kind="energy" if kind == "energy" else "log_prob")
    lib.set_base(base_energy)
    for attr, value in (("sample_shape", (2,)), ("bounds", BOUNDS)):
        try:
            setattr(lib, attr, value)
        except AttributeError:  # a library with __slots__ or a read-only property
            pass
    return lib


def training_data(concept: str, n: int, seed: int = 0, *, dtype=None):
    """``n`` exact draws ``Tensor[n, 2]`` from ``p(x|c)``, deterministic given ``seed``.

    Rejection from the uniform base with acceptance ``P(c|x)`` (exact: ``P ≤ 1``).

    Example:
        >>> training_data("top", 4, seed=0).shape
        torch.Size([4, 2])
    """
    import torch
    score = SCORES[_check_concept(concept)]
    rng = np.random.default_rng(seed)
    lo, hi = BOUNDS
    out, have = [], 0
    while have < n:
        m = int(1.2 * (n - have) / math.exp(log_normalizer(concept))) + 64
        pts = lo + (hi - lo) * rng.random((m, 2))
        keep = pts[np.log(rng.random(m)) < _np_log_sigmoid(score(pts[:, 0], pts[:, 1]))]
        out.append(keep)
        have += len(keep)
    return torch.as_tensor(np.concatenate(out)[:n],
                           dtype=dtype if dtype is not None else torch.get_default_dtype())
