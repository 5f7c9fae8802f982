"""Streamed procedural data and the dsm recipe's options (the extrapolation issue).

Streams: a batch is a function of (data seed, step, rank) alone — reproducible, different
across steps, seeds and ranks; a resumed run draws exactly the batches of a straight one; and
no training batch of ``shapes`` ever holds a held-out (shape, colour) pair, read back from the
pixels by the exact decoder, the batches the base trains on included. Recipe options: their
defaults, their error rows, what they build (the network's layout, the normalisation, the
EMA's decay, complete conditioning's per-factor drop rates within Monte-Carlo error) and a
checkpoint round trip.
"""

from __future__ import annotations

import math

import pytest
import torch

from conceptalg.data.shapes import DEFAULT_HOLDOUT, FACTORS
from conceptalg.evaluation.decoder import decode_shapes
from conceptalg.models.diffusion import NoiseConditionedUNet
from conceptalg.training import DSMConfig, DSMTrainer
from conceptalg.training.data import PROCEDURAL_DATA, batch_seed, builtin_data
from conceptalg.training.dsm import ema_decay, noise_statistics

SHAPE, COLOUR = FACTORS["shape"], FACTORS["color"]


@pytest.mark.parametrize("name", PROCEDURAL_DATA)
def test_a_streamed_batch_is_a_function_of_seed_step_and_rank(name):
    data = builtin_data(name, n=None, seed=3)
    a = data.batch(16, step=5)
    assert len(a) == 16 and a.sample_shape == data.sample_shape
    assert torch.equal(a.x, builtin_data(name, n=None, seed=3).batch(16, step=5).x)
    for other in (data.batch(16, step=6), data.batch(16, step=5, rank=1),
                  builtin_data(name, n=None, seed=4).batch(16, step=5)):
        assert not torch.equal(a.x, other.x)
    assert data.spec["stream"] is True
    assert builtin_data(name, n=64).stream is None


def test_batch_seeds_do_not_collide_over_many_steps_and_ranks():
    seeds = {batch_seed(0, step, rank) for step in range(2000) for rank in range(4)}
    assert len(seeds) == 8000


def test_procedural_data_streams_by_default_and_a_fixed_set_refuses_batch():
    assert builtin_data("shapes").stream is not None
    assert builtin_data("digits").stream is None          # a fixed dataset: it cannot stream
    with pytest.raises(ValueError, match="not a stream"):
        builtin_data("shapes", n=8).batch(4, step=0)


def _held_out(labels: dict) -> torch.Tensor:
    held = torch.zeros(len(labels["shape"]), dtype=torch.bool)
    for s, c in DEFAULT_HOLDOUT:
        held |= (labels["shape"] == SHAPE.index(s)) & (labels["color"] == COLOUR.index(c))
    return held


def test_no_training_batch_holds_a_held_out_pair():
    # what the trainer actually feeds the network, the base's samples included, read back from
    # the pixels: 40 batches of 64 (2 560 images)
    data = builtin_data("shapes", n=None)
    trainer = DSMTrainer(data, config=DSMConfig(steps=40, seed=1), parameterization="score",
                         backbone_options={"channels": (8,)})
    images, base = [], 0
    for step in range(40):
        trainer.step = step
        x, head, *_ = trainer._batch()
        images.append(x)
        base += int((head < 0).sum())
    x = torch.cat(images)
    decoded = decode_shapes(x)
    assert bool(decoded.valid.all())           # clean renders: every label is read exactly
    assert not bool(_held_out(decoded.labels).any())
    # the base trained on some of them, and every training pair appeared
    assert 0.1 * len(x) < base < 0.3 * len(x)
    seen = {(int(s), int(c)) for s, c in zip(decoded.labels["shape"], decoded.labels["color"])}
    assert len(seen) == 12


def test_channel_permutations_are_refused_under_a_holdout():
    with pytest.raises(ValueError, match="would show the base held-out pairs"):
        DSMTrainer(builtin_data("shapes", n=None), config=DSMConfig(augment="channel-permutations"),
                   parameterization="score", backbone_options={"channels": (8,)})
    # without a holdout the symmetry is the data's own and stays available
    DSMTrainer(builtin_data("shapes", n=64, holdout=None),
               config=DSMConfig(augment="channel-permutations"), parameterization="score",
               backbone_options={"channels": (8,)})


def _streamed_trainer(**config):
    data = builtin_data("toy2d", n=None)
    return DSMTrainer(data, config=DSMConfig(steps=12, batch_size=32, log_every=4, seed=2,
                                             **config),
                      parameterization="score", backbone_options={"hidden": (16, 16)})


def test_resume_on_streamed_data_draws_the_batches_of_a_straight_run(tmp_path):
    straight = _streamed_trainer()
    straight.fit()
    first = _streamed_trainer()
    first.fit(8)                              # at a log boundary: the logged means agree too
    first.save(tmp_path / "run")
    resumed = DSMTrainer.resume(tmp_path / "run", builtin_data("toy2d", n=None))
    resumed.fit()
    for key, value in straight.online.state_dict().items():
        assert torch.equal(resumed.online.state_dict()[key], value), key
    assert [m["loss"] for m in resumed.history] == [m["loss"] for m in straight.history]


# --------------------------------------------------------------------------- recipe options

def test_recipe_defaults():
    cfg = DSMConfig()
    assert (cfg.normalisation, cfg.ema_schedule, cfg.conditioning, cfg.drop_rate) == \
        ("measured", "rampup", "one", 0.2)


RECIPE_ERRORS = [
    ("normalisation", dict(normalisation="minmax"), r"normalisation must be one of"),
    ("ema-schedule", dict(ema_schedule="cosine"), r"ema_schedule must be one of"),
    ("conditioning", dict(conditioning="all"), r"conditioning must be one of"),
    ("drop-rate", dict(drop_rate=1.0), r"drop_rate must be in \[0, 1\)"),
]


@pytest.mark.parametrize("changes, message", [c[1:] for c in RECIPE_ERRORS],
                         ids=[c[0] for c in RECIPE_ERRORS])
def test_recipe_options_reject(changes, message):
    with pytest.raises(ValueError, match=message):
        DSMConfig(**changes)


def test_bounds_normalisation_is_edms_minus_one_to_one_scaling():
    x = torch.rand(8, 3, 4, 4) * 0.3
    stats = noise_statistics(x, DSMConfig(normalisation="bounds"), (0.0, 1.0))
    assert (stats["mean"], stats["sigma_data"]) == (0.5, 0.25)
    assert stats["sigma_min"] == pytest.approx(0.001) and stats["sigma_max"] == pytest.approx(40)
    with pytest.raises(ValueError, match="needs data with bounds"):
        noise_statistics(x, DSMConfig(normalisation="bounds"), None)


@pytest.mark.parametrize("step, schedule, expected", [
    (1, "warmup", 2 / 11), (90, "warmup", 91 / 100), (10 ** 6, "warmup", 0.999),
    (1000, "rampup", 0.5 ** (1 / 50)), (10 ** 6, "rampup", 0.999)])
def test_ema_schedules(step, schedule, expected):
    assert ema_decay(step, 0.999, 0.05, schedule) == pytest.approx(expected)


@pytest.mark.parametrize("decoder", ["full", "light"])
@pytest.mark.parametrize("zero_init", [True, False])
def test_unet_layouts_and_initialisation(decoder, zero_init):
    net = NoiseConditionedUNet(3, (8, 16, 32), emb=16, decoder=decoder, zero_init=zero_init)
    assert net(torch.randn(2, 3, 16, 16), torch.randn(2, 16)).shape == (2, 3, 16, 16)
    blocks = [net.mid, *net.down, *net.up]
    assert all(bool((b.conv2.weight == 0).all()) == zero_init for b in blocks)
    assert bool((net.out.weight == 0).all())          # the output starts at zero either way
    # the light decoder has one block fewer on the way up and narrows before upsampling
    assert len(net.up) == (2 if decoder == "light" else 3)
    with pytest.raises(ValueError, match="decoder must be one of"):
        NoiseConditionedUNet(3, (8,), emb=16, decoder="wide")


def test_complete_conditioning_drops_each_factor_at_its_rate():
    data = builtin_data("shapes", n=None)
    trainer = DSMTrainer(data, config=DSMConfig(conditioning="complete", drop_rate=0.3,
                                                base_fraction=0.1),
                         parameterization="score", backbone_options={"channels": (8,)})
    batch = data.batch(4000, step=0)
    g = torch.Generator().manual_seed(0)
    rows = trainer._complete(batch, torch.arange(4000), g)                # [N, 3]
    n = rows.numel()
    kept = float((rows >= 0).float().mean())
    p = 0.9 * 0.7
    assert abs(kept - p) < 4 * math.sqrt(p * (1 - p) / n)
    empty = float((rows < 0).all(1).float().mean())
    q = 0.1 + 0.9 * 0.3 ** 3
    assert abs(empty - q) < 4 * math.sqrt(q * (1 - q) / 4000)
    # a kept entry is the sample's own value of that factor
    index = trainer.online.index
    for j, f in enumerate(data.factors):
        own = torch.tensor([index[f"{f}={data.factors[f][v]}"] for v in batch.labels[f]])
        assert bool(((rows[:, j] == own) | (rows[:, j] < 0)).all())


def test_complete_conditioning_trains_and_round_trips(tmp_path):
    import conceptalg

    data = builtin_data("shapes", n=None)
    trainer = DSMTrainer(data, config=DSMConfig(steps=2, conditioning="complete"),
                         parameterization="score", backbone_options={"channels": (8,)})
    trainer.fit()
    trainer.save(tmp_path / "run")
    model = conceptalg.load(tmp_path / "run")
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    with pytest.raises(ValueError, match="conditioning='complete' conditions a film model"):
        DSMTrainer(builtin_data("scenes", n=None), config=DSMConfig(conditioning="complete"),
                   parameterization="score", backbone_options={"channels": (8,)})


def test_coind_penalty_is_zero_for_an_additive_denoiser_and_trains():
    # an oracle: a denoiser whose condition enters additively (D = D_0 + Σ δ_c) satisfies
    # D(c_i) + D(c_j) − D(∅) − D(c_i, c_j) = 0; the network starts condition-blind (its output
    # layer is zero), so the penalty is 0 at the first step and positive once it is not
    data = builtin_data("shapes")
    trainer = DSMTrainer(data, config=DSMConfig(steps=3, conditioning="complete",
                                                independence_weight=1.0, independence_batch=4,
                                                log_every=1),
                         parameterization="score", backbone_options={"channels": (8,)})
    x = torch.rand(4, 3, 32, 32)
    full = torch.tensor([[0, 3, 9], [1, 4, 10], [2, 5, 9], [0, 6, 10]])
    sigma, noise = torch.full((4,), 0.5), torch.randn(4, 3, 32, 32)
    delta = torch.randn(12, 3, 32, 32)

    def additive(noisy, rows, args, s, create_graph=False):
        used = rows.clamp(min=0)
        out = noisy.clone()
        for k in range(rows.shape[1]):
            keep = ((rows[:, k] >= 0) & (rows[:, k] < 11)).float()[:, None, None, None]
            out = out + keep * delta[used[:, k].clamp(max=10)]
        return out

    real = trainer.online.denoise_for
    trainer.online.denoise_for = additive
    g = torch.Generator().manual_seed(0)
    assert float(trainer.independence_loss(x, full, sigma, noise, g)) == pytest.approx(0, abs=1e-9)
    trainer.online.denoise_for = real
    history = trainer.fit()
    assert all(math.isfinite(m["independence"]) for m in history)
    assert history[0]["independence"] == 0 and history[-1]["independence"] > 0
    with pytest.raises(ValueError, match="needs conditioning='complete'"):
        DSMConfig(independence_weight=1.0)
