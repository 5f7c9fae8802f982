"""``conceptalg train``'s data and recipe options: streamed data by default, ``--n`` for a fixed
set, the dsm recipe flags recorded in the checkpoint, and every bad use of them one line with
exit code 2 before any work (no data is made: the checks run before it)."""

from __future__ import annotations

import json

import pytest

from conceptalg.cli import main


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return e.code


CASES = [
    ("resume with no run", ["train", "--data", "shapes", "--out", "{tmp}/typo", "--resume"],
     ["--resume found no training run to continue there", "drop --resume"]),
    ("augment under the default holdout",
     ["train", "--data", "shapes", "--objective", "dsm", "--out", "{tmp}/r",
      "--augment", "channel-permutations"],
     ["would show the model held-out pairs", "--holdout none"]),
    ("conditioning with cd", ["train", "--data", "shapes", "--objective", "cd", "--out",
                              "{tmp}/r", "--conditioning", "complete"],
     ["--conditioning applies to --objective dsm"]),
    ("normalisation with cd", ["train", "--data", "shapes", "--objective", "cd", "--out",
                               "{tmp}/r", "--normalisation", "bounds"],
     ["--normalisation applies to --objective dsm"]),
    ("net unknown key", ["train", "--data", "shapes", "--objective", "dsm", "--out", "{tmp}/r",
                         "--net", "depth=3"], ["argument --net", "KEY one of decoder"]),
    ("net bad value", ["train", "--data", "shapes", "--objective", "dsm", "--out", "{tmp}/r",
                       "--net", "decoder=wide"], ["decoder='wide': expected one of full, light"]),
    ("net small embedding", ["train", "--data", "shapes", "--objective", "dsm", "--out",
                             "{tmp}/r", "--net", "embedding_dim=4"],
     ["embedding_dim='4': expected an integer >= 8"]),
    ("langevin steps under the dsm default",
     ["train", "--data", "shapes", "--out", "{tmp}/r", "--langevin-steps", "5"],
     ["--langevin-steps applies to --objective cd", "for image data the default is dsm"]),
    ("width under the dsm default", ["train", "--data", "scenes", "--out", "{tmp}/r", "--width",
                                     "8"], ["--width applies to --objective cd"]),
    ("drop rate above one", ["train", "--data", "shapes", "--objective", "dsm", "--out",
                             "{tmp}/r", "--drop-rate", "1.5"], ["argument --drop-rate"]),
]


@pytest.mark.parametrize("argv, texts", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_train_options_end_with_one_line(argv, texts, tmp_path, capsys, monkeypatch):
    import conceptalg.training.data as data

    def no_data(*a, **k):  # pragma: no cover - reached only when a check is missing
        raise AssertionError("data was made before the options were checked")

    monkeypatch.setattr(data, "builtin_data", no_data)
    assert run([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("conceptalg train: ") or "usage:" in err
    assert "Traceback" not in err
    for text in texts:
        assert text in err, err


def test_dsm_recipe_flags_stream_and_are_recorded(tmp_path, capsys):
    out = tmp_path / "run"
    code = run(["train", "--data", "toy2d", "--objective", "dsm", "--parameterization", "score",
                "--out", str(out), "--steps", "4", "--log-every", "2", "--batch-size", "16",
                "--conditioning", "complete", "--drop-rate", "0.3", "--ema-schedule", "warmup",
                "--no-progress", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    latest = json.loads((out / "latest").read_text())["checkpoint"]
    meta = json.loads((out / latest / "config.json").read_text())["metadata"]
    cfg = meta["train_config"]
    assert (cfg["conditioning"], cfg["drop_rate"], cfg["ema_schedule"]) == \
        ("complete", 0.3, "warmup")
    assert meta["data"]["stream"] is True            # no --n: fresh samples every batch
    # --n asks for a fixed set
    out2 = tmp_path / "fixed"
    assert run(["train", "--data", "toy2d", "--objective", "dsm", "--out", str(out2),
                "--steps", "2", "--log-every", "1", "--n", "400", "--no-progress"]) == 0
    latest = json.loads((out2 / "latest").read_text())["checkpoint"]
    meta = json.loads((out2 / latest / "config.json").read_text())["metadata"]
    assert meta["data"]["stream"] is False and meta["data"]["n"] == 400


@pytest.mark.parametrize("data, objective, parameterization", [
    ("shapes", "dsm", "score"), ("toy2d", "cd", "energy")], ids=["images", "vectors"])
def test_defaults_pick_the_shipped_recipe_and_are_recorded(tmp_path, data, objective,
                                                           parameterization):
    import conceptalg
    from conceptalg.training import default_objective

    out = tmp_path / "run"
    assert run(["train", "--data", data, "--n", "64", "--steps", "1", "--out", str(out),
                "--no-progress", "--threads", "1"]) == 0
    model = conceptalg.load(out)
    assert model.config.objective == objective
    assert model.config.parameterization == parameterization
    assert default_objective(model.config.sample_shape) == (objective, parameterization)
    # a checkpoint records its objective: resuming honours it, whatever the defaults
    meta = json.loads((out / json.loads((out / "latest").read_text())["checkpoint"] /
                       "config.json").read_text())["metadata"]
    assert meta.get("objective", "cd") == objective


def test_help_says_what_the_defaults_are(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the default for image data" in text and "the default for toy2d" in text
