"""The arguments of parametric concepts: a concept written with the wrong number of arguments,
none, one outside its declared range, or arguments it does not take is a ConceptArgumentError
at compose, naming the concept and its arity, placed in the text (line, column, caret) — for a
library that declares the signature and for trained models, whose configs declare arities."""

from __future__ import annotations

import doctest
import math
import pickle
import re
from pathlib import Path

import pytest
import torch

import conceptalg
from conceptalg import (CompileError, Concept, ConceptArgumentError, ConceptLibrary,
                        UnknownConceptError, compose)
from conceptalg.models.build import build_model
from conceptalg.models.model import ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def e_red(x):
    return (x - 1).pow(2).sum(-1)


def e_at(x, args):
    return (x - args).pow(2).sum(-1)


def e_near(x, args):  # any number of arguments
    return x.pow(2).sum(-1) + args.sum(-1)


def _lib() -> ConceptLibrary:
    """``red`` (a factor value), ``at(x, y)`` with arguments in [0, 1], ``near(...)`` with no
    declared arity."""
    return (ConceptLibrary().add("red", e_red, factor="color")
            .add("at", e_at, arity=2, arg_range=(0, 1))
            .add("near", e_near, parametric=True))


# (id, text, line, column, texts the message contains)
ARGUMENT_ERRORS = [
    ("too few", "at(0.3)", 1, 1, ["`at` takes 2 arguments, got 1 in `at(0.3)`",
                                  "write e.g. `at(0.5, 0.5)`"]),
    ("too many", "red & at(0.1, 0.2, 0.3)", 1, 7, ["`at` takes 2 arguments, got 3"]),
    ("empty parentheses", "at()", 1, 1, ["`at` takes 2 arguments, got 0 in `at()`"]),
    ("bare", "red & ~at", 1, 8, ["`at` is parametric: give its arguments (2 numbers), "
                                 "e.g. `at(0.5, 0.5)`"]),
    ("above the range", "at(0.3, 1.5)", 1, 9,
     ["argument 2 of `at(0.3, 1.5)` is 1.5, outside the range [0, 1] that `at` declares"]),
    ("below the range", "at(-0.25, 0.5)", 1, 4, ["argument 1 of `at(-0.25, 0.5)` is -0.25"]),
    ("second line", "red &\n  at(0.5)", 2, 3, ["got 1"]),
    ("after a comment", "at(0.5, # x, y\n 2)", 2, 2, ["argument 2", "is 2, outside"]),
    ("weighted", "2 * at(0.5) | red", 1, 5, ["got 1"]),
    ("first of a repeat", "at(0.2) | red & at(0.2)", 1, 1, ["got 1"]),
    ("first of two", "at(0.5, 0.5, 0.5) & at(0.1)", 1, 1, ["got 3"]),
    ("plain concept", "red(1)", 1, 1, ["`color=red` takes no arguments; write `color=red`"]),
]


@pytest.mark.parametrize("text, line, column, texts", [c[1:] for c in ARGUMENT_ERRORS],
                         ids=[c[0] for c in ARGUMENT_ERRORS])
def test_wrong_arguments_fail_at_compose_with_a_caret(text, line, column, texts):
    with pytest.raises(ConceptArgumentError) as info:
        compose(text, _lib())
    e = info.value
    assert isinstance(e, CompileError) and isinstance(e, ValueError)
    assert (e.line, e.column) == (line, column)
    first, *context = str(e).split("\n")
    assert first == f"line {line}, column {column}: {e.message}"
    shown, caret = context                                  # the line and a caret under it
    assert caret.index("^") - 2 == column - 1 and shown.startswith("  ")
    assert text.split("\n")[line - 1].startswith(shown[2:].rstrip("."))
    for piece in texts:
        assert piece in e.message, e.message


FITTING = ["at(0.3, 0.7)", "at(0, 1) & red", "near(1, 2, 3)", "near(5)", "~at(1, 0) & red",
           "at(0.25, 0.75) | at(0.75, 0.25)"]


@pytest.mark.parametrize("text", FITTING)
def test_arguments_that_fit_compose(text):
    energy = compose(text, _lib())
    assert energy(torch.zeros(3, 2)).shape == (3,)


def test_an_expression_built_in_python_names_the_concept_without_a_place():
    with pytest.raises(ConceptArgumentError) as info:
        compose(Concept("red") & Concept("at", args=(0.3,)), _lib())
    e = info.value
    assert e.line is None and e.context == "" and str(e) == e.message
    assert "`at` takes 2 arguments, got 1" in e.message


def test_unknown_names_and_wrong_arguments_are_reported_together():
    with pytest.raises(UnknownConceptError) as info:
        compose("rde & at(0.3)", _lib())
    message = str(info.value)
    assert "unknown concept `rde`" in message and "`at` takes 2 arguments, got 1" in message


def test_the_error_pickles_with_its_place():
    with pytest.raises(ConceptArgumentError) as info:
        compose("red & at(0.3, 4)", _lib())
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is ConceptArgumentError and str(again) == str(info.value)
    assert (again.line, again.column, again.argument) == (1, 15, 1)


# --- declaring the signature ---------------------------------------------------------------
class Heads(torch.nn.Module):
    """A batched model with a parametric head ``at`` and a plain head ``r``."""

    def concept_energies(self, x, heads, args=None):
        return torch.stack([e_at(x, a) if a is not None else e_red(x)
                            for a in (args or [None] * len(heads))], dim=1)


DECLARATIONS = [
    ("add: arity", lambda: ConceptLibrary().add("at", e_at, arity=2), 2, None),
    ("add: arity and range", lambda: ConceptLibrary().add("at", e_at, arity=2,
                                                          arg_range=(-1, 1)), 2, (-1.0, 1.0)),
    ("add: range alone", lambda: ConceptLibrary().add("at", e_at, arg_range=(0, math.inf)),
     None, (0.0, math.inf)),
    ("add_model: mapping", lambda: ConceptLibrary().add_model(Heads(), ["at", "r"],
                                                              parametric={"at": 2}), 2, None),
    ("add_model: names", lambda: ConceptLibrary().add_model(Heads(), ["at", "r"],
                                                            parametric=["at"]), None, None),
    ("add_model: ranges", lambda: ConceptLibrary().add_model(
        Heads(), ["at", "r"], parametric={"at": 2}, arg_ranges={"at": (0, 1)}), 2, (0.0, 1.0)),
]


@pytest.mark.parametrize("build, arity, arg_range", [d[1:] for d in DECLARATIONS],
                         ids=[d[0] for d in DECLARATIONS])
def test_declared_signatures_are_kept_on_the_head(build, arity, arg_range):
    head = build().resolve("at(0.5, 0.5)")
    assert head.parametric is True and head.arity == arity and head.arg_range == arg_range


BAD_DECLARATIONS = [
    ("arity 0", lambda: ConceptLibrary().add("at", e_at, arity=0), "integer ≥ 1"),
    ("arity bool", lambda: ConceptLibrary().add("at", e_at, arity=True), "integer ≥ 1"),
    ("arity text", lambda: ConceptLibrary().add("at", e_at, arity="2"), "integer ≥ 1"),
    ("range reversed", lambda: ConceptLibrary().add("at", e_at, arg_range=(1, 0)), "low ≤ high"),
    ("range nan", lambda: ConceptLibrary().add("at", e_at, arg_range=(0, math.nan)),
     "low ≤ high"),
    ("range text", lambda: ConceptLibrary().add("at", e_at, arg_range="01"), "pair (low, high)"),
    ("range of three", lambda: ConceptLibrary().add("at", e_at, arg_range=(0, 1, 2)),
     "pair (low, high)"),
    ("model range of a plain head", lambda: ConceptLibrary().add_model(
        Heads(), ["at", "r"], parametric={"at": 2}, arg_ranges={"r": (0, 1)}), "not parametric"),
    ("model range of a missing head", lambda: ConceptLibrary().add_model(
        Heads(), ["at"], parametric={"at": 2}, arg_ranges={"b": (0, 1)}), "not given: ['b']"),
    ("model arity 0", lambda: ConceptLibrary().add_model(Heads(), ["at"], parametric={"at": 0}),
     "integer ≥ 1"),
]


@pytest.mark.parametrize("build, message", [b[1:] for b in BAD_DECLARATIONS],
                         ids=[b[0] for b in BAD_DECLARATIONS])
def test_bad_declarations_are_refused(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_parametric_as_a_string_is_refused():
    with pytest.raises(TypeError, match="got the string 'at'"):
        ConceptLibrary().add_model(Heads(), ["at"], parametric="at")


def test_a_declared_arity_is_checked_where_the_model_computes_it():
    lib = ConceptLibrary().add_model(Heads(), ["at", "r"], parametric={"at": 2})
    assert compose("at(0.1, 0.2) & r", lib)(torch.zeros(2, 2)).shape == (2,)
    with pytest.raises(ConceptArgumentError, match="`at` takes 2 arguments, got 1"):
        compose("at(0.1) & r", lib)


# --- trained models: their configs declare the arities --------------------------------------
def _cd_model():
    return build_model(ModelConfig(sample_shape=(2,), parametric={"at": 2}, heads="film",
                                   backbone="mlp", backbone_options={"hidden": (8,)},
                                   bounds=None))


def _dsm_model():
    return build_model(ModelConfig(sample_shape=(2,), parametric={"at": 2}, heads="film",
                                   objective="dsm", backbone="mlp", bounds=None,
                                   backbone_options={"hidden": (8,)},
                                   noise={"sigma_data": 0.5, "mean": [0.0, 0.0],
                                          "sigma_min": 0.01, "sigma_max": 10.0}))


MODELS = [("contrastive divergence", _cd_model), ("diffusion", _dsm_model),
          ("shipped scenes", lambda: conceptalg.load(ROOT / "models" / "scenes"))]


@pytest.mark.parametrize("make", [m[1] for m in MODELS], ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("text, column, message", [
    ("at(0.3)", 1, "`at` takes 2 arguments, got 1 in `at(0.3)`"),
    ("at(0.3, 0.4, 0.5)", 1, "`at` takes 2 arguments, got 3"),
    ("at", 1, "`at` is parametric: give its arguments (2 numbers)"),
], ids=["one argument", "three arguments", "bare"])
def test_trained_models_declare_their_arities(make, text, column, message):
    model = make()
    with pytest.raises(ConceptArgumentError) as info:
        compose(text, model)
    assert info.value.column == column and message in info.value.message
    assert compose("at(0.3, 0.4)", model).leaves == ("at(0.3, 0.4)",)


def test_module_examples_run():
    import conceptalg.errors
    import conceptalg.library
    import conceptalg.syntax

    for module in (conceptalg.errors, conceptalg.library, conceptalg.syntax):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
