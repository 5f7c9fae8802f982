"""`conceptalg.infer` and `conceptalg infer`: concept inference from a model's own heads.

Oracles: energies we set by hand (softmax of minus the energies at temperature 1), a model's
own energies, and exact Gaussian denoisers, for which the diffusion classifier's variational
bound is Bayes' rule. Statistical checks: small trained models read real renders (and
held-out 2-D points) far above chance, margins in binomial standard errors.
"""

import csv
import math

import matplotlib.image
import numpy as np
import pytest
import torch

import conceptalg
from conceptalg.cli import main
from conceptalg.inference import (diffusion_levels, infer, inference_method,
                                  log_sigma_weights)
from conceptalg.models import ConceptModel, DiffusionModel, ModelConfig, build_model

FACTORS = {"side": ["left", "right"], "tone": ["dark", "mid", "light"]}


def _config(**kwargs) -> ModelConfig:
    options = dict(sample_shape=(2,), factors=FACTORS, backbone="mlp", bounds=None,
                   backbone_options={"hidden": (16, 16)})
    if kwargs.get("objective") == "dsm":
        options["noise"] = {"sigma_data": 1.0, "sigma_min": 0.05, "sigma_max": 10.0}
    return ModelConfig(**{**options, **kwargs})


def _model(kind: str, seed: int = 0) -> torch.nn.Module:
    """A small untrained model of each kind, its output layers randomised so that the
    concepts differ (DSM networks start with a zero output layer: every value would tie)."""
    torch.manual_seed(seed)
    if kind in ("linear", "film", "classifier"):
        return ConceptModel(_config(heads=kind))
    model = build_model(_config(objective="dsm", heads="classifier" if kind == "guided"
                                   else "film", parameterization="score" if kind == "score"
                                   else "energy"))
    torch.nn.init.normal_(model.net.out.weight, std=0.5)
    return model


def _points(n: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


# --- every kind of model --------------------------------------------------------------------

KINDS = [("linear", "energy"), ("film", "energy"), ("classifier", "classifier"),
         ("energy", "energy"), ("score", "diffusion classifier"), ("guided", "classifier")]


@pytest.mark.parametrize("kind, method", KINDS, ids=[k for k, _ in KINDS])
def test_probabilities_are_normalised_and_the_labels_are_their_argmax(kind, method):
    model = _model(kind)
    assert inference_method(model) == method
    labels, probs = infer(model, _points(), return_probs=True, samples=2)
    assert list(labels) == list(probs) == list(FACTORS)
    for f, values in FACTORS.items():
        assert probs[f].shape == (7, len(values)) and probs[f].dtype == torch.float32
        torch.testing.assert_close(probs[f].sum(1), torch.ones(7))
        assert labels[f] == [values[i] for i in probs[f].argmax(1).tolist()]
    assert infer(model, _points(), samples=2) == labels  # return_probs=False: the labels alone


@pytest.mark.parametrize("kind", [k for k, _ in KINDS])
def test_the_batch_size_does_not_change_the_answer(kind):
    model = _model(kind)
    _, whole = infer(model, _points(), return_probs=True, samples=2, batch_size=256)
    _, single = infer(model, _points(), return_probs=True, samples=2, batch_size=1)
    for f in FACTORS:
        torch.testing.assert_close(single[f], whole[f], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factors, expected", [
    ("tone", ["tone"]), (["tone"], ["tone"]), (["tone", "side"], ["tone", "side"]),
    (["side", "side"], ["side"]), (None, ["side", "tone"]),
], ids=["a string", "a list", "an order", "a repeat", "all"])
def test_factors_choose_and_order_the_answer(factors, expected):
    model = _model("linear")
    labels, probs = infer(model, _points(), factors, return_probs=True)
    assert list(labels) == list(probs) == expected
    _, every = infer(model, _points(), return_probs=True)
    for f in expected:
        torch.testing.assert_close(probs[f], every[f])


def test_no_images_give_empty_answers():
    labels, probs = infer(_model("linear"), torch.zeros(0, 2), return_probs=True)
    assert labels == {"side": [], "tone": []}
    assert probs["tone"].shape == (0, 3)


def test_a_path_is_loaded(tmp_path):
    from conceptalg.training.checkpoint import save_checkpoint

    model = _model("classifier")
    save_checkpoint(tmp_path, 1, model=model)
    assert infer(str(tmp_path), _points()) == infer(model, _points())
    assert conceptalg.infer is infer and "infer" in conceptalg.__all__


def test_the_model_keeps_its_training_mode_and_moves_to_the_device(device):
    model = _model("linear").train()
    expected = infer(model, _points())
    assert infer(model, _points(), device=device) == expected
    assert model.training and next(model.parameters()).device.type == device.type


# --- the energy path: oracles -----------------------------------------------------------------

def test_energy_heads_give_the_softmax_of_minus_the_energies_at_temperature_one(monkeypatch):
    model = ConceptModel(_config(heads="linear", temperature=0.5))
    weights = torch.randn(2, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    column = {name: k for k, name in enumerate(model.head_names)}

    def energies(x, heads):  # E[b, k] = x[b] · w_k, a table we know
        return (x.double() @ weights[:, [column[h] for h in heads]]).float()

    monkeypatch.setattr(model, "concept_energies", energies)
    x = _points(9)
    labels, probs = infer(model, x, return_probs=True)
    e = x.double() @ weights / 0.5                                        # [9, 5] at T = 1
    for f, columns in (("side", slice(0, 2)), ("tone", slice(2, 5))):
        expected = torch.softmax(-e[:, columns], dim=1).float()
        torch.testing.assert_close(probs[f], expected, rtol=1e-5, atol=1e-6)
        assert labels[f] == [FACTORS[f][i] for i in expected.argmax(1).tolist()]


@pytest.mark.parametrize("sigma", [None, 0.3], ids=["smallest level", "sigma 0.3"])
def test_diffusion_energies_are_read_at_one_noise_level(sigma):
    model = _model("energy").eval()
    x = _points()
    _, probs = infer(model, x, ["tone"], return_probs=True, sigma=sigma)
    heads = [f"tone={v}" for v in FACTORS["tone"]]
    with torch.no_grad():
        e = model.concept_energies(x, heads, sigma=model.sigma_min if sigma is None else sigma)
    torch.testing.assert_close(probs["tone"], torch.softmax(-e.double(), 1).float(),
                               rtol=1e-5, atol=1e-6)


def test_classifier_heads_give_their_own_probabilities():
    model = _model("classifier").eval()
    x = _points()
    _, probs = infer(model, x, return_probs=True)
    with torch.no_grad():
        logits = model.classifier_logits(x)
    for f in FACTORS:
        torch.testing.assert_close(probs[f], torch.softmax(logits[f], 1))


def test_a_model_of_its_own_with_factor_log_probs_is_read_through_it():
    class Fixed(torch.nn.Module):
        config = _config(heads="classifier")

        def factor_log_probs(self, x, factors, sigma=None):
            self.sigma = sigma
            table = {"side": [0.2, 0.8], "tone": [0.5, 0.3, 0.2]}
            return {f: torch.tensor(table[f]).log().expand(len(x), -1) for f in factors}

    model = Fixed()
    labels, probs = infer(model, _points(3), return_probs=True, sigma=0.7)
    assert labels == {"side": ["right"] * 3, "tone": ["dark"] * 3} and model.sigma == 0.7
    torch.testing.assert_close(probs["tone"][0], torch.tensor([0.5, 0.3, 0.2]))


# --- the diffusion classifier ---------------------------------------------------------------

class GaussianDenoisers(DiffusionModel):
    """Exact denoisers of ``N(μ_v, s² I)``: ``D_v(y; σ) = μ_v + s²/(s² + σ²) (y − μ_v)``."""

    def __init__(self, means: torch.Tensor, s: float) -> None:
        super().__init__(ModelConfig(
            sample_shape=(2,), factors={"corner": ["a", "b", "c"]}, heads="film",
            objective="dsm", parameterization="score", backbone="mlp", bounds=None,
            backbone_options={"hidden": (4,)},
            noise={"sigma_data": 1.0, "sigma_min": 1e-4, "sigma_max": 1e4}))
        self.means, self.s = means, s

    def denoise_for(self, x, rows, args, sigma):
        mu = self.means[rows]                                             # [B, 2]
        return mu + (self.s ** 2 / (self.s ** 2 + sigma ** 2))[:, None] * (x - mu)


def test_with_exact_denoisers_the_diffusion_classifier_is_bayes_rule():
    # ∫ E‖D_v − x‖²/σ² d ln σ differs between values by ‖x − μ_v‖²/(2s²): the bound's weight
    # (not half of it, not the training weight) is what makes the softmax the posterior.
    means = torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5]])
    model = GaussianDenoisers(means, 1.0)
    x = _points(20, seed=3) + 0.5
    levels = [math.exp(math.log(1e-3) + (k + 0.5) * math.log(1e6) / 48) for k in range(48)]
    _, probs = infer(model, x, return_probs=True, sigma=levels, samples=256)
    posterior = torch.softmax(-(x[:, None] - means[None]).square().sum(-1) / 2, dim=1)
    assert float((probs["corner"] - posterior).abs().max()) < 0.03  # measured 0.011


def test_the_diffusion_classifier_is_seeded():
    model = _model("score")
    _, a = infer(model, _points(), return_probs=True, samples=2, seed=5)
    _, b = infer(model, _points(), return_probs=True, samples=2, seed=5)
    _, c = infer(model, _points(), return_probs=True, samples=2, seed=6)
    torch.testing.assert_close(a["tone"], b["tone"], rtol=0, atol=0)
    assert not torch.allclose(a["tone"], c["tone"])


def test_default_levels_and_their_weights():
    levels = diffusion_levels(2.0, sigma_min=0.2, sigma_max=10.0)
    assert len(levels) == 8 and 0.2 < min(levels) < max(levels) < 2.0
    logs = np.log(levels)
    assert np.allclose(np.diff(logs), np.diff(logs)[0])                  # log-spaced
    weights = log_sigma_weights(levels)
    assert np.allclose(weights, math.log(2.0 / 0.2) / 8)                 # the midpoint rule
    assert log_sigma_weights([3.0]) == [1.0]
    assert log_sigma_weights([1.0, 0.01, 0.1]) == pytest.approx([math.log(10)] * 3)


def _blobs(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    side = torch.randint(2, (n,), generator=g)
    centre = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])[side]
    return centre + 0.5 * torch.randn(n, 2, generator=g), side


def test_a_trained_score_model_classifies_new_points_like_bayes_rule():
    # Two Gaussians, σ = 0.5, centres 2 apart: Bayes' rule is right with probability Φ(2).
    from conceptalg.training import ConceptData, DSMTrainer, default_dsm_config

    x, side = _blobs(1000, seed=0)
    data = ConceptData.from_labels(x, {"side": [["left", "right"][s] for s in side.tolist()]})
    trainer = DSMTrainer(data, config=default_dsm_config((2,), steps=200),
                         parameterization="score", backbone_options={"hidden": (64, 64)})
    trainer.fit()  # ~3 s
    model = trainer.model
    assert inference_method(model) == "diffusion classifier"
    test, truth = _blobs(400, seed=1)
    labels = infer(model, test)["side"]
    accuracy = np.mean([label == ["left", "right"][s] for label, s in zip(labels,
                                                                          truth.tolist())])
    bayes = 0.5 * (1 + math.erf(2 / math.sqrt(2)))                       # Φ(2) ≈ 0.977
    se = math.sqrt(0.25 / 400)
    assert accuracy - 0.5 > 5 * se, accuracy
    assert accuracy > bayes - 4 * math.sqrt(bayes * (1 - bayes) / 400), accuracy


# --- a trained classifier-head model on real renders ----------------------------------------

@pytest.fixture(scope="module")
def shapes_model():
    """A JEM classifier-head model of the shapes data after 100 quick steps (~4 s)."""
    from conceptalg.training import Trainer, builtin_data, default_train_config

    data = builtin_data("shapes", n=1000, seed=0)
    config = default_train_config(data.sample_shape, steps=100, langevin_steps=1,
                                  batch_size=32, lr=5e-3, seed=0)
    trainer = Trainer(data, config=config, heads="classifier",
                      backbone_options={"width": 8, "spectral_norm": False})
    trainer.fit()
    return trainer.model.eval()


@pytest.fixture(scope="module")
def shapes_dir(shapes_model, tmp_path_factory):
    from conceptalg.training.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("shapes-model")
    save_checkpoint(path, 100, model=shapes_model)
    return path


def test_classifier_heads_read_new_renders_far_above_chance(shapes_model):
    # measured: shape 59 %, colour 67 %, size 93 % (chance 33, 17, 50 %): z = 9, 23, 15
    from conceptalg.data.shapes import FACTORS as SHAPE_FACTORS, ShapesDataset

    fresh = ShapesDataset(300, seed=1, split="train")
    labels = infer(shapes_model, fresh.images)
    for f, values in SHAPE_FACTORS.items():
        truth = [values[i] for i in fresh.labels[f].tolist()]
        accuracy = np.mean([a == b for a, b in zip(labels[f], truth)])
        chance = 1 / len(values)
        se = math.sqrt(chance * (1 - chance) / len(truth))
        assert accuracy - chance > 5 * se, (f, accuracy)


# --- bad arguments --------------------------------------------------------------------------

BAD = [
    ("unknown factor", dict(factors=["side", "texture"]), ValueError,
     "the model has no factor(s) 'texture'; its factors are side, tone"),
    ("no factors", dict(factors=[]), ValueError, "factors is empty"),
    ("wrong shape", dict(images=torch.zeros(3, 5)), ValueError,
     "the model takes samples of shape 2; images have shape [3, 5]"),
    ("one image", dict(images=torch.zeros(2)), ValueError, "add a batch dimension"),
    ("integers", dict(images=torch.zeros(3, 2, dtype=torch.long)), ValueError,
     "must be floating point"),
    ("nan", dict(images=torch.full((3, 2), float("nan"))), ValueError, "NaN"),
    ("not a tensor", dict(images=[[0.0, 0.0]]), TypeError, "images must be a tensor"),
    ("not a model", dict(model=object()), TypeError, "needs a trained model"),
    ("sigma for CD", dict(sigma=0.1), ValueError, "contrastive divergence and has none"),
    ("batch size", dict(batch_size=0), ValueError, "batch_size must be an integer ≥ 1"),
    ("samples", dict(samples=0), ValueError, "samples must be an integer ≥ 1"),
    ("seed", dict(seed=-1), ValueError, "seed must be an integer ≥ 0"),
    ("sigma list for energies", dict(model="energy", sigma=[0.1, 0.2]), ValueError,
     "read at one noise level"),
    ("negative sigma", dict(model="score", sigma=-1.0), ValueError,
     "sigma must be a finite number > 0"),
    ("no levels", dict(model="score", sigma=[]), ValueError, "empty list of levels"),
]


@pytest.mark.parametrize("change, error, text", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments_say_what_is_wrong(change, error, text):
    args = {"model": "linear", "images": _points(3), "factors": None, **change}
    model = _model(args.pop("model")) if isinstance(args["model"], str) else args.pop("model")
    with pytest.raises(error) as info:
        infer(model, args.pop("images"), args.pop("factors"), **args)
    assert text in str(info.value)


def test_images_outside_the_bounds_are_refused():
    model = ConceptModel(_config(bounds=(0.0, 1.0)))
    with pytest.raises(ValueError, match="outside the model's bounds .* divide by 255"):
        infer(model, torch.full((2, 2), 255.0))


# --- the command line -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def renders():
    from conceptalg.data.shapes import ShapesDataset

    return ShapesDataset(3, seed=3, split="train").images                  # [3, 3, 32, 32]


def _write_pngs(images, folder) -> list[str]:
    paths = []
    for i, image in enumerate(images):
        path = folder / f"img{i}.png"
        matplotlib.image.imsave(path, image.permute(1, 2, 0).numpy())
        paths.append(str(path))
    return paths


def test_cli_reads_pictures_and_writes_the_table(shapes_model, shapes_dir, renders, tmp_path,
                                                  capsys):
    pngs = _write_pngs(renders, tmp_path)
    table = tmp_path / "labels.csv"
    assert main(["infer", "--model", str(shapes_dir), *pngs, "--csv", str(table),
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    # what the CLI should have read: the PNGs (8-bit) without their alpha channel
    read = torch.stack([torch.from_numpy(matplotlib.image.imread(p)[:, :, :3].copy())
                        .permute(2, 0, 1) for p in pngs])
    labels, probs = infer(shapes_model, read, return_probs=True)
    for i, (line, png) in enumerate(zip(out, pngs)):
        cells = line.split()
        assert cells[0] == png
        expected = [f"{f}={labels[f][i]}" for f in labels]
        assert cells[1::2] == expected, line
        assert cells[2::2] == [f"({float(probs[f][i].max()):.2f})" for f in labels]
    assert out[3] == f"wrote {table}"
    with table.open() as stream:
        rows = list(csv.DictReader(stream))
    assert [r["image"] for r in rows] == pngs
    for i, row in enumerate(rows):
        for f in labels:
            assert row[f] == labels[f][i]
            assert float(row[f"{f} probability"]) == pytest.approx(
                float(probs[f][i].max()), rel=1e-5)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_cli_reads_one_tensor_file(shapes_model, shapes_dir, renders, tmp_path, suffix, capsys):
    path = tmp_path / f"images{suffix}"
    if suffix == ".pt":
        torch.save(renders, path)
    else:
        from safetensors.torch import save_file

        save_file({"samples": renders.contiguous()}, str(path))
    assert main(["infer", "--model", str(shapes_dir), str(path), "--factors", "color,shape",
                 "--probs"]) == 0
    out = capsys.readouterr().out.splitlines()
    labels, probs = infer(shapes_model, renders, ["color", "shape"], return_probs=True)
    lines = [line for line in out if not line.startswith("    ")]
    assert [line.split()[0] for line in lines] == [f"{path.name}[{i}]" for i in range(3)]
    assert [line.split()[1] for line in lines] == [f"color={c}" for c in labels["color"]]
    every = [line.strip() for line in out if line.startswith("    ")]
    assert len(every) == 6 and every[0].startswith("color: red ")
    assert "size" not in "\n".join(out)
