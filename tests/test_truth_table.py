"""The truth table's checker (issue 22, part 3) against hand-labelled renders: for every
expression of the table, the renders where it is true pass and every other one fails (invalid
images fail them all); the χ² test of branch counts; a row and the figure on the shipped
model."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from scipy import stats

import conceptalg
from conceptalg.data.render import draw
from conceptalg.data.scenes import SCENE_SIZE
from conceptalg.data.shapes import COLORS, PALETTE, RADII, SHAPES, render
from conceptalg.evaluation.figures import save_truth_figure
from conceptalg.evaluation.truth_table import chi2_p, holds, truth_row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import truth_table as bench  # noqa: E402

# --- shapes: one object per render, labelled by hand ------------------------------------------
RENDERS = {  # name -> (shape, colour, size, cx, cy)
    "green circle L": ("circle", "green", "large", 0.5, 0.5),
    "red square S": ("square", "red", "small", 0.3, 0.6),
    "blue triangle L": ("triangle", "blue", "large", 0.55, 0.45),
    "red circle S": ("circle", "red", "small", 0.7, 0.3),
    "blue square L": ("square", "blue", "large", 0.5, 0.5),
    "yellow triangle S": ("triangle", "yellow", "small", 0.4, 0.4),
    "cyan square S": ("square", "cyan", "small", 0.5, 0.3),
    "magenta circle S": ("circle", "magenta", "small", 0.6, 0.6),
}
# expression -> the renders where it is true (every other render makes it false)
TRUE_OF = {
    "red | blue": {"red square S", "blue triangle L", "red circle S", "blue square L"},
    "circle & ~red": {"green circle L", "magenta circle S"},
    "~circle & large": {"blue triangle L", "blue square L"},
    "(red | blue) & square": {"red square S", "blue square L"},
    "circle & ~red | square": {"green circle L", "magenta circle S", "red square S",
                               "blue square L", "cyan square S"},
    "~(red | green) & triangle": {"blue triangle L", "yellow triangle S"},
    "2 * red & square": {"red square S"},
}
SHAPE_CASES = [(expr, name, name in true) for expr, true in TRUE_OF.items() for name in RENDERS]


def test_the_table_covers_the_benchmark():
    assert list(TRUE_OF) == bench.SHAPES


@pytest.fixture(scope="module")
def shapes_images():
    return {name: render(*spec) for name, spec in RENDERS.items()}


@pytest.mark.parametrize("expr, name, expected", SHAPE_CASES,
                         ids=[f"{e} | {n}" for e, n, _ in SHAPE_CASES])
def test_shapes_truth_by_hand(expr, name, expected, shapes_images):
    assert holds(expr, shapes_images[name][None]).tolist() == [expected]


def _invalid_shapes():
    two = torch.maximum(render("circle", "green", "small", 0.3, 0.3),
                        render("square", "blue", "small", 0.7, 0.7))   # two objects
    blank = torch.zeros(3, 32, 32)
    blend = draw(torch.tensor([0]), torch.tensor([[0.5, 0.5]]), torch.tensor([RADII["large"]]),
                 torch.tensor([[1.0, 0.5, 0.0]]))[0]                   # orange: no palette colour
    noise = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    return torch.stack([two, blank, blend, noise])


@pytest.mark.parametrize("expr", list(TRUE_OF))
def test_invalid_shapes_fail_every_expression(expr):
    assert not holds(expr, _invalid_shapes()).any()


def test_a_batch_is_checked_sample_by_sample(shapes_images):
    names = list(RENDERS)
    x = torch.stack([shapes_images[n] for n in names])
    for expr, true in TRUE_OF.items():
        assert holds(expr, x).tolist() == [n in true for n in names], expr


# --- scenes: objects at hand-placed centres ---------------------------------------------------
def scene(*centres):
    """One scene with small objects at ``centres`` (shapes and colours cycle)."""
    k = len(centres)
    return draw(torch.tensor([i % len(SHAPES) for i in range(k)]),
                torch.tensor(centres, dtype=torch.float32),
                torch.full((k,), RADII[SCENE_SIZE]),
                PALETTE[torch.tensor([(i + 1) % len(COLORS) for i in range(k)])],
                image=torch.zeros(k, dtype=torch.long), n_images=1)[0]


SCENE_RENDERS = {  # name -> centres
    "at p": [(0.3, 0.3)],
    "near p": [(0.36, 0.25)],                     # 0.078 from p
    "at q": [(0.7, 0.7)],
    "at p and q": [(0.3, 0.3), (0.7, 0.7)],
    "at p, elsewhere": [(0.3, 0.3), (0.75, 0.25)],
    "off p": [(0.42, 0.3)],                       # 0.12 from p: not at p
    "far": [(0.2, 0.8), (0.8, 0.2)],
    "p, q and one more": [(0.3, 0.3), (0.7, 0.7), (0.25, 0.75)],
}
SCENE_TRUE_OF = {
    "at(0.3, 0.3) & ~at(0.7, 0.7)": {"at p", "near p", "at p, elsewhere"},
    "at(0.3, 0.3) | at(0.7, 0.7)": {"at p", "near p", "at q", "at p and q", "at p, elsewhere",
                                    "p, q and one more"},
}
SCENE_CASES = [(e, n, n in true) for e, true in SCENE_TRUE_OF.items() for n in SCENE_RENDERS]


def test_the_scenes_table_covers_the_benchmark():
    assert list(SCENE_TRUE_OF) == bench.SCENES


@pytest.mark.parametrize("expr, name, expected", SCENE_CASES,
                         ids=[f"{e} | {n}" for e, n, _ in SCENE_CASES])
def test_scenes_truth_by_hand(expr, name, expected):
    assert holds(expr, scene(*SCENE_RENDERS[name])[None], "scenes").tolist() == [expected]


@pytest.mark.parametrize("expr", list(SCENE_TRUE_OF))
def test_invalid_scenes_fail_every_expression(expr):
    five = scene((0.2, 0.2), (0.8, 0.2), (0.5, 0.5), (0.2, 0.8), (0.8, 0.8))  # more than 4
    large = render("circle", "red", "large", 0.3, 0.3)                       # not scene-sized
    touching = scene((0.3, 0.3), (0.34, 0.3))                               # a merged blob
    x = torch.stack([five, large, touching, torch.zeros(3, 32, 32)])
    assert not holds(expr, x, "scenes").any()


# --- the χ² test of branch counts -------------------------------------------------------------
@pytest.mark.parametrize("counts, weights", [([12, 20], [0.5, 0.5]),
                                             ([3, 9, 20], [0.25, 0.25, 0.5]),
                                             ([30, 2], [0.5, 0.5])])
def test_chi2_against_scipy(counts, weights):
    expected = stats.chisquare(counts, [w * sum(counts) for w in weights]).pvalue
    assert math.isclose(chi2_p(counts, weights), expected, rel_tol=1e-9)


def test_chi2_of_one_branch_or_no_draws_is_one():
    assert chi2_p([32], [1.0]) == 1.0 and chi2_p([0, 0], [0.5, 0.5]) == 1.0
    assert chi2_p([10, 0], [1.0, 0.0]) == 1.0       # a weight-0 branch is no cell


# --- a row and the figure on the shipped model ------------------------------------------------
def test_a_row_of_an_or_on_the_shipped_model(tmp_path):
    model = conceptalg.load(ROOT / "models" / "shapes")
    row = truth_row(model, "red | blue", 3, seed=0)
    assert row.refused is None and row.samples.shape == (3, 3, 32, 32)
    assert row.branches == ["red", "blue"] and row.weights == [0.5, 0.5]
    assert sum(row.counts) == 3 and 0.0 <= row.p <= 1.0
    assert row.truth.tolist() == holds("red | blue", row.samples).tolist()
    out = row.as_dict()
    assert {"truth", "stderr", "holds", "valid", "branches", "chi2 p"} <= set(out)
    refused = truth_row(model, "~(red | green) & triangle", 3, seed=0)
    assert refused.samples is None and "negates an OR" in refused.refused
    assert refused.as_dict()["refused"] == refused.refused
    path = save_truth_figure(
        [{"label": "red | blue", "images": row.samples, "truth": row.truth},
         {"label": "refused", "refused": refused.refused}], tmp_path / "t.png")
    assert path.stat().st_size > 1000
