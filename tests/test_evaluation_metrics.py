"""Accuracy rules, standard errors, diversity and OR proportions on hand-made label sets."""

import doctest
import importlib
import math

import pytest
import torch

from conceptalg import parse
from conceptalg.errors import UnknownConceptError
from conceptalg.evaluation.metrics import (Proportion, SampleLabels, correct, diversity,
                                           free_factors, json_safe, normalised_entropy,
                                           or_proportions, score, truth)

FACTORS = {"shape": ("circle", "square", "triangle"),
           "color": ("red", "green", "blue"),
           "size": ("small", "large")}

# Six hand-made samples; sample 5 is not a clean object (invalid) but reads as a red circle.
SAMPLES = [  # shape, color, size, valid
    ("circle", "red", "small", True),       # 0
    ("circle", "blue", "large", True),      # 1
    ("square", "red", "large", True),       # 2
    ("square", "green", "small", True),     # 3
    ("triangle", "blue", "small", True),    # 4
    ("circle", "red", "large", False),      # 5
]


def labels(samples=SAMPLES) -> SampleLabels:
    values = {f: torch.tensor([FACTORS[f].index(s[k]) for s in samples])
              for k, f in enumerate(FACTORS)}
    return SampleLabels(torch.tensor([s[3] for s in samples]), FACTORS, values)


# expression -> indices of the correct samples (valid and the whole expression holds)
RULES = [
    ("red", [0, 2]),
    ("color=red", [0, 2]),
    ("red & circle", [0]),
    ("circle & red", [0]),
    ("circle & ~red", [1]),
    ("~red & ~circle", [3, 4]),
    ("red | blue", [0, 1, 2, 4]),
    ("(red | blue) & ~square", [0, 1, 4]),
    ("red & circle | triangle", [0, 4]),
    ("~(red | green)", [1, 4]),
    ("~~red", [0, 2]),
    ("2 * red & 0.5 * ~large", [0]),
    ("red & red", [0, 2]),
    ("circle & square", []),
    ("small | large", [0, 1, 2, 3, 4]),
    ("~circle & (small | blue)", [3, 4]),
]


@pytest.mark.parametrize("text,expected", RULES, ids=[r[0] for r in RULES])
def test_accuracy_rules_walk_the_expression(text, expected):
    got = correct(parse(text), labels())
    assert got.nonzero().flatten().tolist() == expected


def test_truth_ignores_validity_and_correct_requires_it():
    lab = labels()
    assert truth("red & circle", lab).tolist() == [True, False, False, False, False, True]
    assert correct("red & circle", lab).tolist() == [True] + [False] * 5


def test_unknown_and_ambiguous_concepts_are_errors():
    with pytest.raises(UnknownConceptError, match="cannot label 'purple'"):
        truth("purple", labels())
    clash = SampleLabels(torch.ones(1, dtype=torch.bool), {"a": ("x",), "b": ("x",)},
                         {"a": torch.tensor([0]), "b": torch.tensor([0])})
    with pytest.raises(UnknownConceptError, match="ambiguous"):
        truth("x", clash)
    assert truth("a=x & b=x", clash).tolist() == [True]
    with pytest.raises(UnknownConceptError, match="at"):
        truth("at(0.5, 0.5)", labels())


def test_at_concept_uses_centres_within_radius():
    centres = torch.tensor([[[0.3, 0.7], [0.8, 0.2]], [[0.5, 0.5], [0.0, 0.0]]])   # [2, 2, 2]
    mask = torch.tensor([[True, True], [True, False]])
    lab = SampleLabels(torch.tensor([True, True]), centres=centres, mask=mask, radius=0.1)
    assert truth("at(0.32, 0.66)", lab).tolist() == [True, False]
    assert truth("at(0.3, 0.7) & at(0.8, 0.25)", lab).tolist() == [True, False]
    assert truth("at(0.05, 0.0)", lab).tolist() == [False, False]  # masked slot


@pytest.mark.parametrize("successes,n", [(0, 10), (3, 10), (10, 10), (37, 200)])
def test_proportion_standard_error_is_binomial(successes, n):
    p = Proportion(successes, n)
    assert p.value == successes / n
    assert p.stderr == pytest.approx(math.sqrt(p.value * (1 - p.value) / n))
    assert math.isnan(Proportion(0, 0).value) and str(Proportion(0, 0)) == "n/a"


@pytest.mark.parametrize("values,k,expected", [
    ([0, 0, 0, 0], 3, 0.0),
    ([0, 1, 2, 0, 1, 2], 3, 1.0),
    ([0, 1], 2, 1.0),
    ([0, 0, 0, 1], 2, -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)),
    ([1, -1, 1], 2, 0.0),
], ids=["one value", "uniform", "two values", "skewed", "unreadable ignored"])
def test_normalised_entropy(values, k, expected):
    assert normalised_entropy(torch.tensor(values), k) == pytest.approx(expected)


def test_free_factors_and_diversity_among_correct_samples():
    lab = labels()
    assert free_factors(parse("red & circle"), lab) == ["size"]
    assert free_factors(parse("~red"), lab) == ["shape", "size"]
    d = diversity(parse("red"), lab, among=correct("red", lab))   # samples 0 (small), 2 (large)
    assert d["entropy"] == {"shape": pytest.approx(normalised_entropy(torch.tensor([0, 1]), 3)),
                            "size": pytest.approx(1.0)}


def test_or_proportions_per_or_node():
    lab = labels()
    mix = or_proportions(parse("(red | blue) & ~square"), lab)
    # valid samples where red | blue holds: 0, 1, 2, 4 -> red 2/4, blue 2/4
    assert mix == {"red | blue": {"red": 0.5, "blue": 0.5}}
    assert or_proportions("red & circle", lab) == {}
    nested = or_proportions("circle | (red | green) & large", lab)
    assert set(nested) == {"circle | (red | green) & large", "red | green"}


def test_score_and_json_safe():
    s = score("red & circle", labels())
    assert (s.accuracy.successes, s.accuracy.n) == (1, 6)
    assert s.valid.value == pytest.approx(5 / 6)
    payload = json_safe(s.as_dict())
    assert payload["expr"] == "red & circle" and payload["n"] == 6
    assert json_safe(float("nan")) is None


@pytest.mark.parametrize("name", ["metrics", "classifiers", "extrapolation", "protocol",
                                  "baseline", "figures", "commands"])
def test_docstring_examples_run(name):
    module = importlib.import_module(f"conceptalg.evaluation.{name}")
    assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_every_public_name_has_an_example():
    for name in ["metrics", "classifiers", "extrapolation", "protocol", "baseline", "figures"]:
        module = importlib.import_module(f"conceptalg.evaluation.{name}")
        for public in module.__all__:
            obj = getattr(module, public)
            if public == "Generator" or not (isinstance(obj, type) or callable(obj)):
                continue                                  # a type alias, tables
            doc = getattr(obj, "__doc__", None) or ""
            assert "Example" in doc or ">>>" in doc, f"{name}.{public}"
