"""compose(): the three semantics of docs/design.md §4 against hand-written float64 formulas, OR
temperature and log-weights, the normal form, errors, one evaluation per leaf, gradients,
torch.compile, calibrate()."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conceptalg import (And, CompileError, Concept, ConceptLibrary, Not, Or, UnknownConceptError,
                        Weighted, compose, parse, simplify)
from conceptalg.compiler import explain, log1mexp, normal_form
from conceptalg.expr import NODE_TYPES, Bound

F64 = torch.float64


def _quadratics(names="abcd", seed=0):
    """Energy functions E_c(x) = Σ s_c (x − μ_c)² + b_c on x[B, 3], with different offsets."""
    g = torch.Generator().manual_seed(seed)
    fns = {}
    for n in names:
        mu = torch.randn(3, generator=g, dtype=F64)
        s = torch.rand(3, generator=g, dtype=F64) + 0.5
        b = float(torch.randn(1, generator=g, dtype=F64)) * 2
        fns[n] = lambda x, mu=mu, s=s, b=b: ((x - mu) ** 2 * s).sum(-1) + b
    return fns


LEAVES = _quadratics()


def base_energy(x):
    return 0.1 * (x ** 2).sum(-1) + 0.3


def _x(n=64, seed=1):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=F64) * 1.5


def softmin(*es, tau=1.0, lw=None):
    lw = lw or [0.0] * len(es)
    return -tau * torch.logsumexp(torch.stack([l - e / tau for e, l in zip(es, lw)]), dim=0)


def _values(x):
    return {n: f(x) for n, f in LEAVES.items()}, base_energy(x)


# --- product semantics ------------------------------------------------------------------------
# (expression, oracle(E, E0), needs a base)
PRODUCT = [
    ("a", lambda E, E0: E["a"], False),
    ("a & b", lambda E, E0: E["a"] + E["b"], False),
    ("a & ~b", lambda E, E0: E["a"] - E["b"], False),
    ("2*a & b*3", lambda E, E0: 2 * E["a"] + 3 * E["b"], False),
    ("a & a", lambda E, E0: 2 * E["a"], False),
    ("~a & ~b", lambda E, E0: E0 - E["a"] - E["b"], True),
    ("(~a & ~b) & c", lambda E, E0: E["c"] - E["a"] - E["b"], False),
    ("c & (~a | b)", lambda E, E0: E["c"] + softmin(E0 - E["a"], E["b"]), True),
    ("~~a", lambda E, E0: E["a"], False),
    ("~~~a", lambda E, E0: E0 - E["a"], True),
    ("2*~a", lambda E, E0: E0 - 2 * E["a"], True),
    ("b & 0.001*~a", lambda E, E0: E["b"] - 0.001 * E["a"], False),
    ("~a", lambda E, E0: E0 - E["a"], True),
    ("a | ~b", lambda E, E0: softmin(E["a"], E0 - E["b"]), True),
    ("a | 2*~b", lambda E, E0: softmin(E["a"], E0 - 2 * E["b"]), True),
    ("a | b | c", lambda E, E0: softmin(E["a"], E["b"], E["c"]), False),
    ("a | (b | c)", lambda E, E0: softmin(E["a"], E["b"], E["c"]), False),
    ("a | ~~(b | c)", lambda E, E0: softmin(E["a"], E["b"], E["c"]), False),
    ("2 * (a | b)", lambda E, E0: 2 * softmin(E["a"], E["b"]), False),
    ("a | 2 * (b | c)", lambda E, E0: softmin(E["a"], 2 * softmin(E["b"], E["c"])), False),
    ("~(a | b)", lambda E, E0: E0 - softmin(E["a"], E["b"]), True),
    ("c & ~(a | b)", lambda E, E0: E["c"] - softmin(E["a"], E["b"]), False),
    ("~(a & b)", lambda E, E0: E0 - E["a"] - E["b"], True),
    ("~(~a & ~b)", lambda E, E0: E["a"] + E["b"], False),
    ("c & ~(a & ~b)", lambda E, E0: E["c"] - E["a"] + E["b"], False),
    ("2 * (~a & ~b)", lambda E, E0: E0 - 2 * E["a"] - 2 * E["b"], True),
    ("c & 2 * (a & ~b)", lambda E, E0: E["c"] + 2 * E["a"] - 2 * E["b"], False),
    ("a & b | c & ~d", lambda E, E0: softmin(E["a"] + E["b"], E["c"] - E["d"]), False),
    ("(~a & ~b) | c", lambda E, E0: softmin(E0 - E["a"] - E["b"], E["c"]), True),
    ("(a | b) & (a | b)", lambda E, E0: 2 * softmin(E["a"], E["b"]), False),
    ("a & (b | c) & ~(b | c)", lambda E, E0: E["a"] + 0 * E["b"], False),
]


def test_product_table_covers_every_node_type():
    seen = set()
    for text, _, _ in PRODUCT:
        stack = [parse(text)]
        while stack:
            node = stack.pop()
            seen.add(type(node))
            stack.extend(node.children())
    # a binding composes under logic only (refused here): tests/test_binding_compile.py
    assert seen == set(NODE_TYPES) - {Bound}


@pytest.mark.parametrize("text, oracle, needs_base", PRODUCT, ids=[c[0] for c in PRODUCT])
def test_product_semantics_with_base(text, oracle, needs_base):
    x = _x()
    E, E0 = _values(x)
    energy = compose(text, LEAVES, base=base_energy)
    torch.testing.assert_close(energy(x), oracle(E, E0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("text, oracle, needs_base", PRODUCT, ids=[c[0] for c in PRODUCT])
def test_product_semantics_without_base(text, oracle, needs_base):
    x = _x()
    E, _ = _values(x)
    if needs_base:
        with pytest.raises(CompileError, match=r"(?i)anchor the negation: `x & ~a`, or give a base"):
            compose(text, LEAVES)
    else:
        torch.testing.assert_close(compose(text, LEAVES)(x), oracle(E, None), rtol=1e-10,
                                   atol=1e-10)


def test_base_is_evaluated_only_when_the_plan_uses_it():
    calls = []
    base = lambda x: calls.append(1) or base_energy(x)  # noqa: E731
    compose("a & ~b", LEAVES, base=base)(_x())
    assert calls == []
    compose("~a", LEAVES, base=base)(_x())
    assert calls == [1]


# --- OR temperature and log-weights -------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.01, 0.5, 1.0, 3.0, 100.0])
def test_or_temperature(tau):
    x = _x()
    E, E0 = _values(x)
    got = compose("a | b & ~c", LEAVES, or_temperature=tau)(x)
    torch.testing.assert_close(got, softmin(E["a"], E["b"] - E["c"], tau=tau), rtol=1e-10,
                               atol=1e-10)


def test_or_temperature_to_zero_is_the_minimum():
    x = _x()
    E, _ = _values(x)
    got = compose("a | b | c", LEAVES, or_temperature=1e-4)(x)
    torch.testing.assert_close(got, torch.minimum(torch.minimum(E["a"], E["b"]), E["c"]),
                               atol=1e-3, rtol=0)


LOG_WEIGHTS = [
    ("dict", "a | b & c", {"a": 0.0, "b & c": -1.2}, lambda E: softmin(E["a"], E["b"] + E["c"], lw=[0, -1.2])),
    ("sequence", "a | b & c", [0.5, -1.2], lambda E: softmin(E["a"], E["b"] + E["c"], lw=[0.5, -1.2])),
    ("nested", "d & (a | b)", {"b": 2.0}, lambda E: E["d"] + softmin(E["a"], E["b"], lw=[0, 2.0])),
    ("spelling", "a | 2*b", {"b*2": -0.3}, lambda E: softmin(E["a"], 2 * E["b"], lw=[0, -0.3])),
    ("with tau", "a | b", {"a": 1.0}, lambda E: softmin(E["a"], E["b"], tau=0.5, lw=[1.0, 0])),
]


@pytest.mark.parametrize("kind, text, weights, oracle", LOG_WEIGHTS, ids=[c[0] for c in LOG_WEIGHTS])
def test_or_log_weights(kind, text, weights, oracle):
    x = _x()
    E, _ = _values(x)
    tau = 0.5 if kind == "with tau" else 1.0
    got = compose(text, LEAVES, or_log_weights=weights, or_temperature=tau)(x)
    torch.testing.assert_close(got, oracle(E), rtol=1e-10, atol=1e-10)


BAD_LOG_WEIGHTS = [
    ("not a disjunct", "a | b", {"c": 1.0}, "not a disjunct"),
    ("sequence without root or", "a & (b | c)", [0.0, 1.0], "needs an OR at the root"),
    ("wrong length", "a | b", [0.0], "has 1 values for the 2 disjuncts"),
    ("nan", "a | b", {"a": float("nan")}, "finite"),
]


@pytest.mark.parametrize("case, text, weights, message", BAD_LOG_WEIGHTS,
                         ids=[c[0] for c in BAD_LOG_WEIGHTS])
def test_bad_or_log_weights(case, text, weights, message):
    with pytest.raises(CompileError, match=message):
        compose(text, LEAVES, or_log_weights=weights)


# --- guidance semantics ---------------------------------------------------------------------
GUIDANCE = [
    ("a", lambda D, E0: E0 + D["a"]),
    ("2*a", lambda D, E0: E0 + 2 * D["a"]),
    ("a & b", lambda D, E0: E0 + D["a"] + D["b"]),
    ("a & ~b", lambda D, E0: E0 + D["a"] - D["b"]),
    ("~a", lambda D, E0: E0 - D["a"]),
    ("~a & ~b", lambda D, E0: E0 - D["a"] - D["b"]),
    ("3*a & 0.5*~b", lambda D, E0: E0 + 3 * D["a"] - 0.5 * D["b"]),
    ("~~a", lambda D, E0: E0 + D["a"]),
    ("a | b", lambda D, E0: E0 + softmin(D["a"], D["b"])),
    ("a | ~b", lambda D, E0: E0 + softmin(D["a"], -D["b"])),
    ("c & (~a | b)", lambda D, E0: E0 + D["c"] + softmin(-D["a"], D["b"])),
    ("~(a | b)", lambda D, E0: E0 - softmin(D["a"], D["b"])),
]


@pytest.mark.parametrize("text, oracle", GUIDANCE, ids=[c[0] for c in GUIDANCE])
def test_guidance_semantics(text, oracle):
    x = _x()
    E, E0 = _values(x)
    D = {k: v - E0 for k, v in E.items()}
    got = compose(text, LEAVES, base=base_energy, semantics="guidance")(x)
    torch.testing.assert_close(got, oracle(D, E0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("text", ["a | b", "a & b | c", "a | b | 2 * c"])
def test_guidance_or_equals_product_or_of_guidance_children(text):
    x = _x()
    lib = ConceptLibrary(LEAVES, base=base_energy)
    guided = compose(text, lib, semantics="guidance")(x)
    children = [compose(t, lib, semantics="guidance")(x) for t in parse(text).terms]
    torch.testing.assert_close(guided, softmin(*children), rtol=1e-10, atol=1e-10)


def test_guidance_needs_a_base():
    with pytest.raises(CompileError, match="guidance.*needs a base"):
        compose("a & b", LEAVES, semantics="guidance")


# --- logic semantics -------------------------------------------------------------------------
def _classifiers(names="abc", seed=3, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    w = {n: torch.randn(3, generator=g, dtype=F64) * scale for n in names}
    logits = {n: (lambda x, w=w[n]: x @ w) for n in names}
    lib = ConceptLibrary(base=base_energy)
    for n in names:
        lib.add(n, lambda x, f=logits[n]: torch.nn.functional.logsigmoid(f(x)), kind="log_prob")
    return lib, logits


LOGIC = [
    ("a", lambda P: P["a"]),
    ("a & b", lambda P: P["a"] * P["b"]),
    ("~a", lambda P: 1 - P["a"]),
    ("~~a", lambda P: P["a"]),
    ("a | b", lambda P: 1 - (1 - P["a"]) * (1 - P["b"])),
    ("a | b | c", lambda P: 1 - (1 - P["a"]) * (1 - P["b"]) * (1 - P["c"])),
    ("2*a", lambda P: P["a"] ** 2),
    ("2*~a", lambda P: (1 - P["a"]) ** 2),
    ("~(a & b)", lambda P: 1 - P["a"] * P["b"]),
    ("~(a & ~b)", lambda P: 1 - P["a"] * (1 - P["b"])),
    ("a & ~(b | c)", lambda P: P["a"] * (1 - (1 - (1 - P["b"]) * (1 - P["c"])))),
    ("c & (~a | b)", lambda P: P["c"] * (1 - P["a"] * (1 - P["b"]))),
    ("0.5*a | 2*~b", lambda P: 1 - (1 - P["a"] ** 0.5) * (1 - (1 - P["b"]) ** 2)),
    ("2*(a & b) & c", lambda P: (P["a"] * P["b"]) ** 2 * P["c"]),
    ("~~(a | b) & c", lambda P: (1 - (1 - P["a"]) * (1 - P["b"])) * P["c"]),
]


@pytest.mark.parametrize("text, oracle", LOGIC, ids=[c[0] for c in LOGIC])
def test_logic_semantics(text, oracle):
    x = _x()
    lib, logits = _classifiers()
    P = {n: torch.sigmoid(f(x)) for n, f in logits.items()}
    got = compose(text, lib, semantics="logic")(x)
    torch.testing.assert_close(got, base_energy(x) - torch.log(oracle(P)), rtol=1e-9, atol=1e-9)


def test_logic_is_stable_at_extreme_probabilities():
    lib, logits = _classifiers(scale=40.0)
    x = _x(256)
    x.requires_grad_(True)
    la = logits["a"](x)
    assert la.abs().max() > 60  # probabilities within e-60 of 0 and 1
    for text, log_p in [("~a", torch.nn.functional.logsigmoid(-la)),
                        ("a", torch.nn.functional.logsigmoid(la))]:
        got = compose(text, lib, semantics="logic")(x)
        torch.testing.assert_close(got, base_energy(x) - log_p, rtol=1e-9, atol=1e-9)
        (grad,) = torch.autograd.grad(got.sum(), x)
        assert torch.isfinite(grad).all()


def test_log1mexp_matches_float64_and_has_finite_gradients():
    u = -torch.logspace(-30, 2, 200, dtype=F64)
    u.requires_grad_(True)
    out = log1mexp(u)
    from decimal import Decimal, localcontext
    with localcontext() as ctx:  # a 60-digit oracle
        ctx.prec = 60
        exact = [float((1 - Decimal(float(v)).exp()).ln()) for v in u.detach()]
    torch.testing.assert_close(out, torch.tensor(exact, dtype=F64), rtol=1e-14, atol=0)
    (g,) = torch.autograd.grad(out.sum(), u)
    assert torch.isfinite(g).all()


LOGIC_ERRORS = [
    ("energy heads", lambda: compose("a & b", LEAVES, base=base_energy, semantics="logic"),
     "needs classifier heads"),
    ("no base", lambda: compose("a", {"a": lambda x: x.sum(-1)}, semantics="logic"),
     "needs a probabilistic library"),
    ("or temperature", lambda: compose("a | b", _classifiers()[0], semantics="logic",
                                       or_temperature=0.5), "apply to the product"),
]


@pytest.mark.parametrize("case, build, message", LOGIC_ERRORS, ids=[c[0] for c in LOGIC_ERRORS])
def test_logic_errors(case, build, message):
    with pytest.raises(CompileError, match=message):
        build()


def test_classifier_heads_under_product_are_e0_minus_log_p():
    x = _x()
    lib, logits = _classifiers()
    logp = {n: torch.nn.functional.logsigmoid(f(x)) for n, f in logits.items()}
    E0 = base_energy(x)
    got = compose("a & ~b", lib)(x)
    torch.testing.assert_close(got, (E0 - logp["a"]) - (E0 - logp["b"]), rtol=1e-10, atol=1e-10)
    got = compose("a & b", lib, semantics="guidance")(x)
    torch.testing.assert_close(got, E0 - logp["a"] - logp["b"], rtol=1e-10, atol=1e-10)


# --- properties: simplify and spellings -----------------------------------------------------
_leaf = st.sampled_from([Concept("a"), Concept("b"), Concept("c")])
_weight = st.sampled_from([0.5, 2.0, 3.0])
_trees = st.recursive(
    _leaf,
    lambda kids: st.one_of(
        kids.map(Not),
        st.tuples(_weight, kids).map(lambda t: Weighted(*t)),
        st.lists(kids, min_size=2, max_size=3).map(lambda ts: And(*ts)),
        st.lists(kids, min_size=2, max_size=3).map(lambda ts: Or(*ts)),
    ),
    max_leaves=7,
)


@settings(max_examples=150, deadline=None)
@given(_trees, st.sampled_from(["product", "guidance"]))
def test_simplify_preserves_the_energy(expr, semantics):
    x = _x(16)
    lib = ConceptLibrary(LEAVES, base=base_energy)
    expected = compose(expr, lib, semantics=semantics)(x)
    got = compose(simplify(expr), lib, semantics=semantics)(x)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(_trees)
def test_simplify_never_needs_a_base_the_original_did_not(expr):
    try:
        energy = compose(expr, LEAVES)
    except CompileError:
        return
    torch.testing.assert_close(compose(simplify(expr), LEAVES)(_x(8)), energy(_x(8)),
                               rtol=1e-9, atol=1e-9)


def _spell(e, draw) -> str:
    """Another spelling of ``e``: word and Unicode operators, postfix weights, extra parens."""
    if isinstance(e, Concept):
        return e.name
    if isinstance(e, Not):
        return f"{draw(st.sampled_from(['~', '!', 'not ', '¬']))}({_spell(e.expr, draw)})"
    if isinstance(e, Weighted):
        w = repr(e.weight)
        inner = f"({_spell(e.expr, draw)})"
        return f"{w} * {inner}" if draw(st.booleans()) else f"{inner} * {w}"
    op = draw(st.sampled_from([" & ", " and ", " ∧ "] if isinstance(e, And)
                              else [" | ", " or ", " ∨ "]))
    return "(" + op.join(_spell(t, draw) for t in e.terms) + ")"


@settings(max_examples=100, deadline=None)
@given(_trees, st.data(), st.sampled_from(["product", "guidance", "logic"]))
def test_equivalent_spellings_give_the_same_energy(expr, data, semantics):
    text = _spell(expr, data.draw)
    lib = _classifiers()[0] if semantics == "logic" else ConceptLibrary(LEAVES, base=base_energy)
    x = _x(16)
    torch.testing.assert_close(compose(text, lib, semantics=semantics)(x),
                               compose(str(expr), lib, semantics=semantics)(x),
                               rtol=1e-12, atol=1e-12)


def test_weight_spellings_and_aliases():
    x = _x()
    a = compose("2*a & ~b", LEAVES)(x)
    for text in ["a*2 and not b", "a * 2 ∧ ¬b", "(a) * 2 & !b", "a & a & ~b", "4*a*0.5 & ~b"]:
        torch.testing.assert_close(compose(text, LEAVES)(x), a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("text, semantics, expected", [
    ("c & ~(a & ~b) | ~~d", "product", "c & ~a & b | d"),
    ("2 * (~a & ~b)", "product", "2 * ~a & 2 * ~b"),
    ("~(a & a)", "product", "2 * ~a"),
    ("a | (b | ~~c)", "product", "a | b | c"),
    ("c & ~(a & ~b)", "logic", "c & ~(a & ~b)"),
    ("2 * (a & b) & c", "logic", "2 * a & 2 * b & c"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_normal_form(text, semantics, expected):
    assert str(normal_form(text, semantics)) == expected


# --- errors -----------------------------------------------------------------------------------
def test_unknown_concept_has_known_names_and_did_you_mean():
    with pytest.raises(UnknownConceptError) as info:
        compose("a & rde", {"a": LEAVES["a"], "red": LEAVES["b"]})
    msg = str(info.value)
    assert "unknown concept `rde`" in msg and "did you mean `red`?" in msg
    assert "Known concepts: a, red" in msg and "in `a & rde`" in msg


def test_every_unknown_name_is_reported():
    with pytest.raises(UnknownConceptError) as info:
        compose("rde & bleu & a", {"a": LEAVES["a"], "red": LEAVES["b"], "blue": LEAVES["c"]})
    assert "`rde`" in str(info.value) and "`bleu`" in str(info.value)


@pytest.mark.parametrize("word, op", [("AND", "&"), ("OR", "|"), ("NOT", "~")])
def test_operator_spelled_as_a_name_suggests_the_operator(word, op):
    with pytest.raises(UnknownConceptError, match=f"write `{re.escape(op)}`"):
        compose(f"a & {word}", LEAVES)


def test_ambiguous_bare_name_lists_the_qualified_choices():
    lib = {"color=red": LEAVES["a"], "tone=red": LEAVES["b"]}
    with pytest.raises(UnknownConceptError, match="write `color=red` or `tone=red`"):
        compose("red", lib)
    x = _x()
    torch.testing.assert_close(compose("tone=red", lib)(x), LEAVES["b"](x))


def test_bad_semantics_and_temperature():
    with pytest.raises(CompileError, match="unknown semantics 'fuzzy'"):
        compose("a", LEAVES, semantics="fuzzy")
    for tau in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(CompileError, match="or_temperature"):
            compose("a | b", LEAVES, or_temperature=tau)


def test_errors_are_value_and_lookup_errors():
    with pytest.raises(ValueError):
        compose("~a", LEAVES)
    with pytest.raises(LookupError):
        compose("zzz", LEAVES)


def test_wrong_output_shape_is_reported():
    energy = compose("a", {"a": lambda x: x})
    with pytest.raises(CompileError, match=r"returned shape \(4, 3\).*expected \(4,\)"):
        energy(_x(4))


# --- evaluation: once per leaf, one call per model ------------------------------------------
class CountingHeads(torch.nn.Module):
    """A trunk with linear heads; records every concept_energies call."""

    def __init__(self, names, n_args=2):
        super().__init__()
        self.names = list(names)
        self.trunk = torch.nn.Linear(3, 8).double()
        self.heads = torch.nn.Linear(8, len(self.names)).double()
        self.calls = []

    def concept_energies(self, x, heads, args=None):
        self.calls.append((tuple(heads), args))
        h = torch.tanh(self.trunk(x))  # [B, 8]
        rows = [self.names.index(n) for n in heads]
        out = h @ self.heads.weight[rows].T + self.heads.bias[rows]  # [B, K]
        if args is not None:
            extra = [x.new_zeros(x.shape[0]) if a is None else
                     ((x[:, :2] - a) ** 2).sum(-1) for a in args]
            out = out + torch.stack(extra, -1)
        return out

    def single(self, name):
        return lambda x: self.concept_energies(x, [name])[:, 0]


def test_each_leaf_once_and_one_call_per_model():
    model = CountingHeads(["r", "s", "t", "base"])
    counts = {}

    def counted(name, fn):
        def f(x):
            counts[name] = counts.get(name, 0) + 1
            return fn(x)
        return f

    lib = ConceptLibrary({"a": counted("a", LEAVES["a"]), "b": counted("b", LEAVES["b"])})
    lib.add_model(model, ["r", "s", "t"])
    lib.set_base(model, "base")
    energy = compose("(a & r | ~s & a) & ~(b | r) | t & ~a & b | ~t", lib)
    x = _x(8)
    with torch.no_grad():
        oracle_heads = {n: model.single(n)(x) for n in ["r", "s", "t", "base"]}
    model.calls.clear()
    got = energy(x)
    assert counts == {"a": 1, "b": 1}
    assert len(model.calls) == 1
    assert sorted(model.calls[0][0]) == ["base", "r", "s", "t"]
    E = {"a": LEAVES["a"](x), "b": LEAVES["b"](x), **oracle_heads}
    expected = softmin(
        softmin(E["a"] + E["r"], E["a"] - E["s"]) - softmin(E["b"], E["r"]),
        E["t"] - E["a"] + E["b"], E["base"] - E["t"])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # the base is not needed by this expression, so no base column is requested without it
    model.calls.clear()
    compose("r & s", lib)(x)
    assert model.calls[0][0] == ("r", "s")


def test_two_spellings_of_one_concept_are_one_leaf():
    calls = []
    fn = lambda x: calls.append(1) or LEAVES["a"](x)  # noqa: E731
    lib = ConceptLibrary({"red": fn}, factors={"color": ["red"]})
    x = _x()
    torch.testing.assert_close(compose("red & color=red", lib)(x), 2 * LEAVES["a"](x))
    assert len(calls) == 1


def test_parametric_concepts_dict_and_model():
    x = _x(8)
    at = lambda x, args: ((x[:, :2] - args) ** 2).sum(-1)  # noqa: E731
    seen = []
    energy = compose("at(0.3, 0.7) & ~at(-1, 2) & a",
                     {"at": lambda x, args: seen.append(args.shape) or at(x, args), **LEAVES})
    expected = (at(x, torch.tensor([0.3, 0.7], dtype=F64)) - at(x, torch.tensor([-1.0, 2.0], dtype=F64))
                + LEAVES["a"](x))
    torch.testing.assert_close(energy(x), expected, rtol=1e-12, atol=1e-12)
    assert seen == [(8, 2), (8, 2)]

    model = CountingHeads(["at", "r"])
    lib = ConceptLibrary().add_model(model, ["at", "r"], parametric=["at"])
    energy = compose("at(0.3, 0.7) & at(-1, 2) & r", lib)
    model.calls.clear()
    got = energy(x)
    assert len(model.calls) == 1
    heads, args = model.calls[0]
    assert heads == ("at", "at", "r") and args[2] is None and args[0].shape == (8, 2)
    with torch.no_grad():
        h = model.single("at")(x)
        expected = (2 * h + at(x, torch.tensor([0.3, 0.7], dtype=F64))
                    + at(x, torch.tensor([-1.0, 2.0], dtype=F64)) + model.single("r")(x))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_gradients_flow_to_x_and_to_model_parameters():
    model = CountingHeads(["r", "s"])
    lib = ConceptLibrary(LEAVES, base=base_energy).add_model(model, ["r", "s"])
    x = _x(8).requires_grad_(True)
    E = compose("a & ~r | ~s", lib)(x)
    (gx,) = torch.autograd.grad(E.sum(), x, retain_graph=True)
    x2 = x.detach().clone().requires_grad_(True)
    ref = softmin(LEAVES["a"](x2) - model.single("r")(x2), base_energy(x2) - model.single("s")(x2))
    (gref,) = torch.autograd.grad(ref.sum(), x2)
    torch.testing.assert_close(gx, gref, rtol=1e-10, atol=1e-10)
    E.sum().backward()
    assert model.trunk.weight.grad is not None


def test_models_are_submodules():
    model = CountingHeads(["r"])
    energy = compose("r", ConceptLibrary().add_model(model, ["r"]))
    assert any(m is model for m in energy.modules())
    energy.eval()
    assert not model.training


def test_torch_compile_traces_the_program():
    model = CountingHeads(["r", "s"])
    lib = ConceptLibrary(LEAVES, base=base_energy).add_model(model, ["r", "s"])
    lib.add("at", lambda x, args: ((x[:, :2] - args) ** 2).sum(-1), parametric=True)
    energy = compose("a & ~r | 2 * ~s | at(0.5, 0.5) & ~(b | c)", lib, or_temperature=0.7)
    x = _x(8)
    compiled = torch.compile(energy, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), energy(x), rtol=1e-12, atol=1e-12)


# --- repr, explain, leaf energies, hints -------------------------------------------------------
def test_repr_and_explain():
    model = CountingHeads(["r", "s"])
    lib = ConceptLibrary(LEAVES, base=base_energy).add_model(model, ["r", "s"])
    energy = compose("r & ~s | ~(a & ~b)", lib, or_temperature=0.5)
    assert repr(energy) == "ComposedEnergy('r & ~s | ~(a & ~b)', semantics='product', or_temperature=0.5)"
    text = energy.explain()
    assert "normal form: r & ~s | ~a & b" in text
    assert "model CountingHeads, head 'r'" in text and "batched: 1 call for 2 heads" in text
    assert "E = softmin(E[r] - E[s], -E[a] + E[b])" in text
    assert "-0.5*logsumexp_i(-e_i/0.5)" in text
    assert "E_0" not in text.split("formula:")[0]  # not evaluated: the plan does not use it
    g = compose("~a & b", lib, semantics="guidance").explain()
    assert "D = -D[a] + D[b]" in g and "E = E_0 + D" in g
    lg = compose("a | ~b", _classifiers()[0], semantics="logic").explain()
    assert "P = 1 - (1 - P[a])*(1 - (1 - P[b]))" in lg


def test_explain_without_a_library_assumes_a_base():
    text = explain("~a & ~b")
    assert "E = -E[a] - E[b] + E_0" in text


def test_leaf_energies():
    lib, logits = _classifiers()
    lib.add("temp", LEAVES["a"], temperature=0.25)
    energy = compose("a & ~temp", lib)
    x = _x()
    leaves = energy.leaf_energies(x)
    assert set(leaves) == {"a", "temp", "(base)"}
    torch.testing.assert_close(leaves["temp"], LEAVES["a"](x) / 0.25)
    torch.testing.assert_close(leaves["a"], base_energy(x) - torch.nn.functional.logsigmoid(logits["a"](x)))
    torch.testing.assert_close(energy(x), leaves["a"] - leaves["temp"])


def test_sampling_hints_are_copied():
    lib = ConceptLibrary(LEAVES)
    lib.sample_shape, lib.bounds = (3,), (-4.0, 4.0)
    energy = compose("a", lib)
    assert energy.sample_shape == (3,) and energy.bounds == (-4.0, 4.0)
    assert not hasattr(energy, "sampler_defaults")


# --- calibrate: OR proportions ------------------------------------------------------------------
def _shares(log_weights, log_z):
    logits = torch.tensor([lw + lz for lw, lz in zip(log_weights, log_z)], dtype=F64)
    return torch.softmax(logits, 0)


@pytest.mark.parametrize("semantics", ["product", "guidance"])
def test_calibrate_balances_an_or(semantics):
    # base N(0, 3²); a = N(2, 1) with mass e^-3 relative to b = N(-2, 1)
    lib = ConceptLibrary({"a": lambda x: (x[:, 0] - 2) ** 2 / 2 + 3,
                          "b": lambda x: (x[:, 0] + 2) ** 2 / 2},
                         base=lambda x: x[:, 0] ** 2 / 18)
    log_z = [math.log(math.sqrt(2 * math.pi)) - 3, math.log(math.sqrt(2 * math.pi))]
    raw = _shares([0, 0], log_z)
    assert abs(float(raw[0]) - 0.0474) < 1e-3  # uncalibrated: 4.7 % / 95.3 %
    x0 = 3 * torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=F64)
    energy = compose("a | b", lib, semantics=semantics)
    weights = energy.calibrate(x0)
    assert set(weights) == {"a", "b"}
    log_z0 = math.log(math.sqrt(2 * math.pi) * 3)
    for (k, est), lz in zip(energy.log_partition_ratios.items(), log_z):
        assert abs(est - (lz - log_z0)) < 0.05
    shares = _shares([weights["a"], weights["b"]], log_z)
    assert abs(float(shares[0]) - 0.5) < 0.02
    # the weights are usable as they are, and give the mixture they promise on a grid
    grid = torch.linspace(-14, 14, 20001, dtype=F64)[:, None]
    balanced = compose("a | b", lib, semantics=semantics, or_log_weights=weights)
    p = torch.exp(-balanced(grid))
    share_a = float(p[grid[:, 0] > 0].sum() / p.sum())
    assert abs(share_a - 0.5) < 0.03  # (the components overlap by Φ(-2) ≈ 2 %)


def test_calibrate_needs_an_or_and_a_base():
    with pytest.raises(CompileError, match="no OR"):
        compose("a & b", LEAVES, base=base_energy).calibrate(_x())
    with pytest.raises(CompileError, match="needs a base"):
        compose("a | b", LEAVES).calibrate(_x())


def test_calibrate_with_proportions():
    lib = ConceptLibrary(LEAVES, base=base_energy)
    energy = compose("a | b", lib)
    x0 = _x(512)
    w = energy.calibrate(x0, proportions={"a": 0.25, "b": 0.75})
    ratios = energy.log_partition_ratios
    assert w["a"] == pytest.approx(math.log(0.25) - ratios["a"])
    assert w["b"] == pytest.approx(math.log(0.75) - ratios["b"])
    with pytest.raises(CompileError, match="not disjuncts"):
        energy.calibrate(x0, proportions={"c": 1.0})


@pytest.mark.gpu
def test_runs_on_cuda_with_parametric_buffers():
    model = CountingHeads(["r", "at"])
    lib = ConceptLibrary(base=base_energy).add_model(model, ["r", "at"], parametric=["at"])
    energy = compose("at(0.2, 0.1) & ~r | at(0.5, -0.5) & ~~r | ~at(1, 1)", lib)
    x = _x(32)
    expected = energy(x)
    energy = energy.to("cuda")
    assert next(model.parameters()).is_cuda
    got = energy(x.to("cuda"))
    torch.testing.assert_close(got.cpu(), expected.detach(), rtol=1e-9, atol=1e-9)
