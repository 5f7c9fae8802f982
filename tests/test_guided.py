"""Classifier heads over a diffusion base (issue 14, docs/design.md §6): noise-aware classifiers that read
factor views, composed by the logic semantics; their training losses; a base taken from a
trained model; checkpoints; the command line.

Oracles: ``logic`` is ``E = E_0 − w·log P`` with ``P(a ∧ b) = P(a)P(b)``, ``P(¬a) = 1 − P(a)``
and ``P(a ∨ b) = 1 − (1 − P(a))(1 − P(b))``, written out by hand from the classifiers'
probabilities; its score is ``s_0 + w ∇ log P`` by autograd of that hand formula; the guided
concept score is Bayes' rule, ``∇ log p_σ(x | c) = ∇ log p_σ(x) + ∇ log p(c | x, σ)``.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import conceptalg
from conceptalg.cli import main as cli_main
from conceptalg.errors import CompileError
from conceptalg.models import BASE, ModelConfig, build_model
from conceptalg.models.diffusion import DiffusionModel
from conceptalg.models.guided import GuidedDiffusionModel
from conceptalg.training import DSMTrainer, builtin_data, default_dsm_config
from conceptalg.training.export import export_model

VIEWS = {"shape": "colour-blind", "size": "colour-blind", "color": "shape-blind"}
FACTORS = {"shape": ["circle", "square", "triangle"],
           "color": ["red", "green", "blue", "yellow", "magenta", "cyan"],
           "size": ["small", "large"]}


def guided_model(parameterization: str = "energy", views=VIEWS, seed: int = 0) -> DiffusionModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(sample_shape=(3, 16, 16), factors=FACTORS, heads="classifier", views=views,
                      objective="dsm", backbone="unet", parameterization=parameterization,
                      backbone_options={"channels": (8, 16), "classifier": {"width": 4}},
                      noise={"sigma_data": 0.3, "mean": 0.1, "sigma_min": 0.01,
                             "sigma_max": 5.0},
                      composition={"semantics": "logic", "guidance_scale": 1.0})
    model = build_model(cfg).double()
    for p in model.parameters():  # non-trivial weights where the network starts at zero
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


def hand_log_p(model, x, sigma):
    """``log P`` of ``red & ~circle | large`` from the classifiers' probabilities, by hand."""
    lp = model.factor_log_probs(x, sigma=sigma)
    red = lp["color"][:, 0].exp()
    circle = lp["shape"][:, 0].exp()
    large = lp["size"][:, 1].exp()
    a = red * (1 - circle)
    return torch.log(1 - (1 - a) * (1 - large))


@pytest.mark.parametrize("w", [1.0, 2.5])
def test_logic_composition_is_the_hand_formula(w):
    model = guided_model("energy")
    x, sigma = images(), torch.tensor([0.05, 0.3, 1.0, 2.0], dtype=torch.float64)
    energy = conceptalg.compose("red & ~circle | large", model, guidance_scale=w)
    assert energy.semantics == "logic" and energy.guidance_scale == w
    want = model.concept_energies_base(x, sigma) - w * hand_log_p(model, x, sigma)
    torch.testing.assert_close(energy(x, sigma), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("parameterization", ["energy", "score"])
def test_logic_score_is_base_score_plus_w_grad_log_p(parameterization):
    model = guided_model(parameterization)
    x, sigma, w = images(), torch.tensor([0.05, 0.3, 1.0, 2.0], dtype=torch.float64), 3.0
    energy = conceptalg.compose("red & ~circle | large", model, guidance_scale=w)
    assert energy.score_only == (parameterization == "score")
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(hand_log_p(model, xg, sigma).sum(), xg)
    s0 = model.concept_scores(x, [BASE], sigma=sigma)[:, 0]
    torch.testing.assert_close(energy.score(x, sigma), s0 + w * g, rtol=1e-8, atol=1e-10)


def test_guided_concept_scores_are_bayes_rule():
    model = guided_model("score")
    x, sigma = images(), torch.full((4,), 0.4, dtype=torch.float64)
    scores = model.concept_scores(x, ["shape=square", BASE, "color=cyan"], sigma=sigma)
    s0 = model.concept_scores(x, [BASE], sigma=sigma)[:, 0]
    for k, (f, j) in ((0, ("shape", 1)), (2, ("color", 5))):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.factor_log_probs(xg, sigma=sigma)[f][:, j].sum(), xg)
        torch.testing.assert_close(scores[:, k], s0 + g)
    torch.testing.assert_close(scores[:, 1], s0)


def test_views_hide_what_they_claim_in_the_classifiers():
    model = guided_model("score")
    x, sigma = images(3), torch.full((3,), 0.2, dtype=torch.float64)
    logits = model.factor_logits(x, sigma=sigma)
    for perm in itertools.permutations(range(3)):
        permuted = model.factor_logits(x[:, list(perm)], sigma=sigma)
        torch.testing.assert_close(permuted["shape"], logits["shape"])
        torch.testing.assert_close(permuted["size"], logits["size"])
    shuffle = torch.randperm(256, generator=torch.Generator().manual_seed(0))
    shuffled = x.flatten(2)[:, :, shuffle].reshape(x.shape)
    torch.testing.assert_close(model.factor_logits(shuffled, sigma=sigma)["color"],
                               logits["color"])
    # the identity view sees colour: the same test fails without the declaration
    plain = guided_model("score", views={})
    a = plain.factor_logits(x, sigma=sigma)["shape"]
    b = plain.factor_logits(x[:, [2, 0, 1]], sigma=sigma)["shape"]
    assert (a - b).abs().max() > 1e-4


def test_with_classifiers_keeps_the_base_and_freezes_it():
    torch.manual_seed(0)
    data = builtin_data("shapes", n=64)
    trainer = DSMTrainer(data, config=default_dsm_config((3, 32, 32), steps=2, batch_size=8),
                         parameterization="score", backbone_options={"channels": (8, 16)})
    trainer.fit()
    film = trainer.model
    guided = GuidedDiffusionModel.over_base(film, VIEWS, {"width": 4})
    x, sigma = data.x[:4], torch.full((4,), 0.3)
    torch.testing.assert_close(guided.concept_scores(x, [BASE], sigma=sigma),
                               film.concept_scores(x, [BASE], sigma=sigma))
    tr = DSMTrainer(data, model=guided, config=default_dsm_config(
        (3, 32, 32), steps=3, batch_size=8, freeze_base=True))
    before = {k: v.clone() for k, v in guided.state_dict().items()}
    tr.fit()
    after = tr.online.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("classifiers.", "classifier_noise.")) for k in changed)
    assert tr.history[-1]["denoising loss"] == 0.0


def test_training_fits_values_and_gradients_and_classifiers_learn():
    """Colour from the shape-blind view is learnt in a few hundred steps: real renders are read
    far above chance (6 colours) at the data level."""
    data = builtin_data("shapes", n=2000)
    trainer = DSMTrainer(data, config=default_dsm_config((3, 32, 32), steps=150, batch_size=32,
                                                         lr=3e-3, log_every=50),
                         parameterization="score", heads="classifier", views=VIEWS,
                         backbone_options={"channels": (8, 16), "classifier": {"width": 8}})
    history = trainer.fit()
    assert {"cross-entropy", "guidance loss", "denoising loss"} <= set(history[-1])
    assert history[-1]["cross-entropy"] < history[0]["cross-entropy"]
    test = builtin_data("shapes", n=300, seed=7, holdout="none")
    with torch.no_grad():
        guess = trainer.model.factor_log_probs(test.x).get("color").argmax(1)
    accuracy = float((guess == test.labels["color"]).double().mean())
    stderr = (accuracy * (1 - accuracy) / 300) ** 0.5 + 1e-3
    assert accuracy - 1 / 6 > 5 * stderr, accuracy


def test_guided_model_round_trips_through_checkpoint_and_export(tmp_path):
    data = builtin_data("shapes", n=64)
    trainer = DSMTrainer(data, config=default_dsm_config((3, 32, 32), steps=2, batch_size=8),
                         parameterization="score", heads="classifier", views=VIEWS,
                         backbone_options={"channels": (8,), "classifier": {"width": 4}})
    trainer.fit()
    trainer.save(tmp_path / "run")
    back = conceptalg.load(tmp_path / "run")
    assert back.config == trainer.model.config and back.config.views == VIEWS
    x = data.x[:3]
    for f, v in trainer.model.factor_log_probs(x).items():
        torch.testing.assert_close(back.factor_log_probs(x)[f], v)
    export_model(tmp_path / "run", tmp_path / "model", sampler_defaults={"guidance_scale": 4.0})
    shipped = conceptalg.load(tmp_path / "model")
    energy = conceptalg.compose("red & circle", shipped)
    assert energy.semantics == "logic" and energy.guidance_scale == 4.0
    assert conceptalg.sample(energy, 2, seed=0).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("argv, message", [
    (["--views", "shape=colour-blind"], "need --heads classifier"),
    (["--heads", "linear"], "--heads linear applies to --objective cd"),
    (["--heads", "classifier", "--views", "shape=plaid"], "unknown view 'plaid'"),
    (["--heads", "classifier", "--views", "shape"], "FACTOR=VIEW pairs"),
    (["--guidance-weight", "2"], "--guidance-weight applies to"),
    (["--heads", "classifier", "--base", "no/such/model"], "--base"),
], ids=["views-film", "linear", "unknown-view", "bad-pair", "guidance-weight", "base-missing"])
def test_cli_train_refuses_with_one_line(tmp_path, capsys, argv, message):
    code = cli_main(["train", "--data", "shapes", "--objective", "dsm", "--out",
                     str(tmp_path / "run"), "--steps", "1", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_trains_classifier_heads_over_a_base(tmp_path, capsys):
    base = tmp_path / "base"
    assert cli_main(["train", "--data", "shapes", "--n", "64", "--objective", "dsm",
                     "--parameterization", "score", "--out", str(base), "--steps", "2",
                     "--batch-size", "8", "--no-progress"]) == 0
    run = tmp_path / "guided"
    assert cli_main(["train", "--data", "shapes", "--n", "64", "--objective", "dsm",
                     "--parameterization", "score", "--heads", "classifier", "--views",
                     "shape=colour-blind,color=shape-blind", "--base", str(base), "--out",
                     str(run), "--steps", "2", "--batch-size", "8", "--no-progress"]) == 0
    model = conceptalg.load(run)
    assert model.config.heads == "classifier"
    assert model.config.views == {"shape": "colour-blind", "color": "shape-blind"}
    with pytest.raises(CompileError, match="semantics"):
        conceptalg.compose("red", model, semantics="product", guidance_scale=2.0)


# --- window heads: parametric concepts of a position (scenes, issue 16) -----------------------
def scenes_model(parameterization: str = "score") -> DiffusionModel:
    torch.manual_seed(0)
    cfg = ModelConfig(sample_shape=(3, 32, 32), parametric={"at": 2}, heads="classifier",
                      objective="dsm", backbone="unet", parameterization=parameterization,
                      backbone_options={"channels": (8,), "window": {"width": 4}},
                      noise={"sigma_data": 0.3, "mean": 0.1, "sigma_min": 0.01,
                             "sigma_max": 5.0},
                      composition={"semantics": "logic", "guidance_scale": 1.0})
    model = build_model(cfg).double()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def test_window_heads_read_only_their_window():
    model = scenes_model()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    point = torch.tensor([0.25, 0.3], dtype=torch.float64)
    before = model.local_logits(x, "at", point, sigma=0.3)
    far = x.clone()
    far[:, :, :, 20:] = torch.rand(2, 3, 32, 12, dtype=torch.float64)  # x ≥ 0.625: outside
    torch.testing.assert_close(model.local_logits(far, "at", point, sigma=0.3), before)
    near = x.clone()
    near[:, :, 8:12, 6:10] = 1.0 - near[:, :, 8:12, 6:10]              # around the point
    assert (model.local_logits(near, "at", point, sigma=0.3) - before).abs().max() > 1e-4
    # and its guidance is local too: the score of at(p) minus the base's is zero far away
    energy = conceptalg.compose("at(0.25, 0.3)", model, guidance_scale=3.0)
    base = model.concept_scores(x, [BASE], sigma=0.3)[:, 0]
    guidance = energy.score(x, 0.3) - base
    assert guidance[:, :, :, 20:].abs().max() == 0 and guidance.abs().max() > 0


def test_logic_over_window_heads_is_the_hand_formula():
    model = scenes_model("energy")
    x, sigma = torch.rand(3, 3, 32, 32, dtype=torch.float64), 0.2
    energy = conceptalg.compose("at(0.3, 0.3) & ~at(0.7, 0.6)", model, guidance_scale=2.0)
    a = torch.sigmoid(model.local_logits(x, "at", torch.tensor([0.3, 0.3]), sigma=sigma))
    b = torch.sigmoid(model.local_logits(x, "at", torch.tensor([0.7, 0.6]), sigma=sigma))
    want = model.concept_energies_base(x, sigma) - 2.0 * torch.log(a * (1 - b))
    torch.testing.assert_close(energy(x, sigma), want)


def test_trained_window_heads_find_objects_where_they_are():
    """After a short training on scenes, ``log P(at(p))`` is higher at real object centres than
    at points with no object within 0.2, on scenes it never saw (paired, many standard errors)."""
    from conceptalg.data.scenes import ScenesDataset

    data = builtin_data("scenes", n=2000)
    trainer = DSMTrainer(data, config=default_dsm_config((3, 32, 32), steps=200, batch_size=32,
                                                         lr=3e-3, log_every=100),
                         parameterization="score", heads="classifier",
                         backbone_options={"channels": (8,), "window": {"width": 8}})
    trainer.fit()
    model = trainer.model
    test = ScenesDataset(200, seed=5)
    x = test.images
    centre = test.centres[:, 0]                                            # an object's centre
    empty = torch.rand(len(test), 2, generator=torch.Generator().manual_seed(1))
    from conceptalg.data.scenes import objects_near
    keep = ~objects_near(test.centres, test.mask, empty, 0.2)
    with torch.no_grad():
        at_object = model.local_logits(x, "at", centre, sigma=0.05)
        at_empty = model.local_logits(x, "at", empty, sigma=0.05)
    diff = (at_object - at_empty)[keep]
    assert diff.mean() > 5 * diff.std() / len(diff) ** 0.5, (diff.mean(), diff.std())
    assert float((diff > 0).double().mean()) > 0.8


# --- a declared symmetry of the base; fine-tuning from a trained model ------------------------
def test_augment_permutes_the_channels_of_the_bases_samples_only():
    x = torch.ones(64, 3, 8, 8) * torch.tensor([0.1, 0.5, 0.9])[None, :, None, None]
    labels = {"shape": ["a", "b"] * 32}
    from conceptalg.training import ConceptData

    data = ConceptData.from_labels(x, labels)
    trainer = DSMTrainer(data, config=default_dsm_config((3, 8, 8), batch_size=64,
                                                         augment="channel-permutations",
                                                         base_fraction=0.5),
                         parameterization="score", backbone_options={"channels": (8,)})
    batch_x, head = trainer._batch()[:2]
    colours = batch_x[:, :, 0, 0]                                          # [B, 3]
    base, concept = head < 0, head >= 0
    assert base.any() and concept.any()
    torch.testing.assert_close(colours[concept], torch.tensor([0.1, 0.5, 0.9]).expand(
        int(concept.sum()), 3))
    torch.testing.assert_close(colours[base].sort(1).values,
                               torch.tensor([0.1, 0.5, 0.9]).expand(int(base.sum()), 3))
    assert len({tuple(c.tolist()) for c in colours[base]}) > 1  # several permutations drawn


@pytest.mark.parametrize("changes, message", [
    (dict(augment="flips"), "augment must be one of"),
    (dict(guidance_weight=-1.0), "guidance_weight must be a finite number >= 0"),
], ids=["augment", "guidance-weight"])
def test_dsm_config_rejects(changes, message):
    with pytest.raises(ValueError, match=message):
        default_dsm_config((3, 8, 8), **changes)


@pytest.mark.parametrize("argv, message", [
    (["--objective", "cd", "--augment", "channel-permutations"], "--augment applies to"),
    (["--objective", "dsm", "--init", "models/shapes", "--resume"], "--init starts a new run"),
    (["--objective", "dsm", "--init", "no/such/model"], "--init"),
    (["--objective", "dsm", "--base-fraction", "1.5"], "must be in [0, 1]"),
], ids=["augment-cd", "init-resume", "init-missing", "base-fraction"])
def test_cli_fine_tuning_options_refuse(tmp_path, capsys, argv, message):
    try:
        code = cli_main(["train", "--data", "shapes", "--out", str(tmp_path / "run"),
                         "--steps", "1", *argv])
    except SystemExit as e:  # argparse's own checks
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_window_model_round_trips_through_export(tmp_path):
    data = builtin_data("scenes", n=64)
    trainer = DSMTrainer(data, config=default_dsm_config((3, 32, 32), steps=2, batch_size=8),
                         parameterization="score", heads="classifier",
                         backbone_options={"channels": (8,), "window": {"width": 4}})
    trainer.fit()
    trainer.save(tmp_path / "run")
    export_model(tmp_path / "run", tmp_path / "model", sampler_defaults={"guidance_scale": 7.0})
    shipped = conceptalg.load(tmp_path / "model")
    x, point = data.x[:3], torch.tensor([0.4, 0.6])
    torch.testing.assert_close(shipped.local_logits(x, "at", point, sigma=0.2),
                               trainer.model.local_logits(x, "at", point, sigma=0.2))
    energy = conceptalg.compose("at(0.3, 0.3) & at(0.7, 0.6)", shipped)
    assert energy.semantics == "logic" and energy.guidance_scale == 7.0
    assert conceptalg.sample(energy, 2, seed=0).shape == (2, 3, 32, 32)


def test_trainer_refuses_options_that_contradict_a_given_model():
    data = builtin_data("shapes", n=32)
    config = default_dsm_config((3, 32, 32), steps=1, batch_size=8)
    model = guided_model("energy").float()
    with pytest.raises(ValueError, match="come from the model's own config"):
        DSMTrainer(data, model=model, config=config, parameterization="score")
    with pytest.raises(ValueError, match="come from the model's own config"):
        DSMTrainer(data, model=model, config=config, views={"shape": "identity",
                                                             "color": "colour-blind"})
