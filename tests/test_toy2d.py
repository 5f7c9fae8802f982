"""toy2d: normalised concept densities, the exact composed density (docs/design.md §4) against closed
forms, exact samples, the torch heads, and the two-sample test on toy2d draws."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from conceptalg import And, Or, parse, simplify
from conceptalg.data import toy2d
from conceptalg.errors import CompileError, UnknownConceptError
from conceptalg.evaluation.two_sample import mmd_test

LOG_P0 = -math.log(36.0)


def points(n=500, seed=0):
    return np.random.default_rng(seed).uniform(-3, 3, size=(n, 2))


def concept_tables(xy):
    """Closed-form ingredients at ``xy``: log p(x|c) and log P(c|x), straight from the scores."""
    x, y = xy[:, 0], xy[:, 1]
    logP = {c: -np.log1p(np.exp(-s(x, y))) for c, s in toy2d.SCORES.items()}
    logp = {c: LOG_P0 + logP[c] - toy2d.log_normalizer(c) for c in toy2d.CONCEPTS}
    log1mP = {c: -np.log1p(np.exp(s(x, y))) for c, s in toy2d.SCORES.items()}
    return logp, logP, log1mP


def lse(*a):
    return np.logaddexp.reduce(np.stack(a), axis=0)


# (expression, semantics, tau, closed-form log density up to a constant)
CLOSED_FORMS = [
    ("left & top", "product", 1.0, lambda p, P, Q: p["left"] + p["top"]),
    ("center | corner", "product", 1.0, lambda p, P, Q: lse(p["center"], p["corner"])),
    ("center | corner", "product", 0.5,
     lambda p, P, Q: 0.5 * lse(2 * p["center"], 2 * p["corner"])),
    ("center & ~top", "product", 1.0, lambda p, P, Q: p["center"] - p["top"]),
    ("~center", "product", 1.0, lambda p, P, Q: LOG_P0 - p["center"]),
    ("~center & ~top", "product", 1.0, lambda p, P, Q: LOG_P0 - p["center"] - p["top"]),
    ("2*ring & ~(0.5*left)", "product", 1.0, lambda p, P, Q: 2 * p["ring"] - 0.5 * p["left"]),
    ("left | ~top", "product", 1.0, lambda p, P, Q: lse(p["left"], LOG_P0 - p["top"])),
    ("(left | top) & diag", "product", 1.0, lambda p, P, Q: lse(p["left"], p["top"]) + p["diag"]),
    ("left & top", "guidance", 1.0, lambda p, P, Q: p["left"] + p["top"] - LOG_P0),
    ("center & ~top", "guidance", 1.0, lambda p, P, Q: p["center"] - p["top"] + LOG_P0),
    ("left | 2*top", "guidance", 1.0,
     lambda p, P, Q: lse(p["left"], LOG_P0 + 2 * (p["top"] - LOG_P0))),
    ("~center | top", "guidance", 1.0, lambda p, P, Q: lse(2 * LOG_P0 - p["center"], p["top"])),
    ("center & ~top", "logic", 1.0, lambda p, P, Q: P["center"] + Q["top"]),
    ("left | top", "logic", 1.0, lambda p, P, Q: np.log1p(-np.exp(Q["left"] + Q["top"]))),
    ("2*~center", "logic", 1.0, lambda p, P, Q: 2 * Q["center"]),
    ("~(left & top)", "logic", 1.0, lambda p, P, Q: np.log1p(-np.exp(P["left"] + P["top"]))),
    ("~right", "logic", 1.0, lambda p, P, Q: P["left"]),   # σ(−s) = 1 − σ(s)
    # logic is not invariant under simplify: ~(a & a) is 1 − P², its simplification 2*~a is
    # (1 − P)² (weights are powers of the signed term, so that ~a & ~a == 2*~a)
    ("~(center & center)", "logic", 1.0, lambda p, P, Q: np.log1p(-np.exp(2 * P["center"]))),
    ("~center & ~center", "logic", 1.0, lambda p, P, Q: 2 * Q["center"]),
]


@pytest.mark.parametrize("text,semantics,tau,closed", CLOSED_FORMS,
                         ids=[f"{s}:{t}:{tau}" for t, s, tau, _ in CLOSED_FORMS])
def test_exact_log_density_closed_forms(text, semantics, tau, closed):
    xy = points()
    got = toy2d.exact_log_density(text, xy, semantics, tau)
    diff = got - closed(*concept_tables(xy))
    assert np.all(np.isfinite(diff))
    assert np.ptp(diff) < 1e-10          # equal up to a constant (the normaliser)


def test_classifier_heads_weight_or_by_partition_function():
    xy = points()
    p, P, Q = concept_tables(xy)
    got = toy2d.exact_log_density("center | left", xy, kind="classifier")
    assert np.ptp(got - lse(P["center"], P["left"])) < 1e-10
    energy = toy2d.exact_log_density("center | left", xy, kind="energy")
    assert np.ptp(got - energy) > 0.1    # the two OR mixtures genuinely differ


@pytest.mark.parametrize("concept", toy2d.CONCEPTS)
def test_concept_densities_are_normalised(concept):
    # a midpoint rule, independent of the Gauss–Legendre rule that computed Z_c
    r = 1200
    c = -3 + 6 * (np.arange(r) + 0.5) / r
    xx, yy = np.meshgrid(c, c)
    logp = toy2d.exact_log_density(concept, np.stack([xx.ravel(), yy.ravel()], -1))
    assert np.exp(logp).sum() * (6 / r) ** 2 == pytest.approx(1.0, abs=1e-5)
    assert np.exp(logp).max() < 1.0   # bounded: every P(c|x) lies in (0.011, 0.989)


def test_density_grid_is_normalised_and_matches_log_density():
    g = toy2d.exact_density_grid("center & ~top", "product", resolution=128)
    assert g.density.shape == (128, 128)
    assert g.density.sum() * g.cell ** 2 == pytest.approx(1.0, abs=1e-12)
    j, i = 40, 90
    ratio = g.density[j, i] / g.density[64, 64]
    logd = toy2d.exact_log_density("center & ~top", np.array([[g.x[i], g.y[j]], [g.x[64], g.y[64]]]))
    assert ratio == pytest.approx(math.exp(logd[0] - logd[1]), rel=1e-12)
    assert toy2d.exact_log_density("left", np.array([[3.5, 0.0]]))[0] == -np.inf


# pairs that the normal form makes equal, under every semantics
EQUIVALENT = [
    ("~~center", "center"),
    ("2*~(3*center) & top", "6*~center & top"),
    ("left | (top | ring)", "left | top | ring"),
    ("left & ~~(~top & ~ring)", "left & ~top & ~ring"),
    ("left & 2*(top & ~ring)", "left & 2*top & 2*~ring"),
    ("center & center", "2*center"),
]


@pytest.mark.parametrize("semantics", toy2d.SEMANTICS)
@pytest.mark.parametrize("a,b", EQUIVALENT, ids=[a for a, _ in EQUIVALENT])
def test_normal_form_equivalences(a, b, semantics):
    xy = points(200)
    np.testing.assert_allclose(toy2d.exact_log_density(a, xy, semantics),
                               toy2d.exact_log_density(b, xy, semantics), rtol=0, atol=1e-10)


def random_leaves(seed=0, n=50):
    rng = np.random.default_rng(seed)
    energies = {k: rng.normal(size=n) for k in "abc"}
    return energies, rng.normal(size=n)


@pytest.mark.parametrize("text,coefficient", [
    ("a", 0.0), ("a & b", -1.0), ("a & 2*b", -2.0), ("a & ~b", 1.0), ("2*a & ~b & ~c", 1.0),
    ("~a & ~b", 2.0), ("~a", 1.0), ("a | b", 0.0), ("(a | b) & c", -1.0),
], ids=str)
def test_guidance_minus_product_is_a_multiple_of_the_base(text, coefficient):
    """Derivation: for a flat And of concept terms (w_i, s_i), guidance − product =
    (1 − Σ w_i s_i − [no positive child]) E_0 (a root term is an And of one: ``~a`` gives 1);
    an Or of unweighted positive concepts is identical in both, so ``(a | b) & c`` gives −1."""
    energies, base = random_leaves()
    product = toy2d.reference_energy(text, energies, base, semantics="product")
    guidance = toy2d.reference_energy(text, energies, base, semantics="guidance")
    np.testing.assert_allclose(guidance - product, coefficient * base, atol=1e-12)


def test_guidance_weighted_or_differs_from_product():
    energies, base = random_leaves()
    product = toy2d.reference_energy("a | 2*b", energies, base, semantics="product")
    guidance = toy2d.reference_energy("a | 2*b", energies, base, semantics="guidance")
    expected = base - np.logaddexp(-(energies["a"] - base), -2 * (energies["b"] - base))
    np.testing.assert_allclose(guidance, expected, atol=1e-12)
    assert np.ptp(guidance - product) > 0.1


@pytest.mark.parametrize("text,semantics", [
    ("~a", "product"), ("~a & ~b", "product"), ("a | ~b", "product"), ("a", "guidance"),
    ("a & b", "logic"),
])
def test_needing_a_base_without_one_is_a_compile_error(text, semantics):
    energies, _ = random_leaves()
    with pytest.raises(CompileError, match="anchor the negation"):
        toy2d.reference_energy(text, energies, None, semantics=semantics, log_probs=energies)


def test_anchored_negation_needs_no_base_and_unknown_names_raise():
    energies, _ = random_leaves()
    toy2d.reference_energy("a & ~b", energies)
    with pytest.raises(UnknownConceptError, match="'zz'"):
        toy2d.reference_energy("a & zz", energies)
    with pytest.raises(UnknownConceptError, match="left, right"):
        toy2d.exact_log_density("lft", points(3))


NAMES = st.sampled_from(["a", "b", "c"])
EXPRS = st.recursive(
    NAMES.map(parse),
    lambda sub: st.one_of(
        sub.map(lambda e: ~e),
        st.tuples(st.sampled_from([0.5, 2.0]), sub).map(lambda t: t[0] * t[1]),
        st.lists(sub, min_size=2, max_size=3).map(lambda ts: And(*ts)),
        st.lists(sub, min_size=2, max_size=3).map(lambda ts: Or(*ts)),
    ),
    max_leaves=6)


@settings(max_examples=60, deadline=None)
@given(EXPRS, st.sampled_from(["product", "guidance"]))
def test_simplify_preserves_the_reference_energy(expr, semantics):
    """Not for logic: there ``~(a & a)`` (1 − P²) and its simplification ``2*~a`` ((1 − P)²)
    differ; see the closed forms."""
    rng = np.random.default_rng(1)
    energies = {k: rng.uniform(0.5, 2.0, size=20) for k in "abc"}
    log_probs = {k: np.log(rng.uniform(0.05, 0.95, size=20)) for k in "abc"}
    base = rng.uniform(0.5, 2.0, size=20)
    kw = dict(semantics=semantics, log_probs=log_probs)
    np.testing.assert_allclose(toy2d.reference_energy(simplify(expr), energies, base, **kw),
                               toy2d.reference_energy(expr, energies, base, **kw),
                               rtol=1e-9, atol=1e-9)


# --- the torch heads ----------------------------------------------------------------------

@pytest.mark.parametrize("concept", toy2d.CONCEPTS)
def test_torch_heads_match_numpy_in_float64(concept):
    xy = points(300)
    x = torch.tensor(xy, dtype=torch.float64, requires_grad=True)
    energy = toy2d.energies()[concept](x)
    np.testing.assert_allclose(-energy.detach().numpy(), toy2d.exact_log_density(concept, xy),
                               rtol=0, atol=1e-12)
    _, logP, _ = concept_tables(xy)
    np.testing.assert_allclose(toy2d.log_probs()[concept](x).detach().numpy(), logP[concept],
                               rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    assert torch.isfinite(grad).all()
    e32 = toy2d.energies()[concept](x.detach().float())
    assert e32.dtype == torch.float32
    np.testing.assert_allclose(e32.numpy(), energy.detach().numpy(), rtol=1e-5)


def test_base_energy_is_constant_and_differentiable():
    x = torch.zeros(4, 2, requires_grad=True)
    e = toy2d.base_energy(x)
    assert e.shape == (4,) and torch.allclose(e, torch.full((4,), math.log(36.0)))
    (grad,) = torch.autograd.grad(e.sum(), x)
    assert torch.equal(grad, torch.zeros(4, 2))


def test_library_carries_heads_base_and_sampling_hints():
    pytest.importorskip("conceptalg.library")
    for kind in ("energy", "classifier"):
        lib = toy2d.library(kind)
        assert sorted(lib.names()) == sorted(toy2d.CONCEPTS)
        assert lib.sample_shape == (2,) and tuple(lib.bounds) == toy2d.BOUNDS
        assert lib.base is not None
    with pytest.raises(ValueError, match="kind"):
        toy2d.library("bogus")


# --- exact draws ---------------------------------------------------------------------------

def test_exact_samples_are_deterministic_and_in_the_box():
    a = toy2d.exact_samples("left | ~top", 500, seed=3)
    assert a.shape == (500, 2) and np.array_equal(a, toy2d.exact_samples("left | ~top", 500, seed=3))
    assert np.abs(a).max() <= 3.0
    assert not np.array_equal(a, toy2d.exact_samples("left | ~top", 500, seed=4))
    t = toy2d.training_data("ring", 100, seed=2)
    assert t.shape == (100, 2) and t.dtype == torch.get_default_dtype()
    assert torch.equal(t, toy2d.training_data("ring", 100, seed=2))


@pytest.mark.parametrize("text,semantics", [
    ("center & ~top", "product"), ("left | top", "product"), ("ring & ~diag", "logic"),
    ("corner | 2*center", "guidance"),
])
def test_exact_sample_moments_match_the_density(text, semantics):
    """Sample means and second moments within 4 standard errors of the grid's integrals."""
    s = toy2d.exact_samples(text, 4000, seed=0, semantics=semantics)
    g = toy2d.exact_density_grid(text, semantics, resolution=512)
    w = g.density * g.cell ** 2
    xx, yy = np.meshgrid(g.x, g.y)
    for f in (lambda x, y: x, lambda x, y: y, lambda x, y: x * x, lambda x, y: x * y):
        exact = (w * f(xx, yy)).sum()
        sd = math.sqrt((w * (f(xx, yy) - exact) ** 2).sum())
        assert abs(f(s[:, 0], s[:, 1]).mean() - exact) < 4 * sd / math.sqrt(len(s))


@pytest.mark.parametrize("concept", ["ring", "corner"])
def test_training_data_agrees_with_exact_samples(concept):
    # two independent exact samplers (uniform rejection vs grid proposal + correction)
    r = mmd_test(toy2d.training_data(concept, 1000, seed=1),
                 toy2d.exact_samples(concept, 1000, seed=2), reps=100, seed=0)
    assert r.p_value > 0.01, r


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_sample_accepts_independent_exact_draws(seed):
    a = toy2d.exact_samples("center & ~top", 2000, seed=10 + seed)
    b = toy2d.exact_samples("center & ~top", 2000, seed=20 + seed)
    assert mmd_test(a, b, reps=100, seed=seed).p_value > 0.01


@pytest.mark.parametrize("transform", [lambda y: y + np.array([0.15, 0.0]), lambda y: 1.12 * y],
                         ids=["shift", "scale"])
def test_two_sample_rejects_a_slightly_wrong_distribution(transform):
    a = toy2d.exact_samples("center & ~top", 2000, seed=1)
    b = toy2d.exact_samples("center & ~top", 2000, seed=2)
    assert mmd_test(a, transform(b), reps=100).p_value <= 0.01


# --- the compiler against the oracle (skipped until conceptalg.compose exists) -------------

COMPILED = [
    ("left & top", "product"), ("center | corner", "product"), ("center & ~top", "product"),
    ("~center", "product"), ("~center & ~top", "product"), ("2*ring & ~(0.5*left)", "product"),
    ("left | ~top", "product"), ("(left | top) & diag", "product"), ("left | 2*(top | ring)", "product"),
    ("~(left | top) & diag", "product"), ("left & 2*(~top & ~ring)", "product"),
    ("left | 2*top", "guidance"), ("~center | top", "guidance"), ("center & ~top", "guidance"),
    ("left | ~(top & ~ring)", "guidance"),
    ("center & ~top", "logic"), ("~(left & top) | ring", "logic"), ("2*~center", "logic"),
    ("~(center & center)", "logic"),
    ("left | ~(top & ~ring)", "product"), ("~(top & ~ring)", "product"),
    ("~(~top & ~ring) | ~(left & ring)", "product"), ("0.5*(~left & ~top)", "product"),
    ("2*~(left & top) & ring", "product"), ("~(left & top) & ~(left & top)", "product"),
    ("2*~(left & ~top) | center", "guidance"),
]


@pytest.mark.parametrize("text,semantics", COMPILED)
def test_compose_matches_the_oracle(text, semantics):
    compose = pytest.importorskip("conceptalg.compiler").compose
    kind = "classifier" if semantics == "logic" else "energy"
    xy = points(300)
    energy = compose(text, toy2d.library(kind), semantics=semantics)
    got = -energy(torch.tensor(xy)).detach().numpy()
    want = toy2d.exact_log_density(text, xy, semantics, kind=kind)
    assert np.ptp(got - want) < 1e-9


# --- end to end: compose + MALA against exact draws (issue 4) -------------------------------

END_TO_END = {
    "and": "ring & top",
    "or": "ring | center",
    "not": "ring & ~top",
    "nested": "(left | top) & ~center",
}




@pytest.mark.parametrize("text", list(END_TO_END.values()), ids=list(END_TO_END))
def test_mala_samples_pass_the_two_sample_test(text):
    """2000 chains from a fixed uniform init, 600 MALA steps (300 adapting warm-up), the final
    states against 2000 exact draws: the permutation MMD test must not reject at 0.01."""
    compose = pytest.importorskip("conceptalg.compiler").compose
    sample = pytest.importorskip("conceptalg.sampling").sample
    energy = compose(text, toy2d.library())
    init = torch.rand(2000, 2, generator=torch.Generator().manual_seed(0)) * 6 - 3
    x = sample(energy, 2000, sampler="mala", steps=600, warmup=300, init=init,
               bounds=toy2d.BOUNDS, seed=0)
    assert x.shape == (2000, 2) and x.abs().max() <= 3.0
    result = mmd_test(x, toy2d.exact_samples(text, 2000, seed=1), reps=100, seed=0)
    assert result.p_value > 0.01, result
