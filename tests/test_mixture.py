"""OR on score-only models as a mixture (docs/design.md §0): the disjunctive normal form against a
hand table; the mixture of analytic Gaussian leaves (a score-only model) sampled a branch per
chain — branch moments, mixture moments and branch frequencies against exact values within
Monte-Carlo error; reproducibility by seed; the errors where an OR cannot be honoured; what
explain() says of every OR; and the shipped image model.

The oracle: concept ``c`` is ``N(μ_c, s_c² I)`` in 3-D, so a conjunction ``Σ_j k_j E_j`` is the
isotropic Gaussian of precision ``λ = Σ_j k_j / s_j²`` and mean ``Σ_j (k_j / s_j²) μ_j / λ``; ULA
with step ``h`` leaves its mean as it is and has the stationary variance ``1 / (λ (1 − hλ/2))``
(conceptalg/sampling/langevin.py), so every moment below is exact, with no discretisation
tolerance. Tolerances are 4 Monte-Carlo standard errors; seeds are fixed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from scipy import stats
from torch import Tensor

import conceptalg
from conceptalg import CompileError, ConceptLibrary, SamplerError, compose
from conceptalg.compiler import ComposedEnergy, MixtureEnergy, disjuncts, explain
from conceptalg.sampling import karras_sigmas

F64 = torch.float64
MU = {"a": [6.0, 0.0, 0.0], "b": [-6.0, 0.0, 0.0], "c": [0.0, 3.0, 0.0], "d": [0.0, -3.0, 1.0],
      "base": [0.0, 0.0, 0.0]}
S2 = {"a": 0.5, "b": 1.0, "c": 0.2, "d": 0.5, "base": 9.0}  # s_c²
H = 0.05       # the ULA step
STEPS = 400    # (1 - H λ)^STEPS < 1e-15 for every branch below: converged from N(0, I)
N = 4000       # chains
ROOT = Path(__file__).resolve().parents[1]


class GaussScores(torch.nn.Module):
    """A score-only model: ``concept_scores(x, heads, sigma) -> [B, K, 3]``, ``−∇E_c`` of
    ``E_c = |x − μ_c|² / (2 (s_c² + σ²))``; no energies. Records the heads of each call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def concept_scores(self, x, heads, sigma=None):
        self.calls.append(tuple(heads))
        s2 = torch.zeros(x.shape[0], dtype=x.dtype) if sigma is None else sigma ** 2
        return torch.stack([-(x - torch.tensor(MU[h], dtype=x.dtype)) / (S2[h] + s2)[:, None]
                            for h in heads], dim=1)


def score_library(model=None, base=True):
    model = GaussScores() if model is None else model
    lib = ConceptLibrary().add_model(model, list("abcd"), kind="score")
    return lib.set_base(model, "base", kind="score") if base else lib


def gaussian(coefs: dict) -> tuple[float, Tensor]:
    """(precision λ, mean) of ``exp(−Σ_j k_j E_j)``."""
    lam = sum(k / S2[j] for j, k in coefs.items())
    mean = sum(k / S2[j] * torch.tensor(MU[j], dtype=F64) for j, k in coefs.items()) / lam
    return lam, mean



def ula_moments(coefs: dict) -> tuple[Tensor, float]:
    """The ULA chain's stationary mean and per-coordinate variance on the branch ``coefs``."""
    lam, mean = gaussian(coefs)
    assert lam > 0 and H * lam < 2
    return mean, 1.0 / (lam * (1 - H * lam / 2))


# --- the hand table of disjunctive normal forms ----------------------------------------------
DNF = [  # (id, expression, semantics, or_log_weights, [(disjunct, weight), ...])
    ("and over or", "(a | b) & c", "product", None, [("a & c", 1 / 2), ("b & c", 1 / 2)]),
    ("two ors", "a & (b | c) & (d | e)", "product", None,
     [("a & b & d", 1 / 4), ("a & b & e", 1 / 4), ("a & c & d", 1 / 4), ("a & c & e", 1 / 4)]),
    ("de morgan", "~(a | b) & c", "product", None, [("~a & ~b & c", 1.0)]),
    ("de morgan, nested", "~(a & (b | c))", "product", None, [("~a & ~b & ~c", 1.0)]),
    ("de morgan of a negation", "~(a | ~b) & c", "product", None, [("~a & b & c", 1.0)]),
    ("weighted de morgan", "2 * ~(a | b) & c", "product", None, [("2 * ~a & 2 * ~b & c", 1.0)]),
    ("de morgan in a disjunct", "c & ~(a | b) | d", "product", None,
     [("c & ~a & ~b", 1 / 2), ("d", 1 / 2)]),
    ("weight 2", "2 * (a | b)", "product", None,
     [("2 * a", 1 / 4), ("a & b", 1 / 2), ("2 * b", 1 / 4)]),
    ("weight 3", "3 * (a | b)", "guidance", None,
     [("3 * a", 1 / 8), ("2 * a & b", 3 / 8), ("a & 2 * b", 3 / 8), ("3 * b", 1 / 8)]),
    ("repeated or", "(a | b) & (a | b)", "product", None,
     [("2 * a", 1 / 4), ("a & b", 1 / 2), ("2 * b", 1 / 4)]),
    ("weighted or in an or", "a | 2 * (b | c)", "product", None,
     [("a", 1 / 5), ("2 * b", 1 / 5), ("b & c", 2 / 5), ("2 * c", 1 / 5)]),
    ("nested ors flatten", "a | (b | (c | d))", "product", None,
     [("a", 1 / 4), ("b", 1 / 4), ("c", 1 / 4), ("d", 1 / 4)]),
    ("nested ors under and", "(a | (b | c)) & d", "guidance", None,
     [("a & d", 1 / 3), ("b & d", 1 / 3), ("c & d", 1 / 3)]),
    ("a disjunct twice", "a | a", "product", None, [("a", 1.0)]),
    ("any weight on one branch", "c & 0.5 * (a & b | b & a)", "product", None,
     [("c & 0.5 * a & 0.5 * b", 1.0)]),
    ("and of ands", "a & b | c & ~d", "guidance", None, [("a & b", 1 / 2), ("c & ~d", 1 / 2)]),
    ("log-weights", "a | b", "product", {"b": math.log(3)}, [("a", 1 / 4), ("b", 3 / 4)]),
    ("log-weights, nested", "(a | b) & c", "product", {"b": math.log(3)},
     [("a & c", 1 / 4), ("b & c", 3 / 4)]),
    ("log-weights, sequence", "a | b & c | d", "guidance", [0.0, math.log(2), math.log(5)],
     [("a", 1 / 8), ("b & c", 2 / 8), ("d", 5 / 8)]),
    ("log-weights, weighted or", "2 * (a | b)", "product", {"a": math.log(2)},
     [("2 * a", 4 / 9), ("a & b", 4 / 9), ("2 * b", 1 / 9)]),
    ("zero weight", "a | b", "product", [0.0, -math.inf], [("a", 1.0), ("b", 0.0)]),
]


@pytest.mark.parametrize("case, text, semantics, weights, expected", DNF, ids=[c[0] for c in DNF])
def test_disjunctive_normal_form(case, text, semantics, weights, expected):
    got = [(str(e), w) for e, w in disjuncts(text, semantics, or_log_weights=weights)]
    assert [d for d, _ in got] == [d for d, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], abs=1e-12)
    # each disjunct is the expression's own spelling of it
    assert all(str(conceptalg.parse(d)) == d for d, _ in got)


def test_the_branches_of_compose_are_the_disjuncts():
    energy = compose("a & (b | c) & (d | ~b)", score_library())
    assert isinstance(energy, MixtureEnergy)
    assert [str(b.expr) for b in energy.branches] == [str(e) for e, _ in
                                                      disjuncts("a & (b | c) & (d | ~b)")]
    assert all(isinstance(b, ComposedEnergy) and b.score_only for b in energy.branches)
    assert sum(energy.branch_weights) == pytest.approx(1.0)
    assert str(energy.normal_form) == "a & b & d | a & b & ~b | a & c & d | a & c & ~b"
    assert energy.leaves == ("a", "b", "c", "d")


def test_an_or_over_energies_stays_exact():
    energies = {n: (lambda x, n=n: ((x - torch.tensor(MU[n])) ** 2).sum(-1) / (2 * S2[n]))
                for n in "ab"}
    energy = compose("a | b", energies)
    assert isinstance(energy, ComposedEnergy) and not energy.score_only
    x = torch.zeros(2, 3)
    exact = -torch.logsumexp(-torch.stack([energies["a"](x), energies["b"](x)]), dim=0)
    torch.testing.assert_close(energy(x), exact)


# --- sampling the mixture of Gaussian leaves -------------------------------------------------
MIXTURES = [  # (id, expression, compose keywords, [(weight, {concept: coefficient}), ...])
    ("a | b", "a | b", {}, [(1 / 2, {"a": 1}), (1 / 2, {"b": 1})]),
    ("log-weights", "a | b", dict(or_log_weights={"b": math.log(3)}),
     [(1 / 4, {"a": 1}), (3 / 4, {"b": 1})]),
    ("three, uneven", "a | (c | d)", dict(or_log_weights=[0.0, math.log(2), math.log(5)]),
     [(1 / 8, {"a": 1}), (2 / 8, {"c": 1}), (5 / 8, {"d": 1})]),
    ("weight 2", "2 * (a | b)", {},
     [(1 / 4, {"a": 2}), (1 / 2, {"a": 1, "b": 1}), (1 / 4, {"b": 2})]),
    ("and over or", "(a | b) & c", {}, [(1 / 2, {"a": 1, "c": 1}), (1 / 2, {"b": 1, "c": 1})]),
    ("de morgan", "~(a | b) & c", {}, [(1.0, {"a": -1, "b": -1, "c": 1})]),
    ("negation in a disjunct", "c & ~a | b", {},
     [(1 / 2, {"c": 1, "a": -1}), (1 / 2, {"b": 1})]),
    ("guidance", "a | b", dict(semantics="guidance"), [(1 / 2, {"a": 1}), (1 / 2, {"b": 1})]),
    ("guidance, scale 2", "a | b", dict(semantics="guidance", guidance_scale=2.0),
     [(1 / 2, {"a": 2, "base": -1}), (1 / 2, {"b": 2, "base": -1})]),
    ("guidance, and over or", "(a | b) & c", dict(semantics="guidance"),
     [(1 / 2, {"a": 1, "c": 1, "base": -1}), (1 / 2, {"b": 1, "c": 1, "base": -1})]),
]


def _draw(energy, seed=0, n=N, **kw):
    return conceptalg.sample(energy, n, shape=(3,), sampler="langevin", steps=STEPS,
                             step_size=H, seed=seed, return_info=True, **kw)


@pytest.fixture(scope="module", params=MIXTURES, ids=[c[0] for c in MIXTURES])
def drawn(request):
    case, text, kw, branches = request.param
    energy = compose(text, score_library(), **kw)
    assert isinstance(energy, MixtureEnergy)
    assert list(energy.branch_weights) == pytest.approx([w for w, _ in branches], abs=1e-12)
    x, info = _draw(energy)
    return x.double(), info, branches


def test_each_chain_is_a_draw_of_its_branch(drawn):
    x, info, branches = drawn
    assert x.shape == (N, 3) and info["method"] == "mixture" and info["branch"].shape == (N,)
    for k, (_, coefs) in enumerate(branches):
        mine = x[info["branch"] == k]
        mean, var = ula_moments(coefs)
        m = len(mine)
        assert m == info["branch counts"][k]
        if m < 2:
            continue
        se_mean = math.sqrt(var / m)
        assert torch.all((mine.mean(0) - mean).abs() < 4 * se_mean), (k, mine.mean(0), mean)
        se_var = var * math.sqrt(2 / (m - 1))
        assert torch.all((mine.var(0) - var).abs() < 4 * se_var), (k, mine.var(0), var)


def test_the_mixture_moments_are_exact(drawn):
    x, _, branches = drawn
    w = torch.tensor([p for p, _ in branches], dtype=F64)                      # [K]
    means = torch.stack([ula_moments(c)[0] for _, c in branches])              # [K, 3]
    var = torch.tensor([ula_moments(c)[1] for _, c in branches], dtype=F64)    # [K]
    mean = (w[:, None] * means).sum(0)                                         # [3]
    d = means - mean                                                           # [K, 3]
    total = (w[:, None] * (var[:, None] + d ** 2)).sum(0)                      # [3]
    fourth = (w[:, None] * (d ** 4 + 6 * d ** 2 * var[:, None] + 3 * var[:, None] ** 2)).sum(0)
    assert torch.all((x.mean(0) - mean).abs() < 4 * (total / N).sqrt())
    assert torch.all((x.var(0) - total).abs() < 4 * ((fourth - total ** 2) / N).sqrt())


def test_branch_frequencies_match_the_weights(drawn):
    _, info, branches = drawn
    counts = torch.tensor(info["branch counts"], dtype=F64)
    expected = N * torch.tensor([p for p, _ in branches], dtype=F64)
    assert info["branch weights"] == pytest.approx([p for p, _ in branches], abs=1e-12)
    assert int(counts.sum()) == N
    if len(branches) > 1:
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert stats.chi2.sf(chi2, df=len(branches) - 1) > 1e-3, (counts, expected)


def test_frequencies_follow_uneven_weights_over_seeds():
    """A binomial check of the first branch's share at weight 1/10, pooled over seeds."""
    energy = compose("a | b", score_library(), or_log_weights=[0.0, math.log(9)])
    shares = [conceptalg.sample(energy, 1000, shape=(3,), steps=1, seed=s, return_info=True)[1]
              ["branch counts"][0] for s in range(5)]
    k, n, p = sum(shares), 5000, 0.1
    assert abs(k - n * p) < 4 * math.sqrt(n * p * (1 - p)), shares


def test_the_seed_fixes_branches_and_samples():
    energy = compose("(a | b) & c", score_library())
    x, info = _draw(energy, seed=7, n=64)
    y, again = _draw(energy, seed=7, n=64)
    assert torch.equal(x, y) and torch.equal(info["branch"], again["branch"])
    z, other = _draw(energy, seed=8, n=64)
    assert not torch.equal(x, z) and not torch.equal(info["branch"], other["branch"])
    assert torch.equal(conceptalg.sample(energy, 64, shape=(3,), steps=STEPS, step_size=H,
                                         seed=7), x)
    # without a process group, distributed=True is one process: the same chains
    assert torch.equal(conceptalg.sample(energy, 64, shape=(3,), steps=STEPS, step_size=H,
                                         seed=7, distributed=True), x)
    _, unseeded = _draw(energy, seed=None, n=8)
    assert isinstance(unseeded["seed"], int) and unseeded["seed"] >= 0


def test_per_chain_arguments_follow_their_chains():
    # an init per chain, and one step of size ~0: each chain stays at its own start
    energy = compose("a | b | c", score_library())
    init = torch.arange(30, dtype=torch.float32)[:, None].expand(30, 3).contiguous()
    x, info = conceptalg.sample(energy, 30, init=init, steps=1, step_size=1e-10, seed=0,
                                return_info=True)
    torch.testing.assert_close(x, init, atol=1e-3, rtol=0)
    assert len(set(info["branch"].tolist())) > 1
    # a step size per chain: the chains with a zero-ish step stay, the others move
    steps = torch.tensor([1e-10, 1.0] * 15)
    x = conceptalg.sample(energy, 30, init=init, steps=1, step_size=steps, seed=0)
    moved = (x - init).abs().amax(1) > 1e-2
    assert moved.tolist() == [False, True] * 15


def test_settings_are_checked_before_any_chain_runs():
    model = GaussScores()
    energy = compose("a | b", score_library(model))
    with pytest.raises(SamplerError, match="needs energy values"):
        conceptalg.sample(energy, 8, shape=(3,), sampler="mala", seed=0)
    with pytest.raises(TypeError, match="unknown option"):
        conceptalg.sample(energy, 8, shape=(3,), seed=0, leapfrogs=3)
    with pytest.raises(ValueError, match="n must be"):
        conceptalg.sample(energy, 0, shape=(3,), seed=0)
    assert model.calls == []


def test_sigmas_and_heun_run_each_branch():
    energy = compose("a | b", score_library())
    x, info = conceptalg.sample(energy, 200, shape=(3,), sampler="heun", seed=0,
                                sigmas=karras_sigmas(30, 0.01, 20.0),
                                return_info=True)
    assert info["sampler"] == "heun" and all(i["sampler"] == "heun"
                                             for i in info["branch info"])
    near_a = (x[:, 0] > 0).long()                        # a sits at x = +6, b at -6
    assert torch.equal(1 - near_a, info["branch"])


# --- what cannot be honoured ------------------------------------------------------------------
ERRORS = [  # (id, expression, compose keywords, error class, message)
    ("negated or under guidance", "~(a | b) & c", dict(semantics="guidance"), CompileError,
     r"negates an OR, `~\(a \| b\)`.*ratio p_0/p\(f\|x\), not a complement.*`~a & ~b`"),
    ("weighted negated or under guidance", "c & 2 * ~(a | b)", dict(semantics="guidance"),
     CompileError, r"De Morgan's law does not rewrite it.*`2 \* ~a & 2 \* ~b`"),
    ("non-integer weight", "2.5 * (a | b)", {}, CompileError,
     r"raises an OR to the power 2\.5.*`2\.5 \* a \| 2\.5 \* b`"),
    ("weight below 1", "c & 0.5 * (a | b)", {}, CompileError, r"to the power 0\.5"),
    ("or temperature", "a | b", dict(or_temperature=0.5), CompileError,
     r"or_temperature=0\.5 .*concept `a` has only a score.*no temperature"),
    ("logic", "a | b", dict(semantics="logic"), CompileError,
     r"semantics='logic' needs energy values.*--parameterization energy"),
    ("log-weight of a negated disjunct", "~(a | b) & c", dict(or_log_weights={"a": 1.0}),
     CompileError, r"or_log_weights names a, which is not a disjunct.*De Morgan"),
    ("log-weight of no disjunct", "a | b", dict(or_log_weights={"c": 1.0}), CompileError,
     "or_log_weights names c, which is not a disjunct"),
    ("every weight zero", "a | b", dict(or_log_weights=[-math.inf, -math.inf]), CompileError,
     "has no branch to draw"),
    ("unknown name", "a | zebra", {}, conceptalg.UnknownConceptError, "zebra"),
]


@pytest.mark.parametrize("case, text, kw, error, message", ERRORS, ids=[c[0] for c in ERRORS])
def test_an_or_that_cannot_be_honoured_is_refused(case, text, kw, error, message):
    with pytest.raises(error, match=message):
        compose(text, score_library(), **kw)


def test_a_branch_without_its_base_names_the_branch():
    with pytest.raises(CompileError, match=r"`~a` needs a base energy.*\n  in the branch `~a` "
                                           r"of `~a \| b`"):
        compose("~a | b", score_library(base=False))


@pytest.mark.parametrize("text", [" & ".join(f"(a{i} | b{i})" for i in range(11)),  # 2^11
                                  "5000 * (a | b)"], ids=["eleven ors", "a power of 5000"])
def test_too_many_disjuncts(text):
    with pytest.raises(CompileError, match="more than 1024 disjuncts"):
        disjuncts(text)


def test_a_mixture_has_no_single_energy_or_score():
    energy = compose("a | b", score_library())
    x = torch.zeros(2, 3)
    for call in (lambda: energy(x), lambda: energy.score(x), lambda: energy.calibrate(x)):
        with pytest.raises(CompileError, match="concept `a` has only a score") as info:
            call()
        assert "`a | b`" in str(info.value)


# --- explain and repr ----------------------------------------------------------------------
def test_explain_says_how_every_or_is_computed():
    exact = explain("a | b & c", or_log_weights={"a": 0.0, "b & c": -1.2})
    assert "OR method:   exact -τ logsumexp of energies (τ = 1)" in exact
    assert "\n  l = -1.2  b & c" in exact and "not assumed equal" in exact
    sharp = explain("a | b", or_temperature=0.5)
    assert "exact -τ logsumexp of energies (τ = 0.5)" in sharp and "no mixture" in sharp
    logic = explain("a | ~b", semantics="logic")
    assert "OR method:   exact noisy-or of probabilities" in logic
    assert "OR method" not in explain("a & ~b")

    mixture = compose("2 * (a | b)", score_library(), or_log_weights={"a": math.log(2)})
    text = mixture.explain()
    assert "normal form: 2 * a | a & b | 2 * b   (disjunctive: 3 branches)" in text
    assert "OR method:   mixture: a disjunct per chain, under equal partition functions" in text
    assert "concept `a` has only a score" in text
    for line in ("  1. weight 0.4444  2 * a", "  2. weight 0.4444  a & b",
                 "  3. weight 0.1111  2 * b", "       E = 2*E[a]"):
        assert line in text, line
    assert repr(mixture) == "MixtureEnergy('2 * (a | b)', semantics='product', branches=3)"
    guided = compose("a | b", score_library(), semantics="guidance", guidance_scale=3)
    assert repr(guided) == ("MixtureEnergy('a | b', semantics='guidance', guidance_scale=3, "
                            "branches=2)")
    assert "E = E_0 + 3*D" in guided.explain()


# --- the shipped image model ---------------------------------------------------------------
SHIPPED = ROOT / "models" / "shapes"


def test_explain_on_the_shipped_model_names_the_method(capsys):
    from conceptalg.cli import main

    assert main(["explain", "red | blue", "--model", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "mixture: a disjunct per chain, under equal partition functions" in out
    assert "1. weight 0.5  red" in out and "2. weight 0.5  blue" in out


def test_the_shipped_model_samples_an_or():
    model = conceptalg.load(SHIPPED)
    energy = compose("red | blue", model)
    assert isinstance(energy, MixtureEnergy) and energy.semantics == "guidance"
    x, info = conceptalg.sample(energy, 4, seed=0, return_info=True)  # the model's defaults
    assert x.shape == (4, 3, 32, 32) and torch.isfinite(x).all()
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert sum(info["branch counts"]) == 4


def test_cli_samples_an_or_on_the_shipped_model(tmp_path, capsys):
    from conceptalg.cli import main

    out = tmp_path / "or.png"
    assert main(["sample", "red | blue", "--model", str(SHIPPED), "--n", "8", "--out", str(out),
                 "--no-progress"]) == 0
    assert out.exists() and out.stat().st_size > 0
    printed = capsys.readouterr().out
    assert "OR as a mixture (a disjunct per chain, equal partition functions): red " in printed
