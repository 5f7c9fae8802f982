"""The analytic decoder: exact on rendered ``shapes`` and ``scenes`` data, rejects non-objects."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conceptalg.data.scenes import ScenesDataset
from conceptalg.data.shapes import COLORS, FACTORS, RADII, SHAPES, SIZES, ShapesDataset, render
from conceptalg.evaluation.decoder import (REASONS, DecoderConfig, decode_scenes,
                                           decode_shapes)




# --------------------------------------------------------------------------- exact on data


def test_exact_on_rendered_shapes():
    data = ShapesDataset(3000, seed=21, split="all")
    out = decode_shapes(data.images)
    assert out.valid.all(), {r: out.reasons().count(r) for r in REASONS}
    for factor in FACTORS:
        assert torch.equal(out.labels[factor], data.labels[factor]), factor
    assert (out.centres - data.centres).abs().max() < 0.02
    assert (out.centres - data.centres).abs().max() < 0.01 / 32, "sub-pixel in practice"
    assert out.error.max() < 0.01


@pytest.mark.parametrize("resolution", [24, 48])
def test_exact_at_other_resolutions(resolution):
    data = ShapesDataset(300, seed=2, split="all", resolution=resolution)
    out = decode_shapes(data.images)
    assert out.valid.all()
    assert all(torch.equal(out.labels[f], data.labels[f]) for f in FACTORS)
    assert (out.centres - data.centres).abs().max() < 0.02


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(SHAPES), st.sampled_from(COLORS), st.sampled_from(SIZES),
       st.sampled_from([0.0, 1.0]) | st.floats(0, 1), st.sampled_from([0.0, 1.0]) | st.floats(0, 1))
def test_exact_anywhere_including_the_borders(shape, color, size, u, v):
    rho = RADII[size]
    cx, cy = rho + (1 - 2 * rho) * u, rho + (1 - 2 * rho) * v
    out = decode_shapes(render(shape, color, size, cx, cy)[None])
    assert out.valid.item()
    assert [out.labels[f].item() for f in FACTORS] == [SHAPES.index(shape), COLORS.index(color),
                                                       SIZES.index(size)]
    assert (out.centres[0] - torch.tensor([cx, cy])).abs().max() < 0.02


def test_exact_on_rendered_scenes():
    data = ScenesDataset(1000, seed=22)
    out = decode_scenes(data.images)
    assert out.valid.all() and torch.equal(out.counts, data.counts)
    assert torch.equal(out.mask, data.mask), "slots are filled first"
    for i in range(len(data)):
        k = int(data.counts[i])
        dist = torch.cdist(data.centres[i, :k], out.centres[i, :k])            # true x decoded
        match = dist.argmin(1)
        assert sorted(match.tolist()) == list(range(k))
        assert (dist.min(1).values < 0.02).all()
        assert torch.equal(out.shapes[i, match], data.shapes[i, :k])
        assert torch.equal(out.colors[i, match], data.colors[i, :k])
    assert (out.sizes[out.mask] == SIZES.index("small")).all()
    assert out.clean[out.mask].all()


def test_mild_noise_is_tolerated():
    data = ShapesDataset(300, seed=3, split="all")
    noise = torch.randn(data.images.shape, generator=torch.Generator().manual_seed(0))
    noisy = (data.images + 0.02 * noise).clamp(0, 1)
    out = decode_shapes(noisy)
    assert out.valid.all()
    assert all(torch.equal(out.labels[f], data.labels[f]) for f in FACTORS)


# --------------------------------------------------------------------------- rejections


def _noise(seed, scale=1.0):
    return scale * torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(seed))


NOT_ONE_OBJECT = {
    "blank": (torch.zeros(3, 32, 32), "blank"),
    "uniform noise": (_noise(0), None),
    "gaussian noise on a circle": ((render("circle", "red", "large", .5, .5) + torch.randn(
        3, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.3).clamp(0, 1), None),
    "two apart": (torch.maximum(render("circle", "red", "small", .2, .2),
                                render("square", "red", "small", .75, .7)), "object count"),
    "two overlapping, two colours": (torch.maximum(render("circle", "red", "large", .35, .5),
                                                   render("square", "blue", "large", .65, .5)),
                                     None),
    "two overlapping, one colour": (torch.maximum(render("circle", "green", "large", .35, .5),
                                                  render("triangle", "green", "large", .6, .5)),
                                    "fit"),
    "colour blend, same place": (0.5 * render("square", "red", "large", .5, .5)
                                 + 0.5 * render("square", "blue", "large", .5, .5), None),
    "colour blend, two places": (0.5 * render("circle", "yellow", "large", .4, .4)
                                 + 0.5 * render("circle", "cyan", "large", .6, .6), None),
    "half bright": (0.5 * render("triangle", "cyan", "large", .5, .5), None),
    "white": (render("circle", "red", "large", .5, .5)[:1].expand(3, 32, 32), "colour"),
    "two-tone square": (torch.where(torch.arange(32)[None, :, None] < 16,
                                    render("square", "red", "large", .5, .5),
                                    render("square", "yellow", "large", .5, .5)), None),
    "stretched (not a shape)": (render("square", "blue", "large", .5, .5).repeat_interleave(2, 2)
                                [:, :, 16:48], None),
    "background haze": (torch.maximum(render("circle", "red", "small", .3, .3),
                                      0.25 * (torch.arange(32)[:, None] >= 16).float()),
                        "background"),
}


@pytest.mark.parametrize("case", NOT_ONE_OBJECT)
def test_rejects_what_is_not_one_clean_object(case):
    image, reason = NOT_ONE_OBJECT[case]
    out = decode_shapes(image[None])
    assert not out.valid.item(), f"accepted {case}: labels {out.labels}, error {out.error}"
    assert out.status.item() != 0
    if reason is not None:
        assert out.reasons() == [reason]
    assert not out.holds("red").item()


def test_a_shapes_image_with_several_objects_is_rejected():
    data = ScenesDataset(200, seed=5, min_objects=2)
    assert not decode_shapes(data.images).valid.any()


def test_scenes_rejections():
    many = ScenesDataset(20, seed=6, min_objects=5, max_objects=5)
    assert decode_scenes(many.images, max_objects=5).valid.all()
    out = decode_scenes(many.images)
    assert not out.valid.any() and (out.counts == 5).all()
    assert set(out.reasons()) == {"object count"}
    large = ShapesDataset(20, seed=1, split="all").images
    out = decode_scenes(large)
    is_large = decode_shapes(large).labels["size"] == SIZES.index("large")
    assert not out.valid[is_large].any() and out.valid[~is_large].all()
    assert decode_scenes(torch.zeros(2, 3, 32, 32)).reasons() == ["blank", "blank"]
    assert not decode_scenes(torch.rand(4, 3, 32, 32,
                                        generator=torch.Generator().manual_seed(0))).valid.any()


# --------------------------------------------------------------------------- helpers


def test_holds_and_near():
    images = torch.stack([render("circle", "red", "large", .5, .5),
                          render("square", "blue", "small", .3, .6), torch.zeros(3, 32, 32)])
    out = decode_shapes(images)
    assert out.holds("red").tolist() == [True, False, False]
    assert out.holds("color=blue").tolist() == [False, True, False]
    assert out.holds("small").tolist() == [False, True, False]
    assert out.holds("shape=circle").tolist() == [True, False, False]
    assert out.labels["shape"][2] == -1 and torch.isnan(out.centres[2]).all()
    with pytest.raises(ValueError, match="not a shapes concept"):
        out.holds("purple")

    scenes = ScenesDataset(50, seed=8)
    dec = decode_scenes(scenes.images)
    first = scenes.centres[:, 0]                                               # [N, 2]
    assert dec.near(first).all()
    assert dec.near(first + 0.05).all() and not dec.near(torch.tensor([2.0, 2.0])).any()
    queries = torch.stack([first, torch.full_like(first, 5.0)], 1)           # [N, 2, 2]
    assert dec.near(queries).tolist() == [[True, False]] * 50


def test_config_and_shape_checks():
    image = render("circle", "red", "large", .5, .5)[None]
    assert not decode_shapes(image * 0.85, DecoderConfig(fit_tolerance=0.05)).valid.item()
    assert decode_shapes(image * 0.95).valid.item()
    with pytest.raises(ValueError, match=r"\[N, 3, R, R\]"):
        decode_shapes(torch.zeros(2, 1, 32, 32))
    assert decode_shapes(torch.zeros(0, 3, 32, 32)).valid.shape == (0,)
