"""The ``shapes`` data: the rendering contract against a float64 numpy oracle, geometry checks,
hold-out splits and determinism."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conceptalg.data.render import SHAPE_KINDS, coverage, draw, shape_area
from conceptalg.data.shapes import (COLORS, CONCEPTS, DEFAULT_HOLDOUT, FACTORS, PALETTE, RADII,
                                    SHAPES, SIZES, ShapesDataset, pairs, render, render_batch,
                                    resolve_holdout)

R = 32




# --------------------------------------------------------------------------- the oracle


def _vertices(shape, cx, cy, r):
    """Polygon corners in pixel units, written from the spec (not from the renderer)."""
    if shape == "square":
        h = r / math.sqrt(2)
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    return [(cx, cy - r), (cx + r * math.sqrt(3) / 2, cy + r / 2),
            (cx - r * math.sqrt(3) / 2, cy + r / 2)]


def oracle_sdf(shape, cx, cy, r, points):
    """Exact signed distance (pixels, negative inside) of points [P, 2], in float64."""
    if shape == "circle":
        return np.hypot(points[:, 0] - cx, points[:, 1] - cy) - r
    v = np.array(_vertices(shape, cx, cy, r))
    a, b = v, np.roll(v, -1, axis=0)                                          # edges a -> b
    p = points[:, None, :]
    e = b - a
    t = np.clip(((p - a) * e).sum(-1) / (e * e).sum(-1), 0, 1)
    dist = np.linalg.norm(p - a - t[..., None] * e, axis=-1).min(1)
    cross = e[None, :, 0] * (p[..., 1] - a[:, 1]) - e[None, :, 1] * (p[..., 0] - a[:, 0])
    inside = (cross >= 0).all(1) | (cross <= 0).all(1)
    return np.where(inside, -dist, dist)


def oracle_image(shape, color, size, cx, cy, res=R):
    grid = np.arange(res) + 0.5
    xs, ys = np.meshgrid(grid, grid)
    points = np.stack([xs, ys], -1).reshape(-1, 2)
    d = oracle_sdf(shape, cx * res, cy * res, RADII[size] * res, points)
    cov = np.clip(0.5 - d, 0, 1).reshape(res, res)
    return PALETTE[COLORS.index(color)].numpy()[:, None, None] * cov


CASES = [(s, c, z, x, y) for s, c, z, x, y in [
    ("circle", "red", "large", 0.5, 0.5), ("square", "green", "small", 0.31, 0.62),
    ("triangle", "blue", "large", 0.25, 0.75), ("triangle", "yellow", "small", 0.8, 0.2),
    ("square", "magenta", "large", 0.7377, 0.413), ("circle", "cyan", "small", 0.15, 0.85),
]]


@pytest.mark.parametrize("shape,color,size,cx,cy", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_render_matches_oracle(shape, color, size, cx, cy):
    image = render(shape, color, size, cx, cy)
    assert image.shape == (3, R, R) and image.dtype == torch.float32
    np.testing.assert_allclose(image.numpy(), oracle_image(shape, color, size, cx, cy), atol=2e-5)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SHAPES), st.sampled_from(COLORS), st.sampled_from(SIZES),
       st.floats(0, 1), st.floats(0, 1), st.sampled_from([16, 32, 48]))
def test_render_matches_oracle_anywhere(shape, color, size, u, v, res):
    rho = RADII[size]
    cx, cy = rho + (1 - 2 * rho) * u, rho + (1 - 2 * rho) * v
    image = render(shape, color, size, cx, cy, resolution=res)
    np.testing.assert_allclose(image.numpy(), oracle_image(shape, color, size, cx, cy, res),
                               atol=5e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_antialiasing_approximates_area_coverage(shape):
    # The one-pixel ramp approximates the covered fraction of each pixel (16x16 supersampling).
    cx, cy, r = 15.3, 16.7, 8.0
    sub = (np.arange(16) + 0.5) / 16
    grid = (np.arange(R)[:, None] + sub[None, :]).reshape(-1)
    xs, ys = np.meshgrid(grid, grid)
    inside = oracle_sdf(shape, cx, cy, r, np.stack([xs, ys], -1).reshape(-1, 2)) < 0
    fraction = inside.reshape(R, 16, R, 16).mean((1, 3))
    cov = coverage(torch.tensor([SHAPES.index(shape)]), torch.tensor([[cx / R, cy / R]]),
                   torch.tensor([r / R]))[0].double().numpy()
    edge = (fraction > 0) & (fraction < 1)
    assert np.abs(cov - fraction).max() < 0.25  # worst at sharp corners
    assert np.abs(cov - fraction)[edge].mean() < 0.05
    assert cov.sum() == pytest.approx(shape_area(shape, r), rel=0.01)
    assert fraction.sum() == pytest.approx(shape_area(shape, r), rel=0.01)


# --------------------------------------------------------------------------- geometry


def _mask(shape, size, cx=0.5, cy=0.5):
    return render(shape, "red", size, cx, cy)[0] > 0.5


@pytest.mark.parametrize("size", SIZES)
def test_square_is_axis_aligned(size):
    mask = _mask("square", size, 0.47, 0.52)
    rows = mask.any(1).nonzero().reshape(-1)
    widths = mask.sum(1)[rows]
    assert (widths == widths[0]).all(), "every row of an axis-aligned square has the same width"
    assert (mask.sum(0)[mask.any(0)] == len(rows)).all(), "... and every column the same height"
    side = 2 * RADII[size] * R / math.sqrt(2)
    assert abs(len(rows) - side) <= 1


@pytest.mark.parametrize("size", SIZES)
def test_triangle_apex_up_flat_bottom(size):
    mask = _mask("triangle", size, 0.5, 0.5)
    widths = mask.sum(1)[mask.any(1)]
    assert (widths[1:] >= widths[:-1]).all(), "rows widen from the apex down"
    assert widths[0] <= 3, "the apex is at the top"
    side = RADII[size] * R * math.sqrt(3)
    assert abs(int(widths[-1]) - side) <= 1.5, "the bottom row is the flat base"
    # the base is a straight row: the two rows below it are empty in the mask
    bottom = int(mask.any(1).nonzero().max())
    assert abs(bottom + 0.5 - (0.5 + RADII[size] / 2) * R) <= 1


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", SIZES)
def test_circumradius_matches_size(shape, size):
    cx, cy = 0.52, 0.46
    mask = _mask(shape, size, cx, cy)
    ys, xs = mask.nonzero(as_tuple=True)
    far = torch.hypot(xs + 0.5 - cx * R, ys + 0.5 - cy * R).max()
    assert abs(float(far) - RADII[size] * R) <= 1.0


@pytest.mark.parametrize("shape,color", [(s, c) for s in SHAPES for c in COLORS])
def test_colours_exact_inside_and_black_outside(shape, color):
    image = render(shape, color, "large", 0.5, 0.5)
    full = image.amax(0) == 1.0
    assert full.sum() > 20
    rgb = PALETTE[COLORS.index(color)]
    assert torch.equal(image[:, full], rgb[:, None].expand(3, int(full.sum())))
    assert (image.amax(0) == 0).sum() > R * R / 2


@pytest.mark.parametrize("shape", SHAPES)
def test_edges_antialiased(shape):
    image = render(shape, "green", "large", 0.43, 0.57)[1]
    edge = (image > 0) & (image < 1)
    assert edge.sum() > 10
    grid = np.arange(R) + 0.5
    xs, ys = np.meshgrid(grid, grid)
    d = oracle_sdf(shape, 0.43 * R, 0.57 * R, 0.25 * R, np.stack([xs, ys], -1).reshape(-1, 2))
    assert (np.abs(d.reshape(R, R)[edge.numpy()]) < 0.5 + 1e-5).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", SIZES)
def test_shape_inside_image_at_extreme_centres(shape, size):
    rho = RADII[size]
    for c in [(rho, rho), (1 - rho, 1 - rho), (rho, 1 - rho)]:
        cov = coverage(torch.tensor([SHAPES.index(shape)]), torch.tensor([c]), torch.tensor([rho]))
        # nothing of the shape itself is cut off (at most part of the half-pixel ramp)
        assert float(cov.sum()) == pytest.approx(shape_area(shape, rho * R), rel=0.02)


def test_dataset_centres_fit():
    data = ShapesDataset(2000, seed=3, split="all")
    rho = torch.tensor([RADII[s] for s in SIZES])[data.labels["size"]][:, None]
    assert ((data.centres >= rho) & (data.centres <= 1 - rho)).all()


def test_draw_combines_by_maximum_and_validates():
    one = draw(torch.tensor([0, 1]), torch.tensor([[0.25, 0.25], [0.75, 0.75]]),
               torch.tensor([0.15, 0.15]), torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]),
               image=torch.tensor([0, 0]))
    assert one.shape == (1, 3, R, R)
    assert one[0, 0, 8, 8] == 1 and one[0, 2, 24, 24] == 1 and one[0, 2, 8, 8] == 0
    with pytest.raises(ValueError, match="kind codes"):
        coverage(torch.tensor([3]), torch.tensor([[0.5, 0.5]]), torch.tensor([0.1]))
    with pytest.raises(ValueError, match="same number"):
        coverage(torch.tensor([0, 1]), torch.tensor([[0.5, 0.5]]), torch.tensor([0.1]))
    with pytest.raises(ValueError, match="shape must be one of"):
        render("hexagon", "red", "small", 0.5, 0.5)


# --------------------------------------------------------------------------- the dataset


def test_vocabulary():
    assert list(FACTORS) == ["shape", "color", "size"] and SHAPES == SHAPE_KINDS
    assert len(set(CONCEPTS)) == len(CONCEPTS) == 11, "bare names are unique across factors"
    assert len(DEFAULT_HOLDOUT) == 6


def test_dataset_contents():
    data = ShapesDataset(500, seed=0)
    assert data.images.shape == (500, 3, R, R) and data.images.dtype == torch.float32
    assert data.images.min() == 0 and data.images.max() == 1
    assert data.centres.shape == (500, 2)
    image, codes = data[7]
    assert torch.equal(codes, data.codes()[7]) and codes.shape == (3,)
    again = render_batch(data.labels, data.centres)
    assert torch.equal(again, data.images)
    targets = data.concept_targets()
    assert targets.shape == (500, 11) and (targets.sum(1) == 3).all()
    k = CONCEPTS.index(SIZES[int(data.labels["size"][0])])
    assert targets[0, k] == 1


def test_dataset_deterministic_from_seed():
    a, b, c = ShapesDataset(300, seed=5), ShapesDataset(300, seed=5), ShapesDataset(300, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.centres, b.centres)
    assert all(torch.equal(a.labels[f], b.labels[f]) for f in FACTORS)
    assert not torch.equal(a.images, c.images)


def _pairs_of(data):
    return {(SHAPES[s], COLORS[c]) for s, c in zip(data.labels["shape"].tolist(),
                                                    data.labels["color"].tolist())}


@pytest.mark.parametrize("holdout", [DEFAULT_HOLDOUT, {("triangle", "red"), ("circle", "blue")}],
                         ids=["default", "custom"])
def test_holdout_splits(holdout):
    train = ShapesDataset(3000, seed=1, split="train", holdout=holdout)
    held = ShapesDataset(1000, seed=1, split="heldout", holdout=holdout)
    assert _pairs_of(train) == set(pairs("all")) - set(holdout)
    assert _pairs_of(held) == set(holdout)
    for factor, values in FACTORS.items():  # every value is still seen in training
        assert set(train.labels[factor].tolist()) == set(range(len(values)))
    assert _pairs_of(ShapesDataset(3000, seed=1, split="all", holdout=holdout)) == set(pairs("all"))


def test_no_holdout():
    assert resolve_holdout("none") == frozenset() == resolve_holdout(None)
    assert _pairs_of(ShapesDataset(3000, seed=2, holdout="none")) == set(pairs("all"))
    with pytest.raises(ValueError, match="empty"):
        ShapesDataset(10, split="heldout", holdout="none")


@pytest.mark.parametrize("holdout,message", [
    ({("circle", c) for c in COLORS}, "no training example of circle"),
    ({(s, "red") for s in SHAPES}, "no training example of red"),
    ({("circle", "purple")}, "color one of"),
    ({("circle",)}, "pairs"),
    ("all", "pairs or 'none'"),
], ids=["all-circles", "all-red", "unknown-colour", "not-a-pair", "bad-string"])
def test_bad_holdouts(holdout, message):
    with pytest.raises(ValueError, match=message):
        ShapesDataset(10, holdout=holdout)


@pytest.mark.parametrize("kwargs,message", [
    ({"n": -1}, "n must be"), ({"n": 10, "split": "test"}, "split must be"),
    ({"n": 10, "resolution": 2}, "resolution"),
], ids=["negative-n", "bad-split", "tiny-resolution"])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShapesDataset(**kwargs)
