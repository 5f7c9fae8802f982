"""The σ (noise-level) contract of compose() (docs/design.md §0): σ-aware leaves against hand-written
float64 formulas under the three semantics, the composed score (energy heads, score-only heads,
both), the errors where energy values are needed from a score-only head, the library's default
semantics and the guidance scale, and what explain() shows."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from conceptalg import CompileError, ConceptLibrary, compose
from conceptalg.compiler import explain
from conceptalg.library import accepts_sigma

F64 = torch.float64
B = 16
MU = {"a": [1.0, 0.0, -1.0], "b": [-0.5, 1.5, 0.0], "c": [0.0, -2.0, 1.0], "base": [0.0, 0.0, 0.0]}
S2 = {"a": 0.5, "b": 1.0, "c": 2.0, "base": 9.0}  # s_c²: the heads' own variances
LOGIT = {"a": ([1.0, -2.0, 0.5], 0.3), "b": ([0.0, 1.0, 1.0], -0.5), "c": ([-1.0, 0.5, 0.0], 1.0)}


# --- the oracle: Gaussians at noise level σ (variance s_c² + σ²), in float64 -------------------
def gauss_energy(name, x, sigma):
    """E_c(x, σ) = |x − μ_c|² / (2 (s_c² + σ²)); ``sigma`` is a [B] tensor."""
    mu = torch.tensor(MU[name], dtype=x.dtype)
    return ((x - mu) ** 2).sum(-1) / (2 * (S2[name] + sigma ** 2))  # [B]


def gauss_score(name, x, sigma):
    """−∇_x E_c(x, σ) = −(x − μ_c) / (s_c² + σ²)."""
    mu = torch.tensor(MU[name], dtype=x.dtype)
    return -(x - mu) / (S2[name] + sigma ** 2)[:, None]  # [B, 3]


def log_p(name, x, sigma):
    """A σ-aware classifier head: log p(c|x, σ) = log σ((w·x + b) / sqrt(1 + σ²))."""
    w, b = LOGIT[name]
    z = (x @ torch.tensor(w, dtype=x.dtype) + b) / torch.sqrt(1 + sigma ** 2)
    return torch.nn.functional.logsigmoid(z)


def softmin(*es):
    return -torch.logsumexp(-torch.stack(es), dim=0)


def _x(n=B, seed=0):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=F64) * 1.5


SIGMAS = [("float", 0.7), ("none", None), ("tensor", "per-sample")]


def _sigma(kind_value):
    """(what compose receives, the [B] float64 oracle)."""
    value = kind_value
    if value is None:
        return None, torch.zeros(B, dtype=F64)
    if value == "per-sample":
        s = torch.linspace(0.0, 2.0, B, dtype=F64)
        return s, s
    return value, torch.full((B,), value, dtype=F64)


# --- the sources: plain callables, a batched model, a score-only model --------------------------
class GaussHeads(torch.nn.Module):
    """σ-aware energies of several heads in one call; records (heads, sigma) of each call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def concept_energies(self, x, heads, sigma=None):
        self.calls.append((tuple(heads), sigma))
        return torch.stack([gauss_energy(h, x, sigma) for h in heads], dim=1)  # [B, K]


class GaussScores(torch.nn.Module):
    """Scores only: concept_scores(x, heads, sigma) -> [B, K, 3]; no energies."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def concept_scores(self, x, heads, sigma=None):
        self.calls.append((tuple(heads), sigma))
        return torch.stack([gauss_score(h, x, sigma) for h in heads], dim=1)  # [B, K, 3]


class ClassifierHeads(torch.nn.Module):
    def concept_energies(self, x, heads, sigma=None):
        return torch.stack([gauss_energy(h, x, sigma) if h == "base" else log_p(h, x, sigma)
                            for h in heads], dim=1)


def _fn(name):
    return lambda x, sigma: gauss_energy(name, x, sigma)


def _library(source):
    """A library over concepts a, b, c and base E_0, computed by ``source``."""
    if source == "dict":  # plain callables with a `sigma` parameter
        return ConceptLibrary({n: _fn(n) for n in "abc"}, base=_fn("base"))
    if source == "model":
        model = GaussHeads()
        return ConceptLibrary().add_model(model, list("abc")).set_base(model, "base")
    if source == "score-model":
        model = GaussScores()
        lib = ConceptLibrary().add_model(model, list("abc"), kind="score")
        return lib.set_base(model, "base", kind="score")
    if source == "mixed":  # a, b give only scores; c is a function; E_0 an energy model
        lib = ConceptLibrary().add_model(GaussScores(), ["a", "b"], kind="score")
        return lib.add("c", _fn("c")).set_base(GaussHeads(), "base")
    if source == "logic-dict":
        lib = ConceptLibrary(base=_fn("base"))
        for n in "abc":
            lib.add(n, lambda x, sigma, n=n: log_p(n, x, sigma), kind="log_prob")
        return lib
    if source == "logic-model":
        model = ClassifierHeads()
        lib = ConceptLibrary().add_model(model, list("abc"), kind="log_prob")
        return lib.set_base(model, "base")
    raise AssertionError(source)


def _E(x, s):
    return {n: gauss_energy(n, x, s) for n in "abc"}, gauss_energy("base", x, s)


# --- energies at a noise level, three semantics -------------------------------------------------
W = 2.5  # the guidance scale of the guidance table
ENERGIES = [  # (expression, semantics, guidance scale, oracle(E, E0) or oracle(P, E0) for logic)
    ("a", "product", None, lambda E, E0: E["a"]),
    ("a & ~b", "product", None, lambda E, E0: E["a"] - E["b"]),
    ("2*a & 0.5*~c", "product", None, lambda E, E0: 2 * E["a"] - 0.5 * E["c"]),
    ("~a & ~b", "product", None, lambda E, E0: E0 - E["a"] - E["b"]),
    ("a | b & ~c", "product", None, lambda E, E0: softmin(E["a"], E["b"] - E["c"])),
    ("(a | ~b) & c", "product", None, lambda E, E0: E["c"] + softmin(E["a"], E0 - E["b"])),
    ("a", "guidance", W, lambda E, E0: E0 + W * (E["a"] - E0)),
    ("a & b", "guidance", W, lambda E, E0: E0 + W * (E["a"] + E["b"] - 2 * E0)),
    ("a & ~b", "guidance", W, lambda E, E0: E0 + W * (E["a"] - E["b"])),
    ("~a & 2*b", "guidance", W, lambda E, E0: E0 + W * (2 * (E["b"] - E0) - (E["a"] - E0))),
    ("a | b", "guidance", W, lambda E, E0: E0 + W * softmin(E["a"] - E0, E["b"] - E0)),
    ("a & b", "guidance", None, lambda E, E0: E["a"] + E["b"] - E0),
]
LOGIC = [  # (expression, oracle(P, E0)): E = E0 − log P
    ("a", lambda P, E0: E0 - torch.log(P["a"])),
    ("a & b", lambda P, E0: E0 - torch.log(P["a"] * P["b"])),
    ("a | ~b", lambda P, E0: E0 - torch.log(1 - (1 - P["a"]) * P["b"])),
    ("~(a & b)", lambda P, E0: E0 - torch.log(1 - P["a"] * P["b"])),
    ("2*a & ~c", lambda P, E0: E0 - torch.log(P["a"] ** 2 * (1 - P["c"]))),
]


@pytest.mark.parametrize("sigma", [s[1] for s in SIGMAS], ids=[s[0] for s in SIGMAS])
@pytest.mark.parametrize("source", ["dict", "model"])
@pytest.mark.parametrize("text, semantics, w, oracle", ENERGIES,
                         ids=[f"{c[1]}:{c[0]}:w={c[2]}" for c in ENERGIES])
def test_energy_at_a_noise_level(text, semantics, w, oracle, source, sigma):
    x = _x()
    given, s = _sigma(sigma)
    energy = compose(text, _library(source), semantics=semantics, guidance_scale=w)
    assert energy.sigma_aware and not energy.score_only
    torch.testing.assert_close(energy(x, sigma=given), oracle(*_E(x, s)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sigma", [s[1] for s in SIGMAS], ids=[s[0] for s in SIGMAS])
@pytest.mark.parametrize("source", ["logic-dict", "logic-model"])
@pytest.mark.parametrize("text, oracle", LOGIC, ids=[c[0] for c in LOGIC])
def test_logic_at_a_noise_level(text, oracle, source, sigma):
    x = _x()
    given, s = _sigma(sigma)
    P = {n: log_p(n, x, s).exp() for n in "abc"}
    energy = compose(text, _library(source), semantics="logic")
    got = energy(x, given)
    torch.testing.assert_close(got, oracle(P, gauss_energy("base", x, s)), rtol=1e-9, atol=1e-9)


def test_sigma_none_is_the_data_level_and_changes_the_energy():
    x, lib = _x(), _library("dict")
    energy = compose("a & ~b", lib)
    torch.testing.assert_close(energy(x), energy(x, 0.0), rtol=0, atol=0)
    assert not torch.allclose(energy(x), energy(x, 1.0))


def test_unaware_leaves_ignore_sigma():
    seen = []

    def unaware(x):  # would raise TypeError if it were passed sigma
        seen.append(x.shape)
        return gauss_energy("c", x, torch.zeros(x.shape[0], dtype=x.dtype))

    def at(x, args, sigma):  # parametric and σ-aware
        return ((x[:, :2] - args) ** 2).sum(-1) / (1 + sigma ** 2)

    energy = compose("a & ~u & at(0.5, -1)", {"a": _fn("a"), "u": unaware, "at": at})
    x = _x()
    given, s = _sigma("per-sample")
    expected = (gauss_energy("a", x, s) - gauss_energy("c", x, 0 * s)
                + ((x[:, :2] - torch.tensor([0.5, -1.0], dtype=F64)) ** 2).sum(-1) / (1 + s ** 2))
    torch.testing.assert_close(energy(x, given), expected, rtol=1e-12, atol=1e-12)
    assert seen == [(B, 3)]
    only_unaware = compose("u", {"u": unaware})
    assert not only_unaware.sigma_aware
    torch.testing.assert_close(only_unaware(x, 5.0), only_unaware(x))


def test_a_sigma_aware_model_is_one_batched_call_with_a_B_tensor():
    lib = _library("model")
    model = lib.base.source
    energy = compose("a & ~b & 2*c", lib, semantics="guidance")
    x = _x().float()
    energy(x, torch.linspace(0, 1, B, dtype=F64))  # float64 σ for float32 x
    assert len(model.calls) == 1
    heads, sigma = model.calls[0]
    assert sorted(heads) == ["a", "b", "base", "c"]
    assert sigma.shape == (B,) and sigma.dtype == torch.float32
    torch.testing.assert_close(sigma, torch.linspace(0, 1, B))
    model.calls.clear()
    energy(x)
    assert torch.equal(model.calls[0][1], torch.zeros(B))  # None = the data level, as zeros


@pytest.mark.parametrize("fn, aware", [
    (lambda x, sigma: x, True),
    (lambda x, *, sigma=0.0: x, True),
    (lambda x, args, sigma=None: x, True),
    (lambda x: x, False),
    (lambda x, **kwargs: x, False),
    (eval("lambda x, sigma, /: x"), False),  # positional-only: cannot be passed as sigma=
    (abs, False),
    (math.sqrt, False),
    (functools.partial(lambda x, scale, sigma: x, scale=2.0), True),
    (torch.nn.Identity(), False),
    (type("M", (torch.nn.Module,), {"forward": lambda self, x, sigma=None: x})(), True),
    (type("C", (), {"__call__": lambda self, x, sigma: x})(), True),
], ids=["positional", "keyword-only", "parametric", "plain", "kwargs", "positional-only",
        "builtin", "C function", "partial", "module", "module with sigma", "callable object"])
def test_which_callables_are_sigma_aware(fn, aware):
    assert accepts_sigma(fn) is aware


BAD_SIGMAS = [
    ("negative", -0.1, "finite and >= 0"),
    ("nan", float("nan"), "finite and >= 0"),
    ("inf", float("inf"), "finite and >= 0"),
    ("string", "0.5", "a number or a tensor"),
    ("bool", True, "a number or a tensor"),
    ("wrong length", torch.ones(B + 1), r"tensor \[B\] with B = 16.*shape \(17,\)"),
    ("column", torch.ones(B, 1), r"shape \(16, 1\)"),
    ("negative entry", torch.linspace(-1, 1, B), "finite and >= 0.*-1.0"),
    ("nan entry", torch.full((B,), float("nan")), "finite and >= 0"),
]


@pytest.mark.parametrize("case, sigma, message", BAD_SIGMAS, ids=[c[0] for c in BAD_SIGMAS])
@pytest.mark.parametrize("source", ["model", "unaware"])
def test_bad_sigma_is_a_value_error(case, sigma, message, source):
    lib = _library("model") if source == "model" else {"a": lambda x: x.sum(-1)}
    energy = compose("a", lib)
    for run in (energy.forward, energy.score):
        with pytest.raises(ValueError, match=message):
            run(_x(), sigma)


def test_torch_compile_traces_sigma():
    energy = compose("a & ~b | 2 * c", _library("model"))
    compiled = torch.compile(energy, backend="eager", fullgraph=True)
    x, s = _x(), torch.linspace(0, 1, B, dtype=F64)
    with torch.no_grad():
        for sigma in (0.3, s):
            torch.testing.assert_close(compiled(x, sigma), energy(x, sigma), rtol=1e-12, atol=1e-12)


# --- the composed score -------------------------------------------------------------------------
LINEAR = [  # (expression, semantics, guidance scale, oracle(S, S0)) with S = −∇E
    ("a", "product", None, lambda S, S0: S["a"]),
    ("a & ~b", "product", None, lambda S, S0: S["a"] - S["b"]),
    ("2*a & 0.5*~c", "product", None, lambda S, S0: 2 * S["a"] - 0.5 * S["c"]),
    ("~a", "product", None, lambda S, S0: S0 - S["a"]),
    ("~a & ~b", "product", None, lambda S, S0: S0 - S["a"] - S["b"]),
    ("a & ~a", "product", None, lambda S, S0: 0 * S0),
    ("a & b", "guidance", W, lambda S, S0: S0 + W * (S["a"] + S["b"] - 2 * S0)),
    ("~a & 3*b", "guidance", 0.5, lambda S, S0: S0 + 0.5 * (3 * (S["b"] - S0) - (S["a"] - S0))),
    ("a", "guidance", None, lambda S, S0: S["a"]),
]


def _S(x, s):
    return {n: gauss_score(n, x, s) for n in "abc"}, gauss_score("base", x, s)


@pytest.mark.parametrize("sigma", [s[1] for s in SIGMAS], ids=[s[0] for s in SIGMAS])
@pytest.mark.parametrize("source", ["dict", "model", "score-model", "mixed"])
@pytest.mark.parametrize("text, semantics, w, oracle", LINEAR,
                         ids=[f"{c[1]}:{c[0]}:w={c[2]}" for c in LINEAR])
def test_score_of_a_linear_expression(text, semantics, w, oracle, source, sigma):
    x = _x()
    given, s = _sigma(sigma)
    energy = compose(text, _library(source), semantics=semantics, guidance_scale=w)
    got = energy.score(x, given)
    assert got.shape == x.shape
    torch.testing.assert_close(got, oracle(*_S(x, s)), rtol=1e-10, atol=1e-10)
    assert energy.score_only == (source in ("score-model", "mixed"))


@pytest.mark.parametrize("source", ["dict", "model"])
@pytest.mark.parametrize("text, semantics, w", [c[:3] for c in ENERGIES + LINEAR],
                         ids=[f"{c[1]}:{c[0]}:w={c[2]}" for c in ENERGIES + LINEAR])
def test_score_is_minus_the_gradient_of_forward(text, semantics, w, source):
    x = _x()
    sigma = torch.linspace(0.1, 1.5, B, dtype=F64)
    energy = compose(text, _library(source), semantics=semantics, guidance_scale=w)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(energy(xg, sigma).sum(), xg)
    torch.testing.assert_close(energy.score(x, sigma), -g, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("text", [c[0] for c in LOGIC])
def test_score_under_logic_differentiates_forward(text):
    x = _x()
    energy = compose(text, _library("logic-model"), semantics="logic")
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(energy(xg, 0.4).sum(), xg)
    torch.testing.assert_close(energy.score(x, 0.4), -g, rtol=1e-10, atol=1e-10)


def test_score_heads_are_divided_by_their_temperature_and_batched():
    scores, energies = GaussScores(), GaussHeads()
    hot = ConceptLibrary().add_model(scores, ["a", "b"], kind="score", temperature=0.5)
    cold = ConceptLibrary().add_model(energies, ["a", "b"], temperature=0.5)
    x = _x()
    got = compose("a & ~b", hot).score(x, 0.3)
    torch.testing.assert_close(got, compose("a & ~b", cold).score(x, 0.3), rtol=1e-12, atol=1e-12)
    S, _ = _S(x, torch.full((B,), 0.3, dtype=F64))
    torch.testing.assert_close(got, (S["a"] - S["b"]) / 0.5, rtol=1e-12, atol=1e-12)
    assert [c[0] for c in scores.calls] == [("a", "b")]


def test_score_of_score_heads_keeps_their_graph():
    class Learned(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(2.0, dtype=F64))

        def concept_scores(self, x, heads):
            return torch.stack([-self.scale * x for _ in heads], dim=1)

    model = Learned()
    energy = compose("a", ConceptLibrary().add_model(model, ["a"], kind="score"))
    assert energy.score_only and not energy.sigma_aware
    energy.score(_x(), 1.0).sum().backward()
    assert model.scale.grad is not None


# --- score-only heads: where energy values are needed -------------------------------------------
FIX = r"--parameterization energy"
SCORE_ONLY_ERRORS = [  # (case, source, expression, semantics, message)
    ("logic, score leaves", "score-model", "a & b", "logic", "concept `a` has only a score"),
]
# An OR over score-only heads composes as a mixture instead (tests/test_mixture.py): the
# ComposedEnergy itself still refuses it, and says that compose() makes it a mixture.
SCORE_ONLY_ORS = [  # (case, source, expression, semantics, the head named, branches)
    ("or", "score-model", "a | b", "product", "concept `a`", ["a", "b"]),
    ("or under and", "mixed", "c & (a | ~b)", "product", "concept `a`", ["c & a", "c & ~b"]),
    ("or, guidance", "score-model", "a & (b | c)", "guidance", "concept `a`",
     ["a & b", "a & c"]),
    ("or over energies, score base", "mixed-base", "a | b", "guidance", "the base E_0",
     ["a", "b"]),
]


def _error_library(source):
    if source == "mixed-base":  # energy heads, score-only base
        return ConceptLibrary({n: _fn(n) for n in "abc"}).set_base(GaussScores(), "base",
                                                                   kind="score")
    if source == "logic-score-base":
        lib = _library("logic-dict")
        return lib.set_base(GaussScores(), "base", kind="score")
    return _library(source)


@pytest.mark.parametrize("case, source, text, semantics, message", SCORE_ONLY_ERRORS,
                         ids=[c[0] for c in SCORE_ONLY_ERRORS])
def test_energy_values_from_a_score_only_head_fail_at_construction(case, source, text,
                                                                   semantics, message):
    with pytest.raises(CompileError, match=message) as info:
        compose(text, _error_library(source), semantics=semantics)
    assert "--parameterization energy" in str(info.value)


@pytest.mark.parametrize("case, source, text, semantics, head, branches", SCORE_ONLY_ORS,
                         ids=[c[0] for c in SCORE_ONLY_ORS])
def test_an_or_over_score_only_heads_composes_as_a_mixture(case, source, text, semantics, head,
                                                            branches):
    from conceptalg.compiler import ComposedEnergy, MixtureEnergy

    with pytest.raises(CompileError, match=rf"an OR mixes its disjuncts by their energy values, "
                                           rf"and {head} has only a score\. compose\(\) samples "
                                           rf"such an OR as a mixture.*--parameterization energy"):
        ComposedEnergy(text, _error_library(source), semantics=semantics)
    energy = compose(text, _error_library(source), semantics=semantics)
    assert isinstance(energy, MixtureEnergy) and energy.reason == head
    assert [str(b.expr) for b in energy.branches] == branches


def test_logic_over_a_score_only_base_composes_by_its_score():
    # classifier heads give log p(c|x) values, so logic needs only the base's score:
    # the composed energy is score-only, and forward says so
    energy = compose("a & ~b | c", _error_library("logic-score-base"), semantics="logic")
    assert energy.score_only
    assert energy.score(_x()).shape == _x().shape
    with pytest.raises(CompileError, match="energy values are unavailable: the base E_0"):
        energy(_x())


@pytest.mark.parametrize("source, text", [("score-model", "a & ~b"), ("mixed", "c & ~a"),
                                          ("score-model", "~c")])
def test_forward_of_a_score_only_energy_says_how_to_fix_it(source, text):
    energy = compose(text, _library(source))
    assert energy.score_only
    for call in (lambda: energy(_x()), lambda: energy.leaf_energies(_x()),
                 lambda: energy.calibrate(_x())):
        with pytest.raises(CompileError, match=r"energy values are unavailable: concept `\w+` "
                                               r"has only a score.*--parameterization energy.*"
                                               r"langevin"):
            call()


def test_an_unused_score_base_leaves_energies_available():
    lib = _error_library("mixed-base")
    energy = compose("a & ~b", lib)  # product with a positive term: E_0 is not needed
    assert not energy.score_only
    x = _x()
    E, _ = _E(x, torch.zeros(B, dtype=F64))
    torch.testing.assert_close(energy(x), E["a"] - E["b"], rtol=1e-12, atol=1e-12)
    with pytest.raises(CompileError, match="the base E_0 has only a score"):
        compose("a | b", lib).calibrate(x)


# --- semantics=None and the guidance scale ------------------------------------------------------
class Trained:
    """A trained-model stand-in: carries its own hints and gives a library."""

    def __init__(self, lib, **hints):
        self.lib = lib
        for k, v in hints.items():
            setattr(self, k, v)

    def as_concept_library(self):
        return self.lib


DEFAULTS = [  # (case, library hints, object hints, semantics arg, expected semantics, from library, w)
    ("no hint", {}, {}, None, "product", False, None),
    ("library default", {"default_semantics": "guidance"}, {}, None, "guidance", True, 1.0),
    ("library scale", {"default_semantics": "guidance", "guidance_scale": 3.0}, {}, None,
     "guidance", True, 3.0),
    ("model over library", {"default_semantics": "product"}, {"default_semantics": "guidance"},
     None, "guidance", True, 1.0),
    ("explicit wins", {"default_semantics": "guidance"}, {}, "product", "product", False, None),
    ("scale ignored off guidance", {"guidance_scale": 3.0}, {}, None, "product", False, None),
]


@pytest.mark.parametrize("case, lib_hints, obj_hints, semantics, expected, from_library, w",
                         DEFAULTS, ids=[c[0] for c in DEFAULTS])
def test_semantics_none_is_the_library_default(case, lib_hints, obj_hints, semantics, expected,
                                               from_library, w):
    lib = _library("dict")
    for k, v in lib_hints.items():
        setattr(lib, k, v)
    energy = compose("a & b", Trained(lib, **obj_hints) if obj_hints else lib, semantics=semantics)
    assert (energy.semantics, energy.semantics_from_library, energy.guidance_scale) == \
        (expected, from_library, w)
    x = _x()
    E, E0 = _E(x, torch.zeros(B, dtype=F64))
    oracle = E["a"] + E["b"] if expected == "product" else E0 + w * (E["a"] + E["b"] - 2 * E0)
    torch.testing.assert_close(energy(x), oracle, rtol=1e-12, atol=1e-12)


BAD_SCALES = [  # (case, semantics, guidance_scale, library hints, message)
    ("off guidance", "product", 2.0, {}, r"guidance_scale applies to semantics='guidance'"),
    ("off the default", None, 2.0, {"default_semantics": "product"},
     r"in force is 'product' \(the library's default\)"),
    ("zero", "guidance", 0.0, {}, "finite and > 0"),
    ("negative", "guidance", -1.0, {}, "finite and > 0"),
    ("inf", "guidance", float("inf"), {}, "finite and > 0"),
    ("nan", "guidance", float("nan"), {}, "finite and > 0"),
    ("not a number", "guidance", "big", {}, "must be a number"),
    ("library's", "guidance", None, {"guidance_scale": -2.0},
     "the library's guidance_scale must be finite and > 0"),
    ("bad default", None, None, {"default_semantics": "fuzzy"},
     "the library's default_semantics is 'fuzzy'"),
]


@pytest.mark.parametrize("case, semantics, w, hints, message", BAD_SCALES,
                         ids=[c[0] for c in BAD_SCALES])
def test_bad_guidance_scale_and_default_semantics(case, semantics, w, hints, message):
    lib = _library("dict")
    for k, v in hints.items():
        setattr(lib, k, v)
    with pytest.raises(CompileError, match=message):
        compose("a & b", lib, semantics=semantics, guidance_scale=w)


# --- explain and repr -----------------------------------------------------------------------------
def test_explain_shows_semantics_scale_and_leaf_kinds():
    lib = _library("mixed")
    lib.default_semantics, lib.guidance_scale = "guidance", 2.5
    energy = compose("a & ~c", lib)
    text = energy.explain()
    assert "semantics:   guidance (the library's default; guidance scale 2.5)" in text
    assert "E = E_0 + 2.5*D,  D[c] = E[c] - E_0" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    assert "score only" in lines["a"] and "σ-aware" in lines["a"]
    assert "σ-aware" in lines["c"] and "score only" not in lines["c"]
    assert "score only" not in lines["E_0"]
    assert repr(energy) == "ComposedEnergy('a & ~c', semantics='guidance', guidance_scale=2.5)"

    plain = compose("a & b", ConceptLibrary({"a": abs, "b": abs}))
    assert "σ-aware" not in plain.explain() and "semantics:   product\n" in plain.explain()
    assert "guidance scale 1)" in explain("a & b", semantics="guidance")
    assert "E = E_0 + 4*D" in explain("a & b", semantics="guidance", guidance_scale=4)
    assert "E = E_0 + D," in explain("a & b", semantics="guidance")
