"""Factor views: each view hides what it claims to hide (permutations of colour channels, of
pixels), the heads that read it inherit that invariance for every head kind, the batched and
per-row paths agree, views survive checkpoints and export, user modules work, bad views are
refused with a message that names the problem."""

import itertools

import pytest
import torch
from torch import nn

import conceptalg
from conceptalg.models import BASE, ConceptModel, ModelConfig
from conceptalg.models.view_trunks import trunk_key
from conceptalg.models.views import build_view_trunk, view_name
from conceptalg.training import ConceptData, Trainer, default_train_config, export_model
from conceptalg.training.checkpoint import save_checkpoint

SHAPE = (3, 16, 16)
FACTORS = {"shape": ["circle", "square"], "color": ["red", "blue"], "size": ["small", "big"]}
VIEWS = {"shape": "colour-blind", "color": "shape-blind"}  # size reads the whole image
NAMES = [f"{f}={v}" for f, values in FACTORS.items() for v in values] + [BASE]
HEAD_KINDS = ["linear", "film", "classifier"]


class ChannelStats(nn.Module):
    """A user view: the mean and maximum of each channel, scaled (blind to arrangement)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(6))

    def forward(self, x):
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1) * self.scale  # [B, 6]


def _images(n=4, seed=1):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _channel_permutations(x):
    return [x[:, list(p)] for p in itertools.permutations(range(3))]


def _pixel_shuffles(x, k=3):
    g = torch.Generator().manual_seed(5)
    flat = x.flatten(2)
    return [flat[:, :, torch.randperm(flat.shape[2], generator=g)].reshape(x.shape)
            for _ in range(k)]


def _model(heads, views=VIEWS, view_modules=None, seed=0):
    """A tiny model whose FiLM layers are random (at initialisation they are the identity
    modulation, so every FiLM head would give the same energy and prove nothing)."""
    config = ModelConfig(sample_shape=SHAPE, factors=FACTORS, heads=heads, views=views,
                         backbone_options={"width": 4})
    torch.manual_seed(seed)
    model = ConceptModel(config, view_modules)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "film" in name:
                p.normal_(0, 0.5)
    return model.eval()


def _outputs(model, x, names=NAMES):
    with torch.no_grad():
        return model.concept_energies(x, names)


# --- (a) the view trunks hide what they claim -------------------------------------------
TRANSFORMS = {"channel permutations": _channel_permutations, "pixel shuffles": _pixel_shuffles}


@pytest.mark.parametrize("view,transform,invariant", [
    ("colour-blind", "channel permutations", True),
    ("colour-blind", "pixel shuffles", False),
    ("shape-blind", "pixel shuffles", True),
    ("shape-blind", "channel permutations", False),
    ("identity", "channel permutations", False),
    ("identity", "pixel shuffles", False),
], ids=lambda v: str(v))
def test_a_view_trunk_is_blind_to_exactly_what_it_claims(view, transform, invariant):
    torch.manual_seed(0)
    trunk = build_view_trunk(view, SHAPE, width=4).eval()
    x = _images()
    with torch.no_grad():
        h = trunk(x)
        changes = [(trunk(y) - h).abs().max().item() for y in TRANSFORMS[transform](x)]
    if invariant:
        assert max(changes) < 1e-5, changes
    else:
        assert max(changes) > 1e-4, changes


# --- (b) heads inherit their view's invariance; batched = per row -----------------------
@pytest.mark.parametrize("heads", HEAD_KINDS)
def test_heads_are_invariant_to_what_their_view_hides(heads):
    model = _model(heads)
    x = _images()
    e = _outputs(model, x)
    shape, color, rest = slice(0, 2), slice(2, 4), slice(4, None)  # rest: size heads, base
    for y in _channel_permutations(x):
        p = _outputs(model, y)
        torch.testing.assert_close(p[:, shape], e[:, shape], rtol=1e-5, atol=1e-5)
    assert max((_outputs(model, y)[:, color] - e[:, color]).abs().max()
               for y in _channel_permutations(x)) > 1e-4, "colour heads see colour"
    for y in _pixel_shuffles(x):
        p = _outputs(model, y)
        torch.testing.assert_close(p[:, color], e[:, color], rtol=1e-5, atol=1e-5)
        assert (p[:, shape] - e[:, shape]).abs().max() > 1e-4, "shape heads see arrangement"
        assert (p[:, rest] - e[:, rest]).abs().max() > 1e-4, "identity heads see everything"


@pytest.mark.parametrize("heads", HEAD_KINDS)
def test_batched_and_per_row_energies_agree(heads):
    model = _model(heads)
    x = _images(3)
    batched = _outputs(model, x)                                              # [B, K]
    with torch.no_grad():
        alone = torch.cat([model.concept_energies(x, [n]) for n in NAMES], dim=1)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    # one head per row, rows in a shuffled order: every trunk serves its rows
    k, b = len(NAMES), len(x)
    index = torch.arange(k).repeat_interleave(b)                             # [K·B]
    index[index == k - 1] = -1                                                # the base
    order = torch.randperm(k * b, generator=torch.Generator().manual_seed(0))
    xs = x.repeat(k, 1, 1, 1).requires_grad_(True)
    per_row = model.energies_for(xs[order], index[order])
    (grad,) = torch.autograd.grad(per_row.sum(), xs)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    unshuffled = torch.empty_like(per_row).scatter_(0, order, per_row).detach()
    expected = batched[:, -1:].expand(b, k) if heads == "classifier" else batched
    # classifier heads: CD trains only E_0, so every row gets the base energy
    torch.testing.assert_close(unshuffled.reshape(k, b).T, expected, rtol=1e-5, atol=1e-5)


def test_without_views_the_model_has_no_view_modules():
    config = ModelConfig(sample_shape=SHAPE, factors=FACTORS, backbone_options={"width": 4})
    keys = ConceptModel(config).state_dict()
    assert not any(k.startswith(("blind_trunk", "view_trunks", "necks", "view_film"))
                   for k in keys)
    # the colour-blind trunk keeps its name: checkpoints written before views still load
    keys = _model("linear", {"shape": "colour-blind"}).state_dict()
    assert any(k.startswith("blind_trunk.") for k in keys)
    assert not any(k.startswith(("view_trunks", "necks")) for k in keys)


def test_explain_names_the_view_of_each_leaf():
    model = _model("classifier")
    text = conceptalg.compose("circle & red & small", model).explain()
    lines = {name: line for line in text.splitlines()
             for name in ("shape=circle", "color=red", "size=small") if f"'{name}'" in line}
    assert "view: colour-blind" in lines["shape=circle"], text
    assert "view: shape-blind" in lines["color=red"], text
    assert "view:" not in lines["size=small"], text


# --- (c) checkpoints and export keep the views ------------------------------------------
@pytest.mark.parametrize("heads", HEAD_KINDS)
def test_views_round_trip_through_a_checkpoint(heads, tmp_path):
    model = _model(heads)
    save_checkpoint(tmp_path, 1, model=model)
    back = conceptalg.load(tmp_path)
    assert back.config.views == VIEWS and back.config == model.config
    x = _images(3)
    torch.testing.assert_close(_outputs(back, x), _outputs(model, x), rtol=0, atol=0)


def _run(tmp_path, heads, views, steps=2):
    """A short CD run on random 16×16 images, saved; returns (run dir, trainer)."""
    g = torch.Generator().manual_seed(0)
    labels = {f: [values[i % len(values)] for i in range(32)] for f, values in FACTORS.items()}
    data = ConceptData.from_labels(torch.rand(32, *SHAPE, generator=g), labels)
    config = default_train_config(data.sample_shape, steps=steps, batch_size=8, buffer_size=64,
                                  langevin_steps=2, seed=0)
    trainer = Trainer(data, config=config, heads=heads, views=views,
                      backbone_options={"width": 4, "blocks": (1,)})
    trainer.fit()
    trainer.save(tmp_path / "run")
    return tmp_path / "run", trainer


@pytest.mark.parametrize("heads", HEAD_KINDS)
def test_a_trained_model_with_views_exports_with_them(heads, tmp_path):
    run, trainer = _run(tmp_path, heads, VIEWS)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.history)
    export_model(run, tmp_path / "model", init_bank=0)
    model = conceptalg.load(tmp_path / "model")
    assert model.config.views == VIEWS
    x = _images(3)
    torch.testing.assert_close(_outputs(model, x), _outputs(trainer.model.eval(), x))


# --- (d) a user's module as a view -------------------------------------------------------
@pytest.mark.parametrize("heads", HEAD_KINDS)
def test_a_user_module_view_is_used_as_given_and_rebuilt_by_its_import_path(heads, tmp_path):
    stats = ChannelStats()
    views = {"shape": "colour-blind", "color": stats}
    run, trainer = _run(tmp_path, heads, views, steps=1)
    name = view_name(stats)
    assert name == "module:test_views.ChannelStats"
    assert trainer.model.config.views == {"shape": "colour-blind", "color": name}
    assert trainer.model.view_trunks[trunk_key(name)].module is stats  # that very instance
    model = trainer.model.eval()
    with torch.no_grad():
        stats.scale.copy_(torch.linspace(0.5, 2.0, 6))
    x = _images(3)
    e = _outputs(model, x)
    for y in _pixel_shuffles(x):  # the colour heads read channel statistics only
        torch.testing.assert_close(_outputs(model, y)[:, 2:4], e[:, 2:4], rtol=1e-5, atol=1e-5)
    save_checkpoint(tmp_path / "saved", 1, model=model)
    back = conceptalg.load(tmp_path / "saved")
    rebuilt = back.view_trunks[trunk_key(name)].module
    assert isinstance(rebuilt, ChannelStats) and rebuilt is not stats
    torch.testing.assert_close(rebuilt.scale, stats.scale)
    torch.testing.assert_close(_outputs(back, x), e, rtol=0, atol=0)
    bigger = model.with_concepts({"shape": ["star"]}).eval()
    assert bigger.view_trunks[trunk_key(name)].module is not stats
    with torch.no_grad():
        torch.testing.assert_close(bigger.concept_energies(x, ["color=red", BASE]),
                                   model.concept_energies(x, ["color=red", BASE]))


# --- (e) views that cannot be built are refused -------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(views={"shape": "blurry"}), "unknown view 'blurry'; the built-in views are"),
    (dict(views={"texture": "colour-blind"}), "views name 'texture', which is not a factor"),
    (dict(views={"shape": 3}), "a view is a name"),
    (dict(views={"shape": "shape-blind"}, backbone="mlp", sample_shape=(4,)),
     "views need the conv backbone"),
], ids=["unknown view", "unknown factor", "not a view", "mlp backbone"])
def test_bad_views_are_refused_by_the_config(kwargs, match):
    base = dict(sample_shape=SHAPE, factors=FACTORS)
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{**base, **kwargs})


def test_a_user_view_must_match_the_config_and_be_importable():
    config = ModelConfig(sample_shape=SHAPE, factors=FACTORS, views=VIEWS)
    with pytest.raises(ValueError, match=r"view_modules\['shape'\] is 'module:test_views"):
        ConceptModel(config, {"shape": ChannelStats()})
    config = ModelConfig(sample_shape=SHAPE, factors=FACTORS,
                         views={"color": "module:no_such_package.View"})
    with pytest.raises(ValueError, match="cannot rebuild the view 'no_such_package.View'"):
        ConceptModel(config)
    with pytest.raises(ValueError, match="different instances"):
        ConceptModel(ModelConfig(sample_shape=SHAPE, factors=FACTORS,
                                 views={"color": view_name(ChannelStats()),
                                        "size": view_name(ChannelStats())}),
                     {"color": ChannelStats(), "size": ChannelStats()})
    data = ConceptData.from_labels(_images(8), {"shape": ["circle", "square"] * 4})
    with pytest.raises(ValueError, match="unknown view 'blurry'"):
        Trainer(data, views={"shape": "blurry"})
