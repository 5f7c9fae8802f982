"""`conceptalg evaluate` / `extrapolate` on a tiny trained model, and a smoke run of the
composition benchmark. Structure and files are checked, not accuracy (the model is untrained)."""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conceptalg.cli_args import UsageError
from conceptalg.evaluation.commands import REGISTER

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> int:
    """The subcommands as the CLI registers them (independent of cli.py's wiring)."""
    parser = argparse.ArgumentParser(prog="conceptalg")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in REGISTER:
        register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from conceptalg.training import Trainer, builtin_data, default_train_config

    data = builtin_data("shapes", n=500)
    trainer = Trainer(data, backbone_options={"width": 8},
                      config=default_train_config(data.sample_shape, steps=4, batch_size=8,
                                                  log_every=2))
    trainer.fit()
    out = tmp_path_factory.mktemp("models") / "tiny"
    trainer.save(out)
    return out


def test_evaluate_prints_a_table_and_writes_json(tiny_model, tmp_path, capsys):
    exprs = ["red & circle", "circle & ~red", "(red | blue) & ~square"]
    argv = ["evaluate", "--model", str(tiny_model), "--n", "6", "--steps", "3", "--no-progress",
            "--json", str(tmp_path / "e.json"), "--grid", str(tmp_path / "e.png")]
    for e in exprs:
        argv += ["--expr", e]
    assert run(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("model: ") and "shapes, linear heads, step 4" in out[0]
    assert out[1].startswith("evaluator: decoder (on real held-out data: 100.0 %")
    header = next(i for i, line in enumerate(out) if line.startswith("expression"))
    assert all(word in out[header] for word in ("accuracy", "n", "valid", "entropy", "OR"))
    rows = out[header + 2: header + 2 + len(exprs)]
    assert [r.split("  ")[0] for r in rows] == exprs
    assert "red" in rows[2].split("~square", 1)[1]  # the OR mixture column
    payload = json.loads((tmp_path / "e.json").read_text())
    assert payload["data"] == "shapes" and payload["evaluator"]["name"] == "decoder"
    assert [r["expr"] for r in payload["results"]] == exprs
    for r in payload["results"]:
        assert r["n"] == 6 and 0 <= r["accuracy"] <= 1 and "diversity" in r
    assert list(payload["results"][2]["or proportions"]) == ["red | blue"]
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_evaluate_rejects_bad_input(tiny_model):
    from conceptalg.errors import ConceptSyntaxError, UnknownConceptError

    with pytest.raises(ConceptSyntaxError):
        run(["evaluate", "--model", str(tiny_model), "--expr", "red &", "--no-progress"])
    with pytest.raises(UnknownConceptError):
        run(["evaluate", "--model", str(tiny_model), "--expr", "purple", "--n", "2",
             "--steps", "1", "--no-progress"])


@pytest.mark.parametrize("holdout,held", [(None, 6), ("none", 0), ("circle:green", 1)],
                         ids=["model's own", "none", "override"])
def test_extrapolate_writes_matrix_and_csv(tiny_model, tmp_path, capsys, holdout, held):
    argv = ["extrapolate", "--model", str(tiny_model), "--factors", "shape,color", "--n", "2",
            "--steps", "2", "--out", str(tmp_path / "m.png"), "--csv", str(tmp_path / "m.csv"),
            "--no-progress"]
    if holdout:
        argv += ["--holdout", holdout]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "accuracy of shape=a & color=b" in out and out.count("*") == held + 1
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert list(rows[0]) == ["shape", "color", "held_out", "accuracy", "stderr", "n", "read"]
    assert len(rows) == 18 and sum(r["held_out"] == "True" for r in rows) == held
    assert all(r["n"] == "2" for r in rows)
    assert (tmp_path / "m.png").stat().st_size > 5000


def test_extrapolate_rejects_unknown_factor(tiny_model, tmp_path):
    with pytest.raises(UsageError, match="no factor\\(s\\) .texture."):
        run(["extrapolate", "--model", str(tiny_model), "--factors", "shape,texture",
             "--out", str(tmp_path / "m.png"), "--no-progress"])
    with pytest.raises(UsageError, match="holdout"):
        run(["extrapolate", "--model", str(tiny_model), "--holdout", "circle:purple",
             "--out", str(tmp_path / "m.png"), "--no-progress"])


@pytest.mark.slow
def test_composition_benchmark_quick_smoke(tmp_path):
    cmd = [sys.executable, str(ROOT / "bench" / "composition.py"), "--quick", "--steps", "2",
           "--train-n", "200", "--width", "4", "--per-expr", "1", "--scene-queries", "1",
           "--sample-steps", "2", "--arms", "linear,joint,scenes", "--no-check",
           "--out-dir", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    payload = json.loads((tmp_path / "composition.json").read_text())
    assert set(payload["shapes"]) == {"linear", "joint"}
    assert payload["shapes"]["joint"]["1"] is None and payload["shapes"]["joint"]["2"]
    assert payload["shapes"]["linear"]["2"]["held out"]["n"] == 6
    assert set(payload["scenes"]) >= {"k=1", "k=2", "k=3"}
    md = (tmp_path / "composition.md").read_text()
    assert "| joint | n/a |" in md and "## scenes" in md
    assert set(payload["scenes"]["k=2"]["read"]) == {"accuracy", "stderr", "n"}
    assert (tmp_path / "composition.png").stat().st_size > 0


@pytest.mark.parametrize("argv", [
    ["evaluate", "--expr", "red", "--n", "0"],
    ["evaluate", "--expr", "red", "--steps", "-3"],
    ["extrapolate", "--n", "x"],
    ["extrapolate", "--holdout", "circle-red"],
    ["evaluate", "--expr", "red", "--evaluator", "oracle"],
], ids=["n 0", "negative steps", "n not a number", "holdout syntax", "unknown evaluator"])
def test_bad_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(argv[:1] + ["--model", "unused"] + argv[1:])
    assert exit_info.value.code == 2


def test_evaluate_with_the_classifier_evaluator(tiny_model, monkeypatch, capsys):
    import conceptalg.evaluation.classifiers as classifiers

    original = classifiers.train_factor_classifiers
    monkeypatch.setattr(classifiers, "train_factor_classifiers",
                        lambda **kw: original(**{**kw, "steps": 3, "n": 200, "test_n": 60}))
    assert run(["evaluate", "--model", str(tiny_model), "--expr", "red | blue", "--n", "2",
                "--steps", "1", "--evaluator", "classifier", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "evaluator: classifier (on real held-out data: all factors" in out
    assert "on the held-out pairs" in out


def test_evaluate_a_scenes_model(tmp_path, capsys):
    from conceptalg.training import Trainer, builtin_data, default_train_config

    data = builtin_data("scenes", n=100)
    trainer = Trainer(data, heads="film", backbone_options={"width": 4},
                      config=default_train_config(data.sample_shape, steps=1, batch_size=4))
    trainer.fit()
    trainer.save(tmp_path / "scenes")
    assert run(["evaluate", "--model", str(tmp_path / "scenes"), "--expr", "at(0.3, 0.3)",
                "--expr", "at(0.3, 0.3) & at(0.7, 0.6)", "--n", "2", "--steps", "1",
                "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "(scenes, film heads, step 1)" in out and "at(0.3, 0.3) & at(0.7, 0.6)" in out
    with pytest.raises(UsageError, match="classifier needs a shapes model"):
        run(["evaluate", "--model", str(tmp_path / "scenes"), "--expr", "at(0.5, 0.5)",
             "--evaluator", "classifier", "--no-progress"])
    with pytest.raises(UsageError, match="no factor"):
        run(["extrapolate", "--model", str(tmp_path / "scenes"), "--out",
             str(tmp_path / "m.png"), "--no-progress"])


@pytest.mark.parametrize("holdout,expected", [
    ("default", None), ("none", frozenset()),
    ([("circle", "green"), ("square", "red")], frozenset({("circle", "green"), ("square", "red")})),
], ids=["default", "none", "custom"])
def test_checkpoints_record_the_training_holdout_for_evaluation(tmp_path, holdout, expected):
    from conceptalg.data.shapes import DEFAULT_HOLDOUT
    from conceptalg.evaluation.protocol import model_info
    from conceptalg.training import Trainer, builtin_data, default_train_config

    data = builtin_data("shapes", n=200, holdout=holdout)
    trained_pairs = {(("circle", "square", "triangle")[s], ("red", "green", "blue", "yellow",
                                                             "magenta", "cyan")[c])
                     for s, c in zip(data.labels["shape"].tolist(), data.labels["color"].tolist())}
    expected = DEFAULT_HOLDOUT if expected is None else expected
    assert not trained_pairs & expected  # the data really withholds them
    trainer = Trainer(data, backbone_options={"width": 4},
                      config=default_train_config(data.sample_shape, steps=1, batch_size=4))
    trainer.save(tmp_path / "run")
    assert model_info(tmp_path / "run").holdout == expected


@pytest.mark.slow
def test_saved_arms_feed_the_benchmarks(tmp_path):
    """A joint-baseline snapshot of bench/train_joint.py and a run checkpoint go through
    bench/composition.py --models and bench/training.py --curve, steps recorded."""
    def script(name, *args):
        return subprocess.run([sys.executable, str(ROOT / "bench" / name), *map(str, args)],
                              check=True, capture_output=True, text=True, timeout=600)

    script("train_joint.py", "--out", tmp_path / "joint", "--steps", 4, "--snapshot-every", 2,
           "--n", 200, "--width", 4)
    assert sorted(p.name for p in (tmp_path / "joint").glob("step-*")) == \
        ["step-000002", "step-000004"]
    subprocess.run([sys.executable, "-m", "conceptalg", "train", "--data", "shapes", "--out",
                    str(tmp_path / "film"), "--objective", "cd", "--heads", "film", "--steps", "3", "--n", "200",
                    "--width", "4", "--langevin-steps", "2", "--no-progress"],
                   check=True, capture_output=True, text=True, timeout=600)
    ckpt = tmp_path / "film" / "ckpt-000003"
    script("composition.py", "--models", ckpt, tmp_path / "joint" / "step-000004",
           "--per-expr", 1, "--sample-steps", 2, "--no-check", "--out-dir", tmp_path)
    payload = json.loads((tmp_path / "composition.json").read_text())
    assert payload["shapes"]["film"]["training"]["steps"] == 3
    assert payload["shapes"]["joint"]["training"] == {"steps": 4}
    assert "| joint | n/a |" in (tmp_path / "composition.md").read_text()

    out = tmp_path / "training.json"
    row = {"s/it": 0.5, "it/s": 2.0, "images/s": 128, "image-steps/s": 2560, "time vs linear": 1}
    out.write_text(json.dumps({"throughput": {
        "rows": {"film": row}, "A/A": 1.0, "batch_size": 64, "langevin_steps": 20, "width": 32,
        "repeats": 1, "iters": 1, "threads": 1}}))
    script("training.py", "--skip-throughput", "--curve", ckpt, tmp_path / "joint" / "step-000002",
           "--per-pair", 1, "--sample-steps", 2, "--out", out)
    curve = json.loads(out.read_text())["curve"]
    assert [(p["arm"], p["step"]) for p in curve] == [("film", 3), ("joint", 2)]
    # both objectives log their own CPU seconds: the curve uses the run's record, not the rate
    history = json.loads((ckpt / "config.json").read_text())["metadata"]["history"]
    assert curve[0]["training hours"] == pytest.approx(history[-1]["cpu seconds"] / 3600)
    assert curve[1]["training hours"] is None               # no measured rate for the arm
    assert curve[0]["seen"]["n"] == 12 and curve[0]["held out"]["n"] == 6
    assert (tmp_path / "training-curve.png").stat().st_size > 0


def test_snapshot_choice_looks_at_seen_pairs_only():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from training import best_on_seen
    finally:
        sys.path.remove(str(ROOT / "bench"))

    def point(arm, step, seen, held):
        return {"arm": arm, "step": step, "read seen": {"accuracy": seen},
                "read held out": {"accuracy": held}}

    chosen = best_on_seen([point("a", 2, 0.5, 0.0), point("a", 1, 0.5, 0.1),
                           point("a", 3, 0.4, 0.9), point("b", 1, 0.1, 0.0)])
    assert {arm: p["step"] for arm, p in chosen.items()} == {"a": 1, "b": 1}
