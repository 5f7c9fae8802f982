"""`conceptalg train` and `conceptalg sample` end to end on a tiny budget."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

import conceptalg
from conceptalg.cli import main


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "toy"
    code = main(["train", "--data", "toy2d", "--out", str(out), "--steps", "20",
                 "--log-every", "5", "--checkpoint-every", "10", "--n", "2000", "--no-progress"])
    assert code == 0
    return out


def test_train_writes_checkpoints_metrics_and_curve(toy_run):
    names = sorted(p.name for p in toy_run.iterdir())
    assert {"latest", "metrics.csv", "training.png", "ckpt-000020"} <= set(names)
    rows = (toy_run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 1 + 4
    assert json.loads((toy_run / "latest").read_text())["step"] == 20
    model = conceptalg.load(toy_run)
    assert "concept=ring" in model.head_names


def test_train_resume_continues_the_run(toy_run, capsys):
    assert main(["train", "--data", "toy2d", "--out", str(toy_run), "--steps", "30", "--n",
                 "2000", "--resume", "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert json.loads((toy_run / "latest").read_text())["step"] == 30


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_sample_writes_a_picture_and_tensors(toy_run, tmp_path, suffix):
    png, tensors = tmp_path / "s.png", tmp_path / f"s{suffix}"
    assert main(["sample", "ring & ~top", "--model", str(toy_run), "--n", "50", "--out",
                 str(png), "--save", str(tensors), "--no-progress"]) == 0
    assert png.stat().st_size > 1000
    x = load_file(str(tensors))["samples"] if suffix == ".safetensors" else \
        np.load(tensors, allow_pickle=False)["samples"]
    assert tuple(x.shape) == (50, 2)


def test_sample_rejects_pickle_and_unknown_names(toy_run, tmp_path, capsys):
    assert main(["sample", "ring", "--model", str(toy_run), "--n", "4", "--out",
                 str(tmp_path / "a.png"), "--save", str(tmp_path / "a.pt"),
                 "--no-progress"]) == 2
    assert main(["sample", "rign", "--model", str(toy_run), "--n", "4", "--out",
                 str(tmp_path / "b.png"), "--no-progress"]) == 1
    assert "ring" in capsys.readouterr().err  # the did-you-mean


def test_train_rejects_bad_holdout():
    with pytest.raises(SystemExit):
        main(["train", "--data", "shapes", "--out", "x", "--holdout", "circle-red"])


@pytest.mark.parametrize("argv,message", [
    (["--colour-blind", "shap"], "views name 'shap', which is not a factor"),
    (["--views", "shape=plaid"], "unknown view 'plaid'"),
])
def test_train_rejects_colour_blind_it_cannot_build(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["train", "--data", "shapes", "--objective", "cd", "--n", "50", "--out", str(out),
                 "--steps", "1",
                 "--no-progress", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_train_with_colour_blind_heads_records_them(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", "shapes", "--objective", "cd", "--n", "100", "--out",
                 str(out), "--steps", "2",
                 "--width", "4", "--langevin-steps", "2", "--colour-blind", "shape,size",
                 "--no-progress"]) == 0
    assert conceptalg.load(out).config.colour_blind == ("shape", "size")


def test_sigterm_saves_a_checkpoint_and_exits_130(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "conceptalg", "train", "--data", "toy2d", "--out", str(out),
         "--steps", "1000000", "--checkpoint-every", "1000000", "--log-every", "5", "--n",
         "2000", "--no-progress"], stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.csv").exists():  # training has started
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        assert not (out / "latest").exists()  # no periodic checkpoint in this run
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert code == 130, err
    step = json.loads((out / "latest").read_text())["step"]
    assert step >= 5 and f"interrupted at step {step}: saved" in err
    assert "concept=ring" in conceptalg.load(out).head_names
