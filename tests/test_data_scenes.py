"""The ``scenes`` data: counts, non-overlap, centres, the image as the sum of its objects."""

import pytest
import torch
import torch.nn.functional as F

from conceptalg.data.scenes import SCENE_GAP, SCENE_SIZE, ScenesDataset, objects_near
from conceptalg.data.shapes import COLORS, RADII, SHAPES, render

RHO = RADII[SCENE_SIZE]




@pytest.fixture(scope="module")
def scenes():
    return ScenesDataset(1500, seed=11)


def test_layout(scenes):
    n = len(scenes)
    assert scenes.images.shape == (n, 3, 32, 32) and scenes.images.dtype == torch.float32
    assert scenes.images.min() >= 0 and scenes.images.max() <= 1
    assert scenes.centres.shape == (n, 4, 2) and scenes.mask.shape == (n, 4)
    assert set(scenes.counts.tolist()) == {1, 2, 3, 4}
    assert (scenes.counts.bincount()[1:] > n / 4 * 0.8).all(), "counts are uniform on 1..4"
    assert torch.equal(scenes.mask.sum(1), scenes.counts)
    assert torch.equal(scenes.mask, torch.arange(4) < scenes.counts[:, None])
    image, centres, mask = scenes[3]
    assert torch.equal(centres, scenes.centres[3]) and torch.equal(mask, scenes.mask[3])


def test_padding_and_codes(scenes):
    m = scenes.mask
    assert (scenes.shapes[~m] == -1).all() and (scenes.colors[~m] == -1).all()
    assert (scenes.centres[~m] == 0).all()
    assert set(scenes.shapes[m].tolist()) == set(range(len(SHAPES)))
    assert set(scenes.colors[m].tolist()) == set(range(len(COLORS)))


def test_centres_in_unit_square_and_objects_inside(scenes):
    c = scenes.centres[scenes.mask]
    assert ((c >= RHO) & (c <= 1 - RHO)).all()


def test_objects_do_not_overlap(scenes):
    c, m = scenes.centres, scenes.mask
    dist = torch.cdist(c, c)                                                   # [N, 4, 4]
    pair = m[:, :, None] & m[:, None, :] & ~torch.eye(4, dtype=torch.bool)
    assert (dist[pair] >= 2 * RHO + SCENE_GAP - 1e-6).all()


def test_image_is_its_objects_and_they_never_touch(scenes):
    for i in range(60):
        layers = [render(SHAPES[int(scenes.shapes[i, j])], COLORS[int(scenes.colors[i, j])],
                         SCENE_SIZE, *scenes.centres[i, j].tolist())
                  for j in range(int(scenes.counts[i]))]
        stack = torch.stack(layers)                                            # [k, 3, R, R]
        torch.testing.assert_close(scenes.images[i], stack.amax(0), atol=1e-6, rtol=0)
        support = (stack.amax(1) > 0).float()                                  # [k, R, R]
        near = F.max_pool2d(support[:, None], 3, stride=1, padding=1)[:, 0]    # 8-neighbourhood
        others = support.sum(0, keepdim=True) - support
        assert (near * others).sum() == 0, f"scene {i}: two objects touch"


def test_deterministic_from_seed():
    a, b, c = ScenesDataset(200, seed=4), ScenesDataset(200, seed=4), ScenesDataset(200, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.centres, b.centres)
    assert torch.equal(a.shapes, b.shapes) and torch.equal(a.colors, b.colors)
    assert not torch.equal(a.images, c.images)


def test_fixed_counts():
    data = ScenesDataset(300, seed=1, min_objects=4)
    assert (data.counts == 4).all()


def test_impossible_packing_raises_after_bounded_tries():
    with pytest.raises(RuntimeError, match="could not place"):
        ScenesDataset(5, seed=0, min_objects=9, max_objects=9, tries=8, restarts=3)


@pytest.mark.parametrize("kwargs", [{"min_objects": 0}, {"min_objects": 3, "max_objects": 2},
                                    {"gap": -0.1}, {"n": -2}], ids=str)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ScenesDataset(**{"n": 3, **kwargs})


def test_objects_near():
    centres = torch.tensor([[[0.3, 0.7], [0.8, 0.2]], [[0.5, 0.5], [0.0, 0.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    assert objects_near(centres, mask, torch.tensor([0.35, 0.75])).tolist() == [True, False]
    # the padded slot at (0, 0) never counts
    assert objects_near(centres, mask, torch.tensor([0.0, 0.0])).tolist() == [False, False]
    per_scene = objects_near(centres, mask, torch.tensor([[0.8, 0.29], [0.5, 0.61]]))
    assert per_scene.tolist() == [True, False]
    queries = torch.tensor([[[0.3, 0.7], [0.8, 0.2]], [[0.5, 0.5], [0.9, 0.9]]])
    assert objects_near(centres, mask, queries).tolist() == [[True, True], [True, False]]
