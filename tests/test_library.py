"""ConceptLibrary: names, factors, temperatures, classifier heads, models, merging, listing,
and the interface that compose() accepts."""

from __future__ import annotations

import pytest
import torch

from conceptalg import CompileError, Concept, ConceptLibrary, UnknownConceptError, compose
from conceptalg.library import ConceptEnergyModel, Head, as_library

F64 = torch.float64


def e_red(x):
    return (x - 1).pow(2).sum(-1)


def e_green(x):
    return (x + 1).pow(2).sum(-1)


def e_circle(x):
    return x.pow(2).sum(-1)


def e_base(x):
    return x.pow(2).sum(-1) / 8


def _lib(**kw) -> ConceptLibrary:
    return ConceptLibrary({"red": e_red, "green": e_green, "circle": e_circle},
                          factors={"color": ["red", "green"], "shape": ["circle"]}, **kw)


def _x(n=16):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=F64)


class Heads(torch.nn.Module):
    def __init__(self, names):
        super().__init__()
        self.index = {n: i for i, n in enumerate(names)}
        self.lin = torch.nn.Linear(2, len(names)).double()
        self.calls = 0

    def concept_energies(self, x, heads):
        self.calls += 1
        rows = [self.index[h] for h in heads]
        return x @ self.lin.weight[rows].T + self.lin.bias[rows]  # [B, K]


# --- resolution -----------------------------------------------------------------------------
RESOLVE = [
    ("bare", "red", "color=red"),
    ("qualified", "color=red", "color=red"),
    ("other factor", "circle", "shape=circle"),
    ("concept node", Concept("green", factor="color"), "color=green"),
]


@pytest.mark.parametrize("case, query, key", RESOLVE, ids=[c[0] for c in RESOLVE])
def test_resolve(case, query, key):
    head = _lib().resolve(query)
    assert isinstance(head, Head) and head.key == key


RESOLVE_ERRORS = [
    ("typo", "rde", UnknownConceptError, r"unknown concept `rde`; did you mean `red`\? Known"),
    ("wrong factor value", "color=circle", UnknownConceptError, "unknown concept `color=circle`"),
    ("unknown factor", "colour=red", UnknownConceptError, "did you mean `color=red`"),
    ("operator word", "AND", UnknownConceptError, "write `&` or `and`"),
]


@pytest.mark.parametrize("case, query, error, message", RESOLVE_ERRORS,
                         ids=[c[0] for c in RESOLVE_ERRORS])
def test_resolve_errors(case, query, error, message):
    with pytest.raises(error, match=message):
        _lib().resolve(query)


def test_ambiguity_lists_qualified_choices_and_unfactored_name_wins():
    lib = ConceptLibrary({"color=red": e_red, "tone=red": e_green})
    with pytest.raises(UnknownConceptError, match="factors color and tone; write `color=red` or `tone=red`"):
        lib.resolve("red")
    lib.add("red", e_circle)
    assert lib.resolve("red").key == "red"


def test_parametric_heads():
    lib = ConceptLibrary().add("at", lambda x, a: (x - a).pow(2).sum(-1), parametric=True)
    lib.add("red", e_red, factor="color")
    with pytest.raises(CompileError, match="takes no arguments; write `color=red`"):
        lib.resolve("red(1, 2)")
    with pytest.raises(CompileError, match="`at` is parametric: give its arguments"):
        lib.resolve("at")
    assert lib.resolve("at(0.5, 0.5)").parametric is True
    # a plain dict does not know: the expression decides
    d = as_library({"at": lambda x, a=None: x.sum(-1)})
    assert d.resolve("at").parametric is None and d.resolve("at(1)").parametric is None


def test_unknown_lists_known_names_and_truncates():
    lib = ConceptLibrary({f"c{i}": e_red for i in range(30)})
    with pytest.raises(UnknownConceptError, match=r"known concepts: c0, c1, .*c19 \(\+10 more\)"):
        lib.resolve("zzz")


def test_contains_len_iter_names():
    lib = _lib()
    assert "red" in lib and "color=red" in lib and "blue" not in lib and "a & b" not in lib
    assert len(lib) == 3 and list(lib) == lib.names() == ["color=red", "color=green", "shape=circle"]
    assert lib.factors == {"color": ["red", "green"], "shape": ["circle"]}


# --- building errors ----------------------------------------------------------------------------
BUILD_ERRORS = [
    ("factor lists a missing concept",
     lambda: ConceptLibrary({"red": e_red}, factors={"color": ["red", "blue"]}), "color=blue"),
    ("name in two factors", lambda: ConceptLibrary({"red": e_red},
                                                   factors={"color": ["red"], "tone": ["red"]}),
     "'color=red' or 'tone=red'"),
    ("temperature for unknown", lambda: ConceptLibrary({"red": e_red}, temperatures={"blu": 2}),
     "unknown concepts"),
    ("duplicate", lambda: ConceptLibrary({"red": e_red}).add("red", e_green), "already defined"),
    ("bad temperature", lambda: ConceptLibrary().add("red", e_red, temperature=0), "> 0"),
    ("bad kind", lambda: ConceptLibrary().add("red", e_red, kind="logit"), "kind"),
    ("log_prob with temperature",
     lambda: ConceptLibrary().add("red", e_red, kind="log_prob", temperature=2), "no temperature"),
    ("bad factor", lambda: ConceptLibrary({"not=red": e_red}), "reserved"),
    ("not callable", lambda: ConceptLibrary({"red": 3}), "callable"),
    ("model without protocol", lambda: ConceptLibrary().add_model(object(), ["a"]),
     "concept_energies"),
    ("score model without concept_scores", lambda: ConceptLibrary().add_model(
        Heads(["a"]), ["a"], kind="score"), "no concept_scores.*ConceptScoreModel"),
    ("score function", lambda: ConceptLibrary().add("red", e_red, kind="score"),
     "add_model\\(model, heads, kind='score'\\)"),
    ("score base function", lambda: ConceptLibrary().set_base(e_base, kind="score"),
     "a function is an energy"),
    ("score base without concept_scores", lambda: ConceptLibrary().set_base(
        Heads(["base"]), "base", kind="score"), "needs a model with concept_scores"),
    ("log_prob base", lambda: ConceptLibrary().set_base(e_base, kind="log_prob"),
     "'energy' or 'score'"),
]


@pytest.mark.parametrize("case, build, message", BUILD_ERRORS, ids=[c[0] for c in BUILD_ERRORS])
def test_build_errors(case, build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


# --- temperatures, classifier heads, models -----------------------------------------------------
def test_temperatures_expose_energy_over_t():
    lib = _lib(temperatures={"red": 0.5}, base=e_base)
    lib.add("blue", e_circle, factor="color", temperature=4.0)
    x = _x()
    torch.testing.assert_close(compose("red & blue", lib)(x), e_red(x) / 0.5 + e_circle(x) / 4)
    lib.set_base(e_base, temperature=2.0)
    torch.testing.assert_close(compose("~green", lib)(x), e_base(x) / 2 - e_green(x))


def test_classifier_heads_and_probabilistic():
    logp = lambda x: torch.nn.functional.logsigmoid(x[:, 0])  # noqa: E731
    lib = ConceptLibrary().add("smiling", logp, kind="log_prob")
    assert not lib.is_probabilistic  # no base yet
    with pytest.raises(CompileError, match="needs a base"):
        compose("smiling", lib)
    lib.set_base(e_base)
    assert lib.is_probabilistic
    x = _x()
    torch.testing.assert_close(compose("smiling", lib)(x), e_base(x) - logp(x))
    lib.add("red", e_red)
    assert not lib.is_probabilistic


def test_add_model_mapping_sequence_and_batched_base():
    model = Heads(["red", "green", "color=blue", "base"])
    lib = ConceptLibrary().add_model(model, {"red": "color", "green": "color"},
                                     temperature={"green": 2.0})
    lib.add_model(model, ["color=blue"])
    lib.set_base(model, "base")
    assert lib.names() == ["color=red", "color=green", "color=blue"]
    assert isinstance(model, ConceptEnergyModel)
    x = _x()
    energy = compose("~red & ~green & ~blue", lib)
    model.calls = 0
    got = energy(x)
    assert model.calls == 1
    with torch.no_grad():
        out = model.concept_energies(x, ["red", "green", "color=blue", "base"])
    torch.testing.assert_close(got, out[:, 3] - out[:, 0] - out[:, 1] / 2 - out[:, 2])


class Scores(torch.nn.Module):
    """Gives only scores: −∇ of |x − μ_h|² / 2 for μ_red = 1, μ_green = -1, μ_base = 0."""

    means = {"red": 1.0, "green": -1.0, "base": 0.0}

    def concept_scores(self, x, heads, sigma=None):
        return torch.stack([-(x - self.means[h]) for h in heads], dim=1)  # [B, K, 2]


def test_score_heads_and_a_score_base():
    model = Scores()
    lib = ConceptLibrary().add_model(model, {"red": "color", "green": "color"}, kind="score")
    lib.set_base(model, "base", kind="score")
    assert [h.kind for h in lib.heads()] == ["score", "score"] and lib.base.kind == "score"
    assert [h.method for h in lib.heads()] == ["concept_scores"] * 2
    assert lib.base.sigma_aware and not lib.is_probabilistic
    assert "  color=red    score" in lib.describe()
    x = _x()
    energy = compose("~red & ~green", lib)  # anchored by the score-only base
    assert energy.score_only
    torch.testing.assert_close(energy.score(x), -x + (x - 1) + (x + 1))


@pytest.mark.parametrize("build, method, aware", [
    (lambda: ConceptLibrary({"red": lambda x, sigma: x.sum(-1)}).resolve("red"), None, True),
    (lambda: ConceptLibrary({"red": e_red}).resolve("red"), None, False),
    (lambda: ConceptLibrary().add_model(Heads(["red"]), ["red"]).resolve("red"),
     "concept_energies", False),
    (lambda: ConceptLibrary().add_model(Scores(), ["red"], kind="score").resolve("red"),
     "concept_scores", True),
], ids=["sigma function", "plain function", "energy model", "score model"])
def test_head_method_and_sigma_awareness(build, method, aware):
    head = build()
    assert (head.method, head.sigma_aware) == (method, aware)


def test_merge_carries_compose_hints():
    a, b = _lib(base=e_base), ConceptLibrary({"square": e_circle})
    b.default_semantics, b.guidance_scale = "guidance", 3.0
    merged = a.merge(b)
    assert (merged.default_semantics, merged.guidance_scale) == ("guidance", 3.0)
    a.guidance_scale = 2.0
    assert a.merge(b).guidance_scale == 2.0  # this library's hint wins
    assert compose("red & square", merged).guidance_scale == 3.0


def test_add_model_rejects_unknown_parametric_names():
    with pytest.raises(ValueError, match="heads that were not given"):
        ConceptLibrary().add_model(Heads(["a"]), ["a"], parametric=["b"])


# --- merging ------------------------------------------------------------------------------------
def test_merge_without_clash_keeps_both_and_does_not_mutate():
    a = _lib(base=e_base)
    b = ConceptLibrary({"square": e_circle}, factors={"shape": ["square"]})
    merged = a.merge(b)
    assert merged.names() == ["color=red", "color=green", "shape=circle", "shape=square"]
    assert merged.base is a.base and len(a) == 3 and len(b) == 1


def test_merge_clash_is_an_error_unless_prefixed():
    a, b = _lib(), _lib()
    with pytest.raises(ValueError, match="both libraries define 'color=red'.*prefix"):
        a.merge(b)
    merged = a.merge(b, prefix="m2_")
    assert "color=m2_red" in merged.names()
    x = _x()
    torch.testing.assert_close(compose("m2_red & ~red", merged)(x), e_red(x) - e_red(x))


def test_merge_dict_and_base_clash():
    merged = _lib().merge({"blue": e_circle})
    assert "blue" in merged
    with pytest.raises(ValueError, match="both libraries have a base"):
        _lib(base=e_base).merge(ConceptLibrary({"blue": e_red}, base=e_circle))


# --- listing ------------------------------------------------------------------------------------
def test_describe_lists_every_dsl_spelling():
    model = Heads(["smiling"])
    lib = _lib(temperatures={"green": 0.5}, base=e_base)
    lib.add("at", lambda x, a: x.sum(-1), parametric=True)
    lib.add_model(model, ["smiling"], kind="log_prob")
    text = str(lib)
    assert text.splitlines()[0] == "ConceptLibrary: 5 concepts, base energy, not probabilistic"
    for spelling in ["color=red", "color=green", "shape=circle", "at(...)", "smiling", "base"]:
        assert f"\n  {spelling} " in text
    assert "T=0.5" in text and "function e_red  (also: red)" in text
    assert "log_prob" in text and "model Heads, head 'smiling'" in text
    assert repr(lib) == "ConceptLibrary(5 concepts, base)"


# --- what compose accepts -----------------------------------------------------------------------
class TrainedModel:
    """A stand-in for a trained model that converts itself to a library."""

    sample_shape = (2,)

    def as_concept_library(self):
        return ConceptLibrary({"red": e_red}, base=e_base)


class DuckLibrary:
    """Implements the library interface without subclassing."""

    def __init__(self):
        self.base = None
        self._head = Head("red", None, e_red)

    def resolve(self, concept):
        if concept.name != "red":
            raise UnknownConceptError(f"unknown concept `{concept.name}`")
        return self._head

    def names(self):
        return ["red"]


@pytest.mark.parametrize("source", [
    pytest.param({"red": e_red}, id="dict"),
    pytest.param(ConceptLibrary({"red": e_red}), id="library"),
    pytest.param(TrainedModel(), id="as_concept_library"),
    pytest.param(DuckLibrary(), id="duck-typed"),
])
def test_compose_accepts_every_library_form(source):
    x = _x()
    torch.testing.assert_close(compose("2 * red", source)(x), 2 * e_red(x))


def test_hints_come_from_the_original_object_and_bad_types_fail():
    assert compose("red", TrainedModel()).sample_shape == (2,)
    with pytest.raises(TypeError, match="ConceptLibrary, a trained model or a dict"):
        compose("red", [e_red])
