"""Every bad call of every subcommand ends with one line on stderr, ``conceptalg <cmd>: ...``
(plus indented context: the expression and a caret), and its exit code (2: usage, including an
expression with wrong arguments and a missing, truncated or corrupt checkpoint or input file;
1: the model or data cannot do it) — never a traceback, and never after work has started
(sampling and data loading are replaced by functions that fail the test).
"""

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

import conceptalg
from conceptalg.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHAPES = str(ROOT / "models" / "shapes")
SCENES = str(ROOT / "models" / "scenes")
SUBCOMMANDS = ("parse", "explain", "train", "export", "sample", "evaluate", "extrapolate",
               "infer")

# (id, argv with {shapes} {scenes} {toy} {tmp} and damaged-checkpoint placeholders ({truncated},
# {altered}, {garbled}, {nested}, {pointer}: see `damaged`), exit code, texts the message contains)
CASES = [
    # --- sample ----------------------------------------------------------------------------
    ("sample --n 0", ["sample", "red", "--model", "{shapes}", "--n", "0"], 2,
     ["argument --n/--num-samples: must be an integer ≥ 1, got '0'"]),
    ("sample --n -5", ["sample", "red", "--model", "{shapes}", "--n", "-5"], 2,
     ["must be an integer ≥ 1, got '-5'"]),
    ("sample --steps -3", ["sample", "red", "--model", "{shapes}", "--steps", "-3"], 2,
     ["argument --steps: must be an integer ≥ 1, got '-3'"]),
    ("sample --step-size -1", ["sample", "red", "--model", "{shapes}", "--step-size", "-1"], 2,
     ["argument --step-size: must be a finite number > 0, got '-1'"]),
    ("sample --step-size nan", ["sample", "red", "--model", "{shapes}", "--step-size", "nan"], 2,
     ["must be a finite number > 0"]),
    ("sample --out missing folder",
     ["sample", "red", "--model", "{shapes}", "--n", "4", "--out", "{tmp}/missing/g.png"], 2,
     ["--out", "missing/g.png: the folder", "does not exist; create it first"]),
    ("sample --out not a picture", ["sample", "red", "--model", "{shapes}", "--out", "{tmp}/g.txt"],
     2, ["must end in a picture format such as .png"]),
    ("sample --out a folder", ["sample", "red", "--model", "{shapes}", "--out", "{tmp}/dir.png"],
     2, ["is a folder; give a file name in it, e.g.", "dir.png/out.png"]),
    ("sample --save pickle", ["sample", "red", "--model", "{shapes}", "--out", "{tmp}/g.png",
                              "--save", "{tmp}/s.pt"], 2,
     ["--save", "must end in .safetensors or .npz"]),
    ("sample --save missing folder", ["sample", "red", "--model", "{shapes}", "--out",
                                      "{tmp}/g.png", "--save", "{tmp}/missing/s.npz"], 2,
     ["--save", "does not exist"]),
    ("sample --sigmas increasing", ["sample", "red", "--model", "{shapes}", "--sigmas", "1,2"], 2,
     ["argument --sigmas: sigmas must be non-increasing", "e.g. 10,1,0.1"]),
    ("sample --sigmas negative", ["sample", "red", "--model", "{shapes}", "--sigmas", "1,-1"], 2,
     ["finite and ≥ 0 (0 is the data level)"]),
    ("sample --sigmas text", ["sample", "red", "--model", "{shapes}", "--sigmas", "big,small"], 2,
     ["numbers separated by commas"]),
    ("sample --guidance-scale -1", ["sample", "red", "--model", "{shapes}", "--guidance-scale",
                                    "-1"], 2, ["argument --guidance-scale: must be a finite"]),
    ("sample --threads 0", ["sample", "red", "--model", "{shapes}", "--threads", "0"], 2,
     ["argument --threads: must be an integer ≥ 1"]),
    ("sample --device", ["sample", "red", "--model", "{shapes}", "--out", "{tmp}/g.png",
                         "--device", "gpu9"], 2, ["--device gpu9: not a device name"]),
    ("sample --sampler", ["sample", "red", "--model", "{shapes}", "--sampler", "gibbs"], 2,
     ["argument --sampler: invalid choice: 'gibbs'"]),
    ("sample without --model", ["sample", "red"], 2,
     ["the following arguments are required: --model"]),
    ("sample missing model", ["sample", "red", "--model", "{tmp}/nope", "--out", "{tmp}/g.png"],
     2, ["CheckpointError", "no such checkpoint or run directory"]),
    ("sample truncated weights", ["sample", "red", "--model", "{truncated}", "--out",
                                  "{tmp}/g.png"], 2,
     ["CheckpointError", "model.safetensors: 1000 bytes, expected", "truncated or altered"]),
    ("sample altered weights", ["sample", "red", "--model", "{altered}", "--out", "{tmp}/g.png"],
     2, ["CheckpointError", "model.safetensors: SHA-256 mismatch"]),
    ("sample truncated config", ["sample", "red", "--model", "{garbled}", "--out", "{tmp}/g.png"],
     2, ["CheckpointError", "config.json: not valid JSON", "truncated or corrupted"]),
    ("sample a weights file as the model", ["sample", "red", "--model",
                                            "{truncated}/model.safetensors", "--out",
                                            "{tmp}/g.png"], 2, ["CheckpointError", "is a file"]),
    ("sample wrong number of arguments", ["sample", "at(0.3)", "--model", "{scenes}", "--out",
                                          "{tmp}/g.png"], 2,
     ["wrong arguments at line 1, column 1: `at` takes 2 arguments, got 1 in `at(0.3)`"]),
    ("sample too many arguments", ["sample", "at(0.1, 0.2) & at(0.3, 0.4, 0.5)", "--model",
                                   "{scenes}", "--out", "{tmp}/g.png"], 2,
     ["line 1, column 16: `at` takes 2 arguments, got 3"]),
    ("sample parametric without arguments", ["sample", "at", "--model", "{scenes}", "--out",
                                             "{tmp}/g.png"], 2,
     ["`at` is parametric: give its arguments (2 numbers), e.g. `at(0.5, 0.5)`"]),
    ("sample arguments to a plain concept", ["sample", "red(1)", "--model", "{shapes}", "--out",
                                             "{tmp}/g.png"], 2,
     ["`color=red` takes no arguments; write `color=red`"]),
    ("sample unknown concept", ["sample", "rde", "--model", "{shapes}", "--out", "{tmp}/g.png"],
     1, ["unknown concept `rde`; did you mean `red`?"]),
    ("sample syntax", ["sample", "red &", "--model", "{shapes}", "--out", "{tmp}/g.png"], 2,
     ["syntax error at line 1, column"]),
    ("sample a body on a plain concept", ["sample", "red[circle]", "--model", "{shapes}",
                                          "--out", "{tmp}/g.png"], 2,
     ["line 1, column 4", "`red` names no place, so it takes no body"]),
    ("sample a binding nested", ["sample", "at(0.3, 0.3)[at(0.5, 0.5)[red]]", "--model",
                                 "{scenes}", "--out", "{tmp}/g.png"], 2,
     ["a binding cannot hold another binding"]),
    ("sample a binding where nothing binds", ["sample", "at(0.3, 0.3)[red]", "--model",
                                              "{shapes}", "--semantics", "logic", "--out",
                                              "{tmp}/g.png"], 1, ["unknown concept `at`"]),
    ("sample a binding under guidance", ["sample", "at(0.3, 0.3)[red]", "--model", "{scenes}",
                                         "--semantics", "guidance", "--out", "{tmp}/g.png"], 1,
     ["composes under semantics='logic' only"]),
    ("sample guidance on product", ["sample", "red", "--model", "{shapes}", "--out", "{tmp}/g.png",
                                    "--semantics", "product", "--guidance-scale", "2"], 1,
     ["guidance_scale applies to semantics='guidance'"]),
    # --- train -----------------------------------------------------------------------------
    ("train --steps -1", ["train", "--data", "shapes", "--out", "{tmp}/run", "--steps", "-1"], 2,
     ["argument --steps: must be an integer ≥ 1, got '-1'"]),
    ("train --threads 0", ["train", "--data", "toy2d", "--out", "{tmp}/run", "--threads", "0"], 2,
     ["argument --threads: must be an integer ≥ 1, got '0'"]),
    ("train --n 0", ["train", "--data", "toy2d", "--out", "{tmp}/run", "--n", "0"], 2,
     ["argument --n/--num-samples: must be an integer ≥ 1"]),
    ("train --lr 0", ["train", "--data", "toy2d", "--out", "{tmp}/run", "--lr", "0"], 2,
     ["argument --lr: must be a finite number > 0"]),
    ("train --checkpoint-every 0", ["train", "--data", "toy2d", "--out", "{tmp}/run",
                                    "--checkpoint-every", "0"], 2,
     ["argument --checkpoint-every: must be an integer ≥ 1"]),
    ("train --keep 0", ["train", "--data", "toy2d", "--out", "{tmp}/run", "--keep", "0"], 2,
     ["argument --keep: must be an integer ≥ 1"]),
    ("train folder missing root", ["train", "--data", "folder", "--root", "{tmp}/missing",
                                   "--out", "{tmp}/run"], 2,
     ["--root", "missing: no such folder; --root takes the image folder"]),
    ("train folder without root", ["train", "--data", "folder", "--out", "{tmp}/run"], 2,
     ["--root is required: the image folder"]),
    ("train celeba root is a file", ["train", "--data", "celeba", "--root", "{tmp}/file",
                                     "--out", "{tmp}/run"], 2,
     ["is a file; --root takes the CelebA folder"]),
    ("train folder missing csv", ["train", "--data", "folder", "--root", "{tmp}", "--csv",
                                  "{tmp}/none.csv", "--out", "{tmp}/run"], 2,
     ["--csv", "none.csv: no such file"]),
    ("train folder without attributes.csv", ["train", "--data", "folder", "--root", "{tmp}",
                                             "--out", "{tmp}/run"], 2,
     ["attribute file not found", "check --root and --csv"]),
    ("train --root with built-in data", ["train", "--data", "toy2d", "--root", "{tmp}", "--out",
                                         "{tmp}/run"], 2,
     ["--root applies to --data celeba or folder"]),
    ("train --out is a file", ["train", "--data", "toy2d", "--out", "{tmp}/file"], 2,
     ["is a file; give a folder (it will hold the checkpoints"]),
    ("train --out under a file", ["train", "--data", "toy2d", "--out", "{tmp}/file/run"], 2,
     ["is a file, so the folder cannot be created there; choose another --out"]),
    ("train over another run", ["train", "--data", "toy2d", "--out", "{tmp}/oldrun"], 2,
     ["already holds a training run; add --resume"]),
    ("train --holdout unknown colour", ["train", "--data", "shapes", "--out", "{tmp}/run",
                                        "--holdout", "circle:purple"], 2,
     ["--holdout: holdout pair ('circle', 'purple')"]),
    ("train --holdout syntax", ["train", "--data", "shapes", "--out", "{tmp}/run", "--holdout",
                                "circle-red"], 2, ["argument --holdout: takes 'default'"]),
    ("train --holdout other data", ["train", "--data", "toy2d", "--out", "{tmp}/run",
                                    "--holdout", "circle:red"], 2,
     ["--holdout applies to --data shapes or scenes, not toy2d"]),
    ("train dsm --heads", ["train", "--data", "toy2d", "--out", "{tmp}/run", "--objective", "dsm",
                           "--heads", "linear"], 2, ["--heads linear applies to --objective cd"]),
    ("train dsm --views", ["train", "--data", "shapes", "--out", "{tmp}/run", "--objective",
                           "dsm", "--views", "shape=colour-blind"], 2,
     ["--views with --objective dsm need --heads classifier"]),
    ("train score with cd", ["train", "--data", "toy2d", "--out", "{tmp}/run",
                             "--parameterization", "score"], 2,
     ["--parameterization score needs --objective dsm"]),
    ("train --device", ["train", "--data", "toy2d", "--out", "{tmp}/run", "--device", "gpu9"], 2,
     ["--device gpu9: not a device name"]),
    ("train --data", ["train", "--data", "mnist", "--out", "{tmp}/run"], 2,
     ["argument --data: invalid choice: 'mnist'"]),
    # --- export ----------------------------------------------------------------------------
    ("export missing run", ["export", "{tmp}/nope", "{tmp}/m"], 2,
     ["CheckpointError", "no such checkpoint or run directory"]),
    ("export --init-bank -1", ["export", "{toy}", "{tmp}/m", "--init-bank", "-1"], 2,
     ["argument --init-bank: must be an integer ≥ 0"]),
    ("export --set without =", ["export", "{toy}", "{tmp}/m", "--set", "steps"], 2,
     ["argument --set: expected KEY=VALUE, got 'steps'"]),
    ("export --set unknown key", ["export", "{toy}", "{tmp}/m", "--set", "stepsize=3"], 2,
     ["stepsize"]),
    ("export over a training run", ["export", "{toy}", "{toy}"], 2,
     ["is the run itself"]),
    ("export into another training run", ["export", "{shapes}", "{toy}"], 2,
     ["holds a training run (checkpoints with optimiser state)"]),
    ("export to a file", ["export", "{toy}", "{tmp}/file"], 2,
     ["OUT", "file: is a file; give a folder (it will hold the exported model)"]),
    # --- evaluate --------------------------------------------------------------------------
    ("evaluate --n 0", ["evaluate", "--model", "{shapes}", "--expr", "red", "--n", "0"], 2,
     ["argument --n: must be an integer ≥ 1"]),
    ("evaluate --step-size -1", ["evaluate", "--model", "{shapes}", "--expr", "red",
                                 "--step-size", "-1"], 2, ["argument --step-size: must be a"]),
    ("evaluate --guidance-scale 0", ["evaluate", "--model", "{shapes}", "--expr", "red",
                                     "--guidance-scale", "0"], 2,
     ["argument --guidance-scale: must be a finite number > 0"]),
    ("evaluate --json missing folder", ["evaluate", "--model", "{shapes}", "--expr", "red",
                                        "--json", "{tmp}/missing/r.json"], 2,
     ["--json", "does not exist; create it first"]),
    ("evaluate --grid not a picture", ["evaluate", "--model", "{shapes}", "--expr", "red",
                                       "--grid", "{tmp}/g.csv"], 2,
     ["--grid", "must end in a picture format"]),
    ("evaluate a toy2d model", ["evaluate", "--model", "{toy}", "--expr", "ring"], 2,
     ["no evaluator for a model trained on 'toy2d' data"]),
    ("evaluate unknown concept", ["evaluate", "--model", "{shapes}", "--expr", "red",
                                  "--expr", "rde"], 1, ["unknown concept `rde`"]),
    ("evaluate syntax", ["evaluate", "--model", "{shapes}", "--expr", "red &"], 2,
     ["syntax error"]),
    ("evaluate --threads 0", ["evaluate", "--model", "{shapes}", "--expr", "red", "--threads",
                              "0"], 2, ["argument --threads: must be an integer ≥ 1"]),
    ("evaluate missing model", ["evaluate", "--model", "{tmp}/nope", "--expr", "red"], 2,
     ["CheckpointError"]),
    ("evaluate truncated weights", ["evaluate", "--model", "{truncated}", "--expr", "red"], 2,
     ["CheckpointError", "truncated or altered"]),
    ("evaluate deeply nested config", ["evaluate", "--model", "{nested}", "--expr", "red"], 2,
     ["CheckpointError", "config.json: not valid JSON (RecursionError"]),
    ("evaluate wrong number of arguments", ["evaluate", "--model", "{scenes}", "--expr",
                                            "at(0.3, 0.3)", "--expr", "at(0.3)"], 2,
     ["wrong arguments at line 1, column 1: `at` takes 2 arguments, got 1"]),
    # --- extrapolate -----------------------------------------------------------------------
    ("extrapolate --factors one", ["extrapolate", "--model", "{shapes}", "--factors", "shape"], 2,
     ["--factors takes two factor names like 'shape,color', got 'shape'"]),
    ("extrapolate unknown factor", ["extrapolate", "--model", "{shapes}", "--factors",
                                    "shape,texture", "--out", "{tmp}/m.png"], 2,
     ["the model has no factor(s) 'texture'; its factors are shape, color, size"]),
    ("extrapolate --holdout unknown", ["extrapolate", "--model", "{shapes}", "--holdout",
                                       "circle:purple"], 2, ["--holdout: holdout pair"]),
    ("extrapolate --out missing folder", ["extrapolate", "--model", "{shapes}", "--out",
                                          "{tmp}/missing/m.png"], 2,
     ["--out", "does not exist; create it first"]),
    ("extrapolate --csv missing folder", ["extrapolate", "--model", "{shapes}", "--out",
                                          "{tmp}/m.png", "--csv", "{tmp}/missing/m.csv"], 2,
     ["--csv", "does not exist"]),
    ("extrapolate --n x", ["extrapolate", "--model", "{shapes}", "--n", "x"], 2,
     ["argument --n: expected an integer ≥ 1, got 'x'"]),
    # --- infer -----------------------------------------------------------------------------
    ("infer missing model", ["infer", "--model", "{tmp}/nope", "{tmp}/small.png"], 2,
     ["CheckpointError", "no such checkpoint or run directory"]),
    ("infer truncated weights", ["infer", "--model", "{truncated}", "{tmp}/small.png"], 2,
     ["CheckpointError", "truncated or altered"]),
    ("infer altered weights", ["infer", "--model", "{altered}", "{tmp}/small.png"], 2,
     ["CheckpointError", "SHA-256 mismatch"]),
    ("infer truncated config", ["infer", "--model", "{garbled}", "{tmp}/small.png"], 2,
     ["CheckpointError", "not valid JSON"]),
    ("infer deeply nested config", ["infer", "--model", "{nested}", "{tmp}/small.png"], 2,
     ["CheckpointError", "RecursionError"]),
    ("infer latest is a folder", ["infer", "--model", "{pointer}", "{tmp}/small.png"], 2,
     ["CheckpointError", "not a valid 'latest' pointer"]),
    ("infer truncated safetensors", ["infer", "--model", "{shapes}", "{tmp}/cut.safetensors"], 2,
     ["cannot read IMAGE", "cut.safetensors", "truncated or corrupt"]),
    ("infer corrupt npz", ["infer", "--model", "{shapes}", "{tmp}/bad.npz"], 2,
     ["cannot read IMAGE", "bad.npz"]),
    ("infer without --model", ["infer", "{tmp}/small.png"], 2,
     ["the following arguments are required: --model"]),
    ("infer missing image", ["infer", "--model", "{shapes}", "{tmp}/nope.png"], 2,
     ["IMAGE", "nope.png: no such file; IMAGE takes picture files (.png, .jpg)"]),
    ("infer wrong image size", ["infer", "--model", "{shapes}", "{tmp}/small.png"], 2,
     ["small.png is 3×16×16 (channels×height×width); the model takes 3×32×32 images"]),
    ("infer unknown factor", ["infer", "--model", "{shapes}", "{tmp}/small.png", "--factors",
                              "shape,texture"], 2,
     ["the model has no factor(s) 'texture'; its factors are shape, color, size"]),
    ("infer --factors empty", ["infer", "--model", "{shapes}", "{tmp}/small.png", "--factors",
                               ","], 2, ["--factors takes factor names separated by commas"]),
    ("infer unknown kind of file", ["infer", "--model", "{shapes}", "{tmp}/file"], 2,
     ["file: cannot tell its kind from its name"]),
    ("infer two tensor files", ["infer", "--model", "{shapes}", "{tmp}/a.pt", "{tmp}/a.pt"], 2,
     ["give one tensor file, or picture files"]),
    ("infer damaged picture", ["infer", "--model", "{shapes}", "{tmp}/bad.png"], 2,
     ["cannot read IMAGE", "bad.png"]),
    ("infer --csv not csv", ["infer", "--model", "{shapes}", "{tmp}/small.png", "--csv",
                             "{tmp}/t.txt"], 2, ["--csv", "must end in .csv"]),
    ("infer --samples 0", ["infer", "--model", "{shapes}", "{tmp}/small.png", "--samples", "0"],
     2, ["argument --samples: must be an integer ≥ 1"]),
    ("infer --sigma text", ["infer", "--model", "{shapes}", "{tmp}/small.png", "--sigma", "x"],
     2, ["argument --sigma: takes numbers separated by commas"]),
    ("infer --sigma for a cd model", ["infer", "--model", "{toy}", "{tmp}/points.pt", "--sigma",
                                      "0.1"], 2,
     ["--sigma applies to diffusion models (--objective dsm)"]),
    # --- explain, parse, the command itself ------------------------------------------------
    ("explain syntax", ["explain", "red & & blue"], 2, ["syntax error"]),
    ("explain --or-temperature 0", ["explain", "a | b", "--or-temperature", "0"], 2,
     ["argument --or-temperature: must be a finite number > 0"]),
    ("explain --guidance-scale -1", ["explain", "a", "--guidance-scale", "-1"], 2,
     ["argument --guidance-scale: must be a finite"]),
    ("explain --semantics", ["explain", "a", "--semantics", "fuzzy"], 2,
     ["argument --semantics: invalid choice"]),
    ("explain missing model", ["explain", "a", "--model", "{tmp}/nope"], 2, ["CheckpointError"]),
    ("explain wrong number of arguments", ["explain", "at(0.3)", "--model", "{scenes}"], 2,
     ["wrong arguments at line 1, column 1: `at` takes 2 arguments, got 1"]),
    ("parse syntax", ["parse", "a b"], 2,
     ["syntax error", "Missing operator between 'a' and 'b'"]),
    ("no command", [], 2, ["the following arguments are required: COMMAND"]),
    ("unknown command", ["smaple"], 2, ["argument COMMAND: invalid choice: 'smaple'"]),
]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> str:
    """A toy2d training run of 2 steps (a run directory with optimiser state)."""
    from conceptalg.training import Trainer, builtin_data, default_train_config

    data = builtin_data("toy2d", n=160)
    trainer = Trainer(data, config=default_train_config((2,), steps=2, batch_size=16,
                                                        langevin_steps=2))
    trainer.fit()
    out = tmp_path_factory.mktemp("toy") / "run"
    trainer.save(out)
    return str(out)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, str]:
    """Copies of the shipped shapes checkpoint, each damaged one way: ``truncated`` (weights cut
    to 1000 bytes), ``altered`` (weights overwritten, same size), ``garbled`` (config.json cut
    short), ``nested`` (config.json nested past the JSON parser's recursion limit) and
    ``pointer`` (a run directory whose ``latest`` is a folder)."""
    import shutil

    root = tmp_path_factory.mktemp("damaged")
    source = next(Path(SHAPES).glob("ckpt-*"))
    out = {}
    for name in ("truncated", "altered", "garbled", "nested"):
        out[name] = root / name
        shutil.copytree(source, out[name])
    weights = out["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    weights = out["altered"] / "model.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))
    config = out["garbled"] / "config.json"
    config.write_bytes(config.read_bytes()[:500])
    (out["nested"] / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    out["pointer"] = root / "pointer"
    shutil.copytree(source, out["pointer"] / source.name)
    (out["pointer"] / "latest").mkdir()
    return {k: str(v) for k, v in out.items()}


@pytest.fixture
def no_work(monkeypatch):
    """Sampling and data making fail the test: every error must come before them."""
    import conceptalg.data.attributes as attributes
    import conceptalg.inference as inference
    import conceptalg.training as training

    def work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setitem(conceptalg.__dict__, "sample", work)
    monkeypatch.setattr(training, "builtin_data", work)
    monkeypatch.setattr(attributes, "load_celeba", work)
    monkeypatch.setattr(attributes.AttributeImageDataset, "__getitem__", work)
    monkeypatch.setattr(inference, "infer", work)


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return e.code


@pytest.mark.parametrize("argv, code, texts", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_call_ends_with_one_line(argv, code, texts, toy, damaged, tmp_path, no_work,
                                     capsys):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "oldrun").mkdir()
    (tmp_path / "oldrun" / "latest").write_text('{"checkpoint": "ckpt-000001", "step": 1}')
    matplotlib.image.imsave(tmp_path / "small.png", np.zeros((16, 16, 3)))  # shapes are 32×32
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    (tmp_path / "a.pt").write_bytes(b"")
    from safetensors.torch import save

    (tmp_path / "cut.safetensors").write_bytes(save({"images": __import__("torch").zeros(
        2, 3, 32, 32)})[:300])
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    __import__("torch").save(__import__("torch").zeros(2, 2), tmp_path / "points.pt")
    argv = [a.format(shapes=SHAPES, scenes=SCENES, toy=toy, tmp=tmp_path, **damaged)
            for a in argv]
    known = argv and argv[0] in SUBCOMMANDS
    assert run(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(f"conceptalg {argv[0]}: " if known else "conceptalg: "), err
    first, *context = err.rstrip("\n").split("\n")
    assert all(line.startswith("  ") for line in context), err  # e.g. the text and a caret
    for text in texts:
        assert text in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "m").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", [["sample", "red", "--model", SHAPES],
                                     ["train", "--data", "toy2d", "--out", "{tmp}/run"],
                                     ["evaluate", "--model", SHAPES, "--expr", "red"]],
                         ids=["sample", "train", "evaluate"])
def test_cuda_on_a_machine_without_it(command, tmp_path, no_work, capsys):
    argv = [a.format(tmp=tmp_path) for a in command] + ["--device", "cuda"]
    assert run(argv) == 2
    assert capsys.readouterr().err == (f"conceptalg {command[0]}: --device cuda: CUDA is not "
                                       f"available on this machine; use --device cpu\n")


def test_every_subcommand_has_bad_calls_in_the_table():
    from conceptalg.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(SUBCOMMANDS)
    assert set(SUBCOMMANDS) <= {c[1][0] for c in CASES if c[1]}


# The same errors from the installed command, in a fresh interpreter (no in-process catching).
SUBPROCESS_CASES = [
    ("sample --out missing folder", ["sample", "red", "--model", SHAPES, "--n", "4", "--out",
                                     "{tmp}/missing/g.png"], "conceptalg sample: --out"),
    ("train folder missing root", ["train", "--data", "folder", "--root", "{tmp}/missing",
                                   "--out", "{tmp}/run"], "conceptalg train: --root"),
    ("sample --n 0", ["sample", "red", "--model", SHAPES, "--n", "0"],
     "conceptalg sample: argument --n/--num-samples"),
    ("sample missing model", ["sample", "red", "--model", "{tmp}/nope", "--out", "{tmp}/g.png"],
     "conceptalg sample: CheckpointError: "),
]


@pytest.mark.parametrize("argv, start", [c[1:] for c in SUBPROCESS_CASES],
                         ids=[c[0] for c in SUBPROCESS_CASES])
def test_bad_call_from_the_command_line(argv, start, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    done = subprocess.run([sys.executable, "-m", "conceptalg", *argv], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(start) and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""
