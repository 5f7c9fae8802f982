"""Exported models: weights without training state, the init bank kept from the base replay
buffer, sampling starting from it by default, and the export command's errors."""

import json

import pytest
import torch

import conceptalg
from conceptalg.cli import main
from conceptalg.models.model import ConceptModel, ModelConfig
from conceptalg.training import ConceptData, Trainer, default_train_config, export_model
from conceptalg.training.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A 6-step CD run on tiny 2-channel 4×4 images with a saved checkpoint."""
    torch.manual_seed(0)
    x = torch.rand(64, 2, 4, 4)
    data = ConceptData.from_labels(x, {"side": ["left", "right"] * 32})
    config = default_train_config(data.sample_shape, steps=6, batch_size=16, buffer_size=192,
                                  langevin_steps=3, base_fraction=0.5)
    trainer = Trainer(data, config=config, backbone_options={"width": 4, "blocks": (1,)})
    trainer.fit()
    run = tmp_path_factory.mktemp("run")
    trainer.save(run)
    return run, trainer


def test_export_keeps_weights_and_newest_base_buffer_rows_without_training_state(image_run,
                                                                                 tmp_path):
    run, trainer = image_run
    path = export_model(run, tmp_path / "model", init_bank=16)
    model = conceptalg.load(tmp_path / "model")
    assert model.config.init_bank == 16
    trained = {k: v for k, v in trainer.model.state_dict().items() if k != "init_bank"}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())
    base = trainer.buffers[-1].state_dict()["samples"]  # oldest first
    assert torch.equal(model.init_bank, base[-16:].to(torch.float16))
    files = sorted(p.name for p in path.iterdir())
    assert files == ["config.json", "model.safetensors"]  # no optimiser, no buffers
    meta = load_checkpoint(tmp_path / "model").metadata
    assert meta["exported_from"]["step"] == 6 and meta["exported_from"]["init_bank"] == 16
    assert meta["train_config"]["steps"] == 6


def test_sampling_starts_from_the_bank_by_default(image_run, tmp_path):
    run, _ = image_run
    export_model(run, tmp_path / "model", init_bank=8)
    model = conceptalg.load(tmp_path / "model")
    bank = model.init_bank.float()
    energy = conceptalg.compose("left", model)
    # zero steps of movement: a tiny step and no noise leave each chain where it started
    x = conceptalg.sample(energy, 32, steps=1, step_size=1e-12, noise_scale=1e-12, seed=3)
    distances = (x[:, None] - bank[None]).abs().flatten(2).amax(dim=2).min(dim=1).values
    assert distances.max() < 1e-6, "every chain starts at a bank image"
    again = conceptalg.sample(energy, 32, steps=1, step_size=1e-12, noise_scale=1e-12, seed=3)
    assert torch.equal(x, again)
    # an explicit init still wins
    start = torch.full((4, 2, 4, 4), 0.5)
    y = conceptalg.sample(energy, 4, steps=1, step_size=1e-12, noise_scale=1e-12, init=start)
    assert torch.allclose(y, start)


def test_a_model_without_bank_samples_from_uniform_noise():
    model = ConceptModel(ModelConfig(sample_shape=(2, 4, 4), factors={"side": ["l", "r"]},
                                     backbone_options={"width": 4, "blocks": (1,)}))
    assert model.init_samples is None and "init_bank" not in model.state_dict()
    x = conceptalg.sample(conceptalg.compose("l", model), 2000, steps=1, step_size=1e-12,
                          noise_scale=1e-12, seed=0)
    # uniform on [0, 1]: mean 1/2 and variance 1/12, within 6 standard errors
    n = x.numel()
    assert abs(x.mean().item() - 0.5) < 6 * (1 / 12) ** 0.5 / n ** 0.5
    assert abs(x.var().item() - 1 / 12) < 6 * (1 / 180) ** 0.5 / n ** 0.5


@pytest.mark.parametrize("bank", [-1, 2.5, True])
def test_model_config_rejects_bad_bank_sizes(bank):
    with pytest.raises(ValueError, match="init_bank"):
        ModelConfig(sample_shape=(2,), factors={"a": ["x"]}, backbone="mlp", init_bank=bank)


def test_fill_init_bank_checks_shape_and_finiteness():
    model = ConceptModel(ModelConfig(sample_shape=(2,), factors={"a": ["x"]}, backbone="mlp",
                                     init_bank=3, bounds=(0.0, 1.0)))
    with pytest.raises(ValueError, match="at least 3 samples shaped"):
        model.fill_init_bank(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="non-finite"):
        model.fill_init_bank(torch.tensor([[0.0, float("nan")]] * 3))
    model.fill_init_bank(torch.tensor([[-1.0, 0.5], [0.25, 2.0], [0.0, 1.0], [9.0, 9.0]]))
    assert torch.equal(model.init_bank.float(),
                       torch.tensor([[0.0, 0.5], [0.25, 1.0], [0.0, 1.0]]))


def test_export_command_and_its_errors(image_run, tmp_path, capsys):
    run, trainer = image_run
    assert main(["export", str(run), str(tmp_path / "m"), "--init-bank", "4"]) == 0
    assert "exported" in capsys.readouterr().out
    assert conceptalg.load(tmp_path / "m").config.init_bank == 4
    rows = len(trainer.buffers[-1])
    assert main(["export", str(run), str(tmp_path / "m2"), "--init-bank", str(rows + 1)]) == 2
    err = capsys.readouterr().err
    assert f"holds {rows} samples" in err and f"at most {rows}" in err
    assert not (tmp_path / "m2").exists()
    # a checkpoint without replay buffers (e.g. an export) has no bank to take
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "m3")]) == 2
    assert "holds no base replay buffer" in capsys.readouterr().err
    # without a bank it exports a plain model
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "m4"), "--init-bank", "0"]) == 0
    config = json.loads(next((tmp_path / "m4").glob("ckpt-*/config.json")).read_text())
    assert config["model_config"]["init_bank"] == 0


def test_export_replaces_sampling_defaults_and_rejects_unknown_keys(image_run, tmp_path, capsys):
    run, trainer = image_run
    trained = trainer.model.config.sampler_defaults
    assert main(["export", str(run), str(tmp_path / "m"), "--init-bank", "4",
                 "--set", "steps=200", "--set", "step_size=6e-5", "--set", "sampler=langevin",
                 "--set", "grad_clip=null"]) == 0
    defaults = conceptalg.load(tmp_path / "m").sampler_defaults
    expected = {k: v for k, v in trained.items() if k != "grad_clip"}
    assert defaults == {**expected, "steps": 200, "step_size": 6e-5, "sampler": "langevin"}
    assert main(["export", str(run), str(tmp_path / "bad"), "--set", "stepsize=3"]) == 2
    assert "did you mean 'step_size'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit):
        main(["export", str(run), str(tmp_path / "bad"), "--set", "steps"])


def test_trainer_keeps_the_newest_base_samples_as_the_bank_padded_early(image_run, tmp_path):
    run, trainer = image_run
    model = trainer.model
    assert model.config.init_bank == 256  # the image default
    base = trainer.buffers[-1].state_dict()["samples"]
    assert 0 < len(base) < 256
    bank = model.init_bank.float()
    assert torch.equal(bank[-len(base):], base.to(torch.float16).float())
    pad = bank[:-len(base)]
    assert pad.min() >= 0 and pad.max() <= 1 and pad.std() > 0.2  # uniform noise in bounds
    saved = conceptalg.load(run)  # the checkpoint holds the same bank
    assert torch.equal(saved.init_bank, model.init_bank)
    # refreshing again at the same step is deterministic and leaves training draws alone
    state = trainer.generator.get_state()
    trainer._refresh_init_bank()
    assert torch.equal(model.init_bank.float(), bank)
    assert torch.equal(trainer.generator.get_state(), state)


def test_vector_models_get_no_bank():
    x = torch.randn(64, 2).clamp(-3, 3)
    data = ConceptData.from_labels(x, ["a", "b"] * 32, bounds=(-3.0, 3.0))
    trainer = Trainer(data, config=default_train_config((2,), steps=2))
    trainer.fit()
    assert trainer.model.config.init_bank == 0 and trainer.model.init_samples is None
