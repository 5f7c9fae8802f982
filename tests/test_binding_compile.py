"""Bindings compiled (docs/design.md §4): `at(p)[E]` is "P(object at p) · P(E | the object at p)"
under logic — checked against a hand formula on analytic heads, for locality on a real guided
model, through checkpoints and export, and for every refusal."""

from __future__ import annotations

import pytest
import torch

import conceptalg
from conceptalg.cli import main as cli_main
from conceptalg.compiler.bindings import BoundConcept, lower_bindings
from conceptalg.errors import CompileError, UnknownConceptError
from conceptalg.expr import Concept
from conceptalg.library import ConceptLibrary
from conceptalg.models import ModelConfig, build_model
from conceptalg.training import DSMTrainer, builtin_data, default_dsm_config
from conceptalg.training.export import export_model


# --- analytic heads: a hand formula -------------------------------------------------------------
# x is [B, 4]: (position x, position y, redness, roundness). P(object at p) falls off with the
# distance of (x0, x1) from p; P(red | object at p) = sigmoid(k·redness·w(p)), where the weight
# w(p) = exp(−|x_pos − p|²) makes the property head read "the object near p" only.

def _p_at(x, p):
    return torch.exp(-((x[:, :2] - p) ** 2).sum(1) / 0.02)


def _w(x, p):
    return torch.exp(-((x[:, :2] - p) ** 2).sum(1))


PROPERTIES = {"color=red": (2, 3.0), "color=blue": (2, -3.0), "shape=circle": (3, 2.0),
              "shape=square": (3, -2.0)}


class _Objects(torch.nn.Module):
    """log P(property | the object at p) of the made-up properties above."""

    def concept_energies(self, x, heads, args):
        columns = []
        for name, a in zip(heads, args):
            column, k = PROPERTIES[name.split("[")[1].rstrip("]")]
            columns.append(torch.nn.functional.logsigmoid(k * x[:, column] * _w(x, a)))
        return torch.stack(columns, 1)


def _library() -> ConceptLibrary:
    lib = ConceptLibrary(base=lambda x: 0.5 * (x ** 2).sum(1))
    lib.add("at", lambda x, a: torch.log(_p_at(x, a)), arity=2, kind="log_prob")
    lib.add_objects("at", _Objects(), {key: f"at[{key}]" for key in PROPERTIES})
    return lib


def _hand(x, p, q, w=1.0):
    """E of `at(p)[red & ~circle] & ~at(q)[blue | square]` under logic, written out."""
    def prop(key, point):
        column, k = PROPERTIES[key]
        return torch.sigmoid(k * x[:, column] * _w(x, point))
    first = _p_at(x, p) * prop("color=red", p) * (1 - prop("shape=circle", p))
    either = 1 - (1 - prop("color=blue", q)) * (1 - prop("shape=square", q))
    second = 1 - _p_at(x, q) * either
    return 0.5 * (x ** 2).sum(1) - w * torch.log(first * second)


@pytest.mark.parametrize("w", [1.0, 2.5])
def test_a_binding_is_the_hand_formula(w):
    p, q = torch.tensor([0.3, 0.3], dtype=torch.float64), torch.tensor([0.7, 0.6],
                                                                       dtype=torch.float64)
    expr = "at(0.3, 0.3)[red & ~circle] & ~at(0.7, 0.6)[blue | square]"
    energy = conceptalg.compose(expr, _library(), semantics="logic", guidance_scale=w)
    x = torch.rand(64, 4, dtype=torch.float64) * 2 - 0.5
    torch.testing.assert_close(energy(x), _hand(x, p, q, w), rtol=1e-9, atol=1e-9)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_hand(xg, p, q, w).sum(), xg)
    torch.testing.assert_close(energy.score(x), -grad, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("text, expected", [
    ("at(0.3, 0.3)[~red]", lambda x, P, A: A * (1 - P("color=red"))),
    ("~at(0.3, 0.3)[red]", lambda x, P, A: 1 - A * P("color=red")),
    ("at(0.3, 0.3)[red | circle]",
     lambda x, P, A: A * (1 - (1 - P("color=red")) * (1 - P("shape=circle")))),
    ("at(0.3, 0.3)[2 * red]", lambda x, P, A: A * P("color=red") ** 2),
    ("at(0.3, 0.3)", lambda x, P, A: A),
], ids=["property negated", "binding negated", "OR of one object", "weighted", "place alone"])
def test_negation_and_or_inside_and_outside(text, expected):
    p = torch.tensor([0.3, 0.3], dtype=torch.float64)
    x = torch.rand(32, 4, dtype=torch.float64) * 2 - 0.5
    energy = conceptalg.compose(text, _library(), semantics="logic")

    def prop(key):
        column, k = PROPERTIES[key]
        return torch.sigmoid(k * x[:, column] * _w(x, p))
    want = 0.5 * (x ** 2).sum(1) - torch.log(expected(x, prop, _p_at(x, p)))
    torch.testing.assert_close(energy(x), want, rtol=1e-9, atol=1e-9)


def test_lowering_and_the_leaves():
    expr = conceptalg.parse("at(0.3, 0.3)[red & circle] & at(0.7, 0.7)[red]")
    lowered = lower_bindings(expr)
    at1, at2 = Concept("at", args=(0.3, 0.3)), Concept("at", args=(0.7, 0.7))
    assert str(lowered) == ("at(0.3, 0.3) & red@at(0.3, 0.3) & circle@at(0.3, 0.3) & "
                            "at(0.7, 0.7) & red@at(0.7, 0.7)")
    assert BoundConcept(Concept("red"), at1) != BoundConcept(Concept("red"), at2)
    energy = conceptalg.compose(expr, _library(), semantics="logic")
    assert energy.leaves == ("at(0.3, 0.3)", "red@at(0.3, 0.3)", "circle@at(0.3, 0.3)",
                             "at(0.7, 0.7)", "red@at(0.7, 0.7)")
    text = energy.explain()
    assert "bindings:    at(p)[E] = at(p) & E@p" in text and "red@at(0.7, 0.7)" in text


REFUSALS = [
    ("product", "at(0.3, 0.3)[red]", dict(semantics="product"), CompileError,
     "composes under semantics='logic' only"),
    ("guidance", "circle & ~at(0.3, 0.3)[red]", dict(semantics="guidance"), CompileError,
     "composes under semantics='logic' only"),
    ("unknown property", "at(0.3, 0.3)[green]", dict(semantics="logic"), UnknownConceptError,
     "`green` is not a property of the object at `at`; it can be: color=red, red"),
    ("place inside a body", "at(0.3, 0.3)[at(0.5, 0.5)]", dict(semantics="logic"), CompileError,
     "a binding's body names properties of the object at the place"),
    ("wrong arity", "at(0.3)[red]", dict(semantics="logic"), conceptalg.errors.ConceptArgumentError,
     "`at` takes 2 arguments, got 1"),
]


@pytest.mark.parametrize("name, text, options, error, message", REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_refusals_say_what_is_wrong(name, text, options, error, message):
    with pytest.raises(error, match=_escape(message)):
        conceptalg.compose(text, _library(), **options)


def test_a_place_without_object_properties_is_refused():
    lib = ConceptLibrary(base=lambda x: x.sum(1))
    lib.add("at", lambda x, a: x.sum(1), arity=2, kind="log_prob")
    with pytest.raises(UnknownConceptError, match="the objects at `at` have no properties in "
                                                  "this library"):
        conceptalg.compose("at(0.3, 0.3)[red]", lib, semantics="logic")

    class Source:  # a concept source of its own (docs/design.md §4), without resolve_bound
        base = lib.base
        resolve = lib.resolve
        names = lib.names
    with pytest.raises(UnknownConceptError, match="Source has no properties of objects"):
        conceptalg.compose("at(0.3, 0.3)[red]", Source(), semantics="logic")


def _escape(text: str) -> str:
    import re
    return re.escape(text)


# --- a real guided model: locality, checkpoints, export ----------------------------------------

def _guided():
    torch.manual_seed(0)
    cfg = ModelConfig(sample_shape=(3, 32, 32), parametric={"at": 2},
                      object_factors={"shape": ["circle", "square", "triangle"],
                                      "color": ["red", "green", "blue", "yellow", "magenta",
                                                "cyan"]},
                      heads="classifier", objective="dsm", backbone="unet",
                      parameterization="score", backbone_options={"channels": (8,)},
                      views={"shape": "colour-blind", "color": "shape-blind"},
                      composition={"semantics": "logic", "guidance_scale": 1.0})
    return build_model(cfg).eval()


def test_a_binding_reads_only_the_pixels_near_its_place():
    """The binding's log-probability (E − E_0) does not move when pixels far outside both of its
    windows change, and moves when the object inside them changes."""
    model = _guided()
    energy = conceptalg.compose("at(0.3, 0.3)[red & circle]", model)
    x = torch.rand(4, 3, 32, 32)
    far, near = x.clone(), x.clone()
    far[:, :, 24:, 24:] = torch.rand(4, 3, 8, 8)          # (0.75–1, 0.75–1): outside both
    near[:, :, 8:12, 8:12] = torch.rand(4, 3, 4, 4)       # at (0.3, 0.3)
    with torch.no_grad():
        log_p = [model.concept_energies(v, ["at", "at[color=red]", "at[shape=circle]"],
                                        [torch.tensor([0.3, 0.3])] * 3, sigma=0.3).sum(1)
                 for v in (x, far, near)]
    torch.testing.assert_close(log_p[1], log_p[0], rtol=0, atol=1e-12)
    assert (log_p[2] - log_p[0]).abs().max() > 1e-6
    assert energy.semantics == "logic"


def test_object_heads_train_and_round_trip_through_checkpoint_and_export(tmp_path):
    data = builtin_data("scenes", n=64)
    trainer = DSMTrainer(data, config=default_dsm_config((3, 32, 32), steps=2, batch_size=8),
                         parameterization="score", heads="classifier",
                         views={"shape": "colour-blind", "color": "shape-blind"},
                         backbone_options={"channels": (8,), "classifier": {"width": 4},
                                           "object": {"width": 4}})
    history = trainer.fit()
    assert trainer.model.config.object_factors == data.object_factors
    assert history[-1]["cross-entropy"] > 0
    trainer.save(tmp_path / "run")
    back = conceptalg.load(tmp_path / "run")
    x, point = data.x[:3].to(torch.float64), torch.tensor([0.4, 0.6])
    heads = ["at", "at[shape=square]", "at[color=cyan]"]
    want = trainer.model.double().concept_energies(x, heads, [point] * 3, sigma=0.2)
    torch.testing.assert_close(back.double().concept_energies(x, heads, [point] * 3, sigma=0.2),
                               want)
    export_model(tmp_path / "run", tmp_path / "model", sampler_defaults={"guidance_scale": 5.0})
    shipped = conceptalg.load(tmp_path / "model")
    energy = conceptalg.compose("at(0.4, 0.6)[square & cyan]", shipped)
    assert energy.guidance_scale == 5.0 and energy.leaves[1] == "square@at(0.4, 0.6)"
    assert cli_main(["explain", "at(0.4, 0.6)[square & ~cyan]", "--model",
                     str(tmp_path / "model")]) == 0


def test_held_out_pairs_never_reach_a_scenes_training_batch():
    """Every object of 20 streamed training batches of the scenes data, decoded from the pixels
    by the exact scenes decoder, avoids the six held-out (shape, colour) pairs, and every seen
    pair appears."""
    from conceptalg.data.shapes import COLORS, DEFAULT_HOLDOUT, SHAPES
    from conceptalg.evaluation.decoder import decode_scenes

    data = builtin_data("scenes")
    seen, objects = set(), 0
    for step in range(20):
        batch = data.batch(64, step)
        decoded = decode_scenes(batch.x)
        assert bool(decoded.valid.all())
        used = decoded.mask
        objects += int(used.sum())
        seen |= {(SHAPES[a], COLORS[b]) for a, b in zip(decoded.shapes[used].tolist(),
                                                         decoded.colors[used].tolist())}
    assert objects > 2 * 20 * 64
    assert not seen & DEFAULT_HOLDOUT, seen & DEFAULT_HOLDOUT
    assert len(seen) == 18 - len(DEFAULT_HOLDOUT)


def test_the_command_line_trains_object_heads_over_a_film_base(tmp_path):
    """`conceptalg train --heads classifier --base RUN --views ...` on scenes: the views name
    the objects' factors, and the run's model answers bindings."""
    data = builtin_data("scenes", n=32)
    base = DSMTrainer(data, config=default_dsm_config((3, 32, 32), steps=1, batch_size=4),
                      parameterization="score", backbone_options={"channels": (8,)})
    base.fit()
    base.save(tmp_path / "base")
    assert cli_main(["train", "--data", "scenes", "--heads", "classifier", "--base",
                     str(tmp_path / "base"), "--views", "shape=colour-blind,color=shape-blind",
                     "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "4",
                     "--n", "32", "--no-progress"]) == 0
    model = conceptalg.load(tmp_path / "run")
    assert model.config.object_factors == data.object_factors
    assert model.config.views == {"shape": "colour-blind", "color": "shape-blind"}
    assert conceptalg.compose("at(0.5, 0.5)[red & circle]", model).semantics == "logic"
