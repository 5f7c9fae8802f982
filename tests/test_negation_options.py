"""Guidance's negated terms with their own weight and noise-level range (issue 22, part 2):
``negation_scale`` ν and ``negation_sigmas=(lo, hi)`` against hand-written float64 formulas on
analytic σ-aware Gaussian energies and scores — ``E = E_0 + w·(D⁺ − ν·1[lo ≤ σ ≤ hi]·D⁻)`` —
at a number, at no level (σ = 0) and at per-sample levels; their defaults (1 and every level,
the library's, a trained model's composition); and the error for each bad value."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import conceptalg
from conceptalg import CompileError, ConceptLibrary, compose
from conceptalg.compiler import ComposedEnergy, MixtureEnergy, explain

F64 = torch.float64
B = 12
MU = {"a": [1.0, 0.0, -1.0], "b": [-0.5, 1.5, 0.0], "c": [0.0, -2.0, 1.0], "base": [0.0, 0.0, 0.0]}
S2 = {"a": 0.5, "b": 1.0, "c": 2.0, "base": 9.0}
W, NU, LO, HI = 2.5, 0.4, 0.5, 1.5
ROOT = Path(__file__).resolve().parents[1]


def energy_of(name, x, sigma):
    """E_c(x, σ) = |x − μ_c|² / (2 (s_c² + σ²)), ``sigma`` [B]."""
    mu = torch.tensor(MU[name], dtype=x.dtype)
    return ((x - mu) ** 2).sum(-1) / (2 * (S2[name] + sigma ** 2))


def score_of(name, x, sigma):
    return -(x - torch.tensor(MU[name], dtype=x.dtype)) / (S2[name] + sigma ** 2)[:, None]


class Scores(torch.nn.Module):
    """A score-only model of the same Gaussians."""

    def concept_scores(self, x, heads, sigma=None):
        s = torch.zeros(x.shape[0], dtype=x.dtype) if sigma is None else sigma
        return torch.stack([score_of(h, x, s) for h in heads], dim=1)


def energies():
    fn = lambda n: (lambda x, sigma: energy_of(n, x, sigma))  # noqa: E731
    return ConceptLibrary({n: fn(n) for n in "abc"}, base=fn("base"))


def scores():
    model = Scores()
    lib = ConceptLibrary().add_model(model, list("abc"), kind="score")
    return lib.set_base(model, "base", kind="score")


def _x():
    return torch.randn(B, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 1.5


def gate(s, lo=LO, hi=HI):
    return ((s >= lo) & (s <= hi)).to(F64)


def softmin(*es):
    return -torch.logsumexp(-torch.stack(es), dim=0)


# (expression, oracle(D, g) of D, g the factor on the negated terms [B])
CASES = [
    ("a & ~b", lambda D, g: D["a"] - g * D["b"]),
    ("~a & 2*b & c", lambda D, g: 2 * D["b"] + D["c"] - g * D["a"]),
    ("~a & ~b", lambda D, g: -g * (D["a"] + D["b"])),
    ("a & 0.5 * ~c", lambda D, g: D["a"] - 0.5 * g * D["c"]),
    ("a & b", lambda D, g: D["a"] + D["b"]),                                   # no negation
]
OR_CASES = [
    ("a | ~b", lambda D, g: softmin(D["a"], -g * D["b"])),
    ("(a | b) & ~c", lambda D, g: softmin(D["a"], D["b"]) - g * D["c"]),
]
LEVELS = [("inside", 1.0), ("below", 0.2), ("above", 3.0), ("data level", None),
          ("per sample", "per-sample")]


def _levels(level):
    if level is None:
        return None, torch.zeros(B, dtype=F64)
    if level == "per-sample":
        s = torch.linspace(0.0, 2.0, B, dtype=F64)
        return s, s
    return level, torch.full((B,), level, dtype=F64)


def _D(x, s):
    e0 = energy_of("base", x, s)
    return {n: energy_of(n, x, s) - e0 for n in "abc"}, e0


@pytest.mark.parametrize("level", [v for _, v in LEVELS], ids=[k for k, _ in LEVELS])
@pytest.mark.parametrize("text, oracle", CASES + OR_CASES, ids=[c[0] for c in CASES + OR_CASES])
def test_energy_against_the_hand_formula(text, oracle, level):
    x = _x()
    given, s = _levels(level)
    energy = compose(text, energies(), semantics="guidance", guidance_scale=W,
                     negation_scale=NU, negation_sigmas=(LO, HI))
    D, e0 = _D(x, s)
    expected = e0 + W * oracle(D, NU * gate(s))
    torch.testing.assert_close(energy(x, given), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("library", ["energies", "scores"])
@pytest.mark.parametrize("level", [v for _, v in LEVELS], ids=[k for k, _ in LEVELS])
@pytest.mark.parametrize("text, oracle", CASES, ids=[c[0] for c in CASES])
def test_score_against_the_hand_formula(text, oracle, level, library):
    """The linear score (autograd of energies, or score heads' own scores) per regime."""
    x = _x()
    given, s = _levels(level)
    lib = energies() if library == "energies" else scores()
    energy = compose(text, lib, semantics="guidance", guidance_scale=W, negation_scale=NU,
                     negation_sigmas=(LO, HI))
    assert energy.score_only == (library == "scores")
    s0 = score_of("base", x, s)
    Dscore = {n: score_of(n, x, s) - s0 for n in "abc"}
    g = (NU * gate(s))[:, None]
    expected = s0 + W * oracle(Dscore, g)
    torch.testing.assert_close(energy.score(x, given), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("text, oracle", OR_CASES, ids=[c[0] for c in OR_CASES])
def test_score_of_an_or_over_energies(text, oracle):
    x = _x()
    given, s = _levels("per-sample")
    energy = compose(text, energies(), semantics="guidance", guidance_scale=W,
                     negation_scale=NU, negation_sigmas=(LO, HI))
    xg = x.clone().requires_grad_(True)
    D, e0 = _D(xg, s)
    (grad,) = torch.autograd.grad((e0 + W * oracle(D, NU * gate(s))).sum(), xg)
    torch.testing.assert_close(energy.score(x, given), -grad, rtol=1e-10, atol=1e-10)


def test_the_scale_is_a_weight_on_every_negated_term():
    """ν alone (every level) is the same energy as the weights written out."""
    x, s = _x(), torch.full((B,), 0.7, dtype=F64)
    a = compose("c & ~a & ~(2 * b)", energies(), semantics="guidance", guidance_scale=W,
                negation_scale=0.3)
    b = compose("c & 0.3 * ~a & 0.6 * ~b", energies(), semantics="guidance", guidance_scale=W)
    torch.testing.assert_close(a(x, s), b(x, s), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.score(x, 0.7), b.score(x, 0.7), rtol=1e-12, atol=1e-12)


def test_an_upper_bound_of_none_is_no_bound():
    x = _x()
    energy = compose("a & ~b", energies(), semantics="guidance", negation_sigmas=(0.5, None))
    assert energy.negation_sigmas == (0.5, math.inf)
    s = torch.full((B,), 1e6, dtype=F64)
    D, e0 = _D(x, s)
    torch.testing.assert_close(energy(x, 1e6), e0 + D["a"] - D["b"], rtol=1e-10, atol=1e-10)


# --- defaults ---------------------------------------------------------------------------------
def test_defaults_leave_the_energy_as_it_was():
    x, s = _x(), torch.full((B,), 0.8, dtype=F64)
    energy = compose("a & ~b", energies(), semantics="guidance", guidance_scale=W)
    assert (energy.negation_scale, energy.negation_sigmas) == (1.0, None)
    D, e0 = _D(x, s)
    torch.testing.assert_close(energy(x, s), e0 + W * (D["a"] - D["b"]), rtol=1e-10, atol=1e-10)
    assert "negat" not in energy.explain() and repr(energy).count("negation") == 0


@pytest.mark.parametrize("semantics", ["product", "logic"])
def test_other_semantics_have_no_negation_options(semantics):
    lib = energies()
    lib.negation_scale, lib.negation_sigmas = 0.5, (1.0, None)   # defaults: ignored here
    if semantics == "logic":
        lib = ConceptLibrary(base=lambda x, sigma: energy_of("base", x, sigma))
        lib.add("a", lambda x, sigma: torch.nn.functional.logsigmoid(x[:, 0]), kind="log_prob")
        lib.add("b", lambda x, sigma: torch.nn.functional.logsigmoid(x[:, 1]), kind="log_prob")
        lib.negation_scale = 0.5
    energy = compose("a & ~b", lib, semantics=semantics)
    assert (energy.negation_scale, energy.negation_sigmas) == (None, None)


def test_the_library_and_a_model_composition_carry_defaults():
    x, s = _x(), torch.linspace(0.0, 2.0, B, dtype=F64)
    lib = energies()
    lib.negation_scale, lib.negation_sigmas = NU, (LO, HI)
    energy = compose("a & ~b", lib, semantics="guidance", guidance_scale=W)
    assert (energy.negation_scale, energy.negation_sigmas) == (NU, (LO, HI))
    D, e0 = _D(x, s)
    expected = e0 + W * (D["a"] - NU * gate(s) * D["b"])
    torch.testing.assert_close(energy(x, s), expected, rtol=1e-10, atol=1e-10)
    # explicit values win over the library's
    energy = compose("a & ~b", lib, semantics="guidance", negation_scale=1.0,
                     negation_sigmas=(0.0, None))
    assert (energy.negation_scale, energy.negation_sigmas) == (1.0, (0.0, math.inf))
    # a trained model's config.composition (the key read when the library has none)
    inner = energies()
    model = SimpleNamespace(as_concept_library=lambda: inner,
                            config=SimpleNamespace(composition={"semantics": "guidance",
                                                                "negation_scale": 1.5,
                                                                "negation_sigmas": [1.0, None]}))
    from conceptalg.compiler.checks import composition_hint, resolve_negation

    assert composition_hint(model, inner, "negation_scale") == 1.5
    assert resolve_negation(model, inner, "guidance", True, None, None) == (1.5, (1.0, math.inf))


def test_explain_and_repr_show_the_setting():
    energy = compose("a & ~b", energies(), semantics="guidance", guidance_scale=W,
                     negation_scale=NU, negation_sigmas=(LO, None))
    text = energy.explain()
    assert "negation scale 0.4; negations at 0.5 <= σ" in text
    assert "negated terms: weight x 0.4 (negation_scale), counted only at 0.5 <= σ" in text
    assert repr(energy).endswith("negation_scale=0.4, negation_sigmas=(0.5, None))")
    assert "counted only at 0 <= σ <= 2" in explain("a & ~b", semantics="guidance",
                                                     negation_sigmas=(0, 2))


def test_a_mixture_passes_the_setting_to_every_branch():
    mixture = compose("a & ~b | c", scores(), semantics="guidance", guidance_scale=W,
                      negation_scale=NU, negation_sigmas=(LO, HI))
    assert isinstance(mixture, MixtureEnergy)
    assert (mixture.negation_scale, mixture.negation_sigmas) == (NU, (LO, HI))
    first, second = mixture.branches
    assert isinstance(first, ComposedEnergy)
    assert (first.negation_scale, first.negation_sigmas) == (NU, (LO, HI))
    x = _x()
    s = torch.linspace(0.0, 2.0, B, dtype=F64)
    s0 = score_of("base", x, s)
    expected = s0 + W * ((score_of("a", x, s) - s0)
                         - (NU * gate(s))[:, None] * (score_of("b", x, s) - s0))
    torch.testing.assert_close(first.score(x, s), expected, rtol=1e-10, atol=1e-10)
    assert "negated terms: weight x 0.4" in mixture.explain()


# --- errors ---------------------------------------------------------------------------------
BAD = [  # (id, keyword arguments, message part)
    ("negative scale", dict(negation_scale=-0.5), "negation_scale must be finite and >= 0"),
    ("nan scale", dict(negation_scale=float("nan")), "negation_scale must be finite and >= 0"),
    ("infinite scale", dict(negation_scale=math.inf), "negation_scale must be finite and >= 0"),
    ("text scale", dict(negation_scale="0.5"), "negation_scale must be a number"),
    ("bool scale", dict(negation_scale=True), "negation_scale must be a number"),
    ("reversed range", dict(negation_sigmas=(2.0, 1.0)), "0 <= lo < hi"),
    ("empty range", dict(negation_sigmas=(1.0, 1.0)), "0 <= lo < hi"),
    ("negative bound", dict(negation_sigmas=(-1.0, None)), "0 <= lo < hi"),
    ("infinite lower bound", dict(negation_sigmas=(math.inf, None)), "0 <= lo < hi"),
    ("nan bound", dict(negation_sigmas=(0.5, float("nan"))), "0 <= lo < hi"),
    ("one bound", dict(negation_sigmas=(1.0,)), "a pair (lo, hi)"),
    ("a number", dict(negation_sigmas=1.0), "a pair (lo, hi)"),
    ("text range", dict(negation_sigmas="1,2"), "a pair (lo, hi)"),
    ("text bound", dict(negation_sigmas=(0.5, "x")), "negation_sigmas[1] must be a number"),
]


@pytest.mark.parametrize("kw, message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_values_are_refused(kw, message):
    with pytest.raises(CompileError, match=re.escape(message)):
        compose("a & ~b", energies(), semantics="guidance", **kw)


@pytest.mark.parametrize("kw, message", [c[1:] for c in BAD[:2]], ids=[c[0] for c in BAD[:2]])
def test_a_bad_library_default_names_the_library(kw, message):
    lib = energies()
    for k, v in kw.items():
        setattr(lib, k, v)
    with pytest.raises(CompileError, match="the library's " + message):
        compose("a & ~b", lib, semantics="guidance")


@pytest.mark.parametrize("semantics", ["product", "logic"])
def test_explicit_options_under_another_semantics_are_refused(semantics):
    with pytest.raises(CompileError, match="negation_scale applies to semantics='guidance'"):
        explain("a & ~b", semantics=semantics, negation_scale=0.5)
    with pytest.raises(CompileError,
                       match="negation_scale and negation_sigmas apply to semantics='guidance'"):
        explain("a & ~b", semantics=semantics, negation_scale=0.5, negation_sigmas=(1, None))


def test_the_shipped_model_takes_the_options():
    model = conceptalg.load(ROOT / "models" / "shapes")
    energy = compose("circle & ~red", model, negation_scale=1.5, negation_sigmas=(1.0, None))
    assert energy.semantics == "guidance" and energy.negation_scale == 1.5
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        inside, outside = energy.score(x, 2.0), energy.score(x, 0.5)
        plain = compose("circle", model).score(x, 0.5)
    torch.testing.assert_close(outside, plain)
    assert not torch.allclose(inside, compose("circle", model).score(x, 2.0))


# --- the command line -------------------------------------------------------------------------
def test_the_cli_takes_the_options(capsys):
    from conceptalg.cli import main

    assert main(["explain", "a & ~b", "--semantics", "guidance", "--negation-scale", "0.5",
                 "--negation-sigmas", "1,"]) == 0
    assert "negated terms: weight x 0.5 (negation_scale), counted only at 1 <= σ" in \
        capsys.readouterr().out
    assert main(["explain", "a & ~b", "--semantics", "guidance", "--negation-sigmas",
                 "0.5,8"]) == 0
    assert "counted only at 0.5 <= σ <= 8" in capsys.readouterr().out


@pytest.mark.parametrize("args, code, message", [
    (["--negation-sigmas", "2,1"], 2, "expected LO < HI"),
    (["--negation-sigmas", "1"], 2, "expected LO,HI noise levels"),
    (["--negation-sigmas=-1,"], 2, "expected LO,HI noise levels"),
    (["--negation-scale", "-1"], 2, "--negation-scale"),
    (["--semantics", "product", "--negation-scale", "0.5"], 1,
     "negation_scale applies to semantics='guidance'"),
])
def test_the_cli_refuses_bad_options(capsys, args, code, message):
    from conceptalg.cli import main

    try:
        got = main(["explain", "a & ~b", *args])
    except SystemExit as e:  # argparse's usage errors exit
        got = e.code
    assert got == code
    assert message in capsys.readouterr().err
