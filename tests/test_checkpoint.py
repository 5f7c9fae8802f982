"""Durable checkpoints: round trips, exact resume, the `latest` pointer, retention, every error
path naming its file, no unpickling, kill -9 at random moments, RNG state helpers."""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import conceptalg
from conceptalg.errors import CheckpointError
from conceptalg.models.model import ConceptModel, ModelConfig
from conceptalg.training import checkpoint as ck
from conceptalg.training.checkpoint import (Checkpoint, latest_checkpoint, list_checkpoints, load,
                                            load_checkpoint, restore_rng_state, rng_state_tensors,
                                            save_checkpoint)

DEAD_PID = 2 ** 22 + 7  # above Linux's largest possible pid_max: never a live process


def small_config(**changes) -> ModelConfig:
    options = dict(sample_shape=(2,), factors={"side": ["left", "right"]}, backbone="mlp",
                   backbone_options={"hidden": [16, 16]}, bounds=None)
    return ModelConfig(**{**options, **changes})


def trained(steps: int = 3, seed: int = 0):
    """A small model and an Adam optimiser (β1 = 0, as in CD training) after a few steps."""
    torch.manual_seed(seed)
    model = ConceptModel(small_config())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.0, 0.999))
    for _ in range(steps):
        adam_step(model, opt, torch.randn(16, 2))
    return model, opt


def adam_step(model, opt, x):
    opt.zero_grad()
    (model(x) ** 2).mean().backward()
    opt.step()


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def saved(tmp_path):
    """A run directory with two checkpoints (steps 3 and 4); returns (run_dir, model, opt)."""
    model, opt = trained()
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir, 3, model=model, optimizer=opt)
    base = torch.arange(12.0).reshape(3, 4)
    save_checkpoint(run_dir, 4, model=model, optimizer=opt,
                    tensors={"buffer": base, "view": base[:, 1:].T, "ints": torch.arange(5)},
                    metadata={"concepts": ["side=left"], "lr": 1e-2, "step": 4})
    return run_dir, model, opt


# --- round trips ------------------------------------------------------------------------------

def test_round_trip_restores_weights_config_metadata_and_tensors(saved):
    run_dir, model, _ = saved
    ckpt = load_checkpoint(run_dir)
    assert isinstance(ckpt, Checkpoint) and ckpt.step == 4 and ckpt.path.name == "ckpt-000004"
    assert same_weights(ckpt.model, model) and not ckpt.model.training
    assert ckpt.model_config == model.config
    assert ckpt.metadata == {"concepts": ["side=left"], "lr": 1e-2, "step": 4}
    base = torch.arange(12.0).reshape(3, 4)
    assert ckpt.tensors.keys() == {"buffer", "view", "ints"}
    assert torch.equal(ckpt.tensors["buffer"], base)
    assert torch.equal(ckpt.tensors["view"], base[:, 1:].T)  # shared storage, non-contiguous
    assert ckpt.tensors["ints"].dtype == torch.int64


def test_model_config_with_tuples_comes_back_equal(tmp_path):
    cfg = small_config(backbone_options={"hidden": (16, 16)}, bounds=(-1.0, 1.0))
    save_checkpoint(tmp_path, 0, model=ConceptModel(cfg))
    loaded = load_checkpoint(tmp_path).model_config
    assert loaded == cfg and loaded.backbone_options == {"hidden": (16, 16)}
    assert loaded.sample_shape == (2,) and loaded.bounds == (-1.0, 1.0)


def test_resume_is_bitwise_identical_to_continuing(saved):
    run_dir, model, opt = saved
    ckpt = load_checkpoint(run_dir / "ckpt-000003")
    resumed = ckpt.model.train()
    resumed_opt = torch.optim.Adam(resumed.parameters(), lr=0.5, betas=(0.9, 0.9))
    ckpt.load_optimizer_state(resumed_opt)
    before, after = opt.state_dict(), resumed_opt.state_dict()
    assert before["param_groups"] == after["param_groups"]  # betas is a tuple again
    for i, state in before["state"].items():
        assert all(torch.equal(v, after["state"][i][k]) for k, v in state.items())
    x = torch.randn(16, 2)
    for _ in range(2):
        adam_step(model, opt, x)
        adam_step(resumed, resumed_opt, x)
    assert same_weights(model, resumed)


def test_load_accepts_run_dir_and_checkpoint_dir(saved):
    run_dir, model, _ = saved
    for path in (run_dir, run_dir / "ckpt-000004", str(run_dir / "ckpt-000003")):
        loaded = load(path)
        assert isinstance(loaded, ConceptModel) and same_weights(loaded, model)
    assert conceptalg.load is load


def test_latest_names_the_checkpoint_written_last(tmp_path):
    model, _ = trained(steps=0)
    assert latest_checkpoint(tmp_path) is None
    for step in (10, 20, 5):  # 5: a run resumed from an earlier checkpoint
        path = save_checkpoint(tmp_path, step, model=model, metadata={"step": step})
        assert latest_checkpoint(tmp_path) == path == tmp_path / f"ckpt-{step:06d}"
        assert json.loads((tmp_path / "latest").read_text())["checkpoint"] == path.name
        assert load_checkpoint(tmp_path).metadata == {"step": step}
    assert [p.name for p in list_checkpoints(tmp_path)] == \
        ["ckpt-000005", "ckpt-000010", "ckpt-000020"]


def test_saving_an_existing_step_replaces_it_and_leaves_nothing_behind(tmp_path):
    first, _ = trained(seed=1)
    second, _ = trained(seed=2)
    save_checkpoint(tmp_path, 7, model=first)
    save_checkpoint(tmp_path, 7, model=second)
    assert same_weights(load(tmp_path), second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000007", "latest"]


def test_retention_deletes_oldest_but_never_latest(tmp_path):
    model, _ = trained(steps=0)
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model=model, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000004", "ckpt-000005"]
    save_checkpoint(tmp_path, 3, model=model, keep=2)  # resumed from step 3: latest is oldest
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000003", "ckpt-000005"]
    assert latest_checkpoint(tmp_path).name == "ckpt-000003"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("bad", [
    dict(step=-1), dict(step=1.0), dict(step=True), dict(keep=0), dict(metadata={"f": print}),
    dict(tensors={"": torch.zeros(1)}), dict(tensors={"x": [1.0]}),
], ids=["negative step", "float step", "bool step", "keep 0", "metadata not JSON",
        "empty tensor name", "not a tensor"])
def test_save_rejects_bad_arguments_before_writing(tmp_path, bad):
    args = {"step": 1, "model": ConceptModel(small_config()), **bad}
    with pytest.raises((ValueError, TypeError)):
        save_checkpoint(tmp_path / "run", **args)
    assert not list_checkpoints(tmp_path / "run")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                   torch.int64, torch.int32, torch.uint8, torch.bool])
def test_extra_tensors_keep_dtype_shape_and_values(tmp_path, dtype):
    base = (torch.randn(4, 6) * 10).to(dtype)
    tensors = {"base": base, "slice": base[1:3, ::2], "transposed": base.T, "scalar": base[0, 0],
               "empty": base[:0]}
    save_checkpoint(tmp_path, 1, model=ConceptModel(small_config()), tensors=tensors)
    loaded = load_checkpoint(tmp_path).tensors
    for name, t in tensors.items():
        assert loaded[name].dtype == dtype and torch.equal(loaded[name], t), name


nested = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.text(max_size=5)
    | st.floats(allow_nan=False) | st.builds(lambda n: torch.randn(n), st.integers(0, 3)),
    lambda children: st.lists(children, max_size=3) | st.tuples(children, children)
    | st.dictionaries(st.integers(0, 5) | st.text(max_size=4), children, max_size=3),
    max_leaves=12)


def assert_same_structure(a, b):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_structure(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same_structure(a[k], b[k])
    else:
        assert a == b


@settings(max_examples=60, deadline=None)
@given(nested)
def test_optimizer_state_encoding_round_trips_through_json_and_safetensors(obj):
    flat = {}
    text = json.dumps(ck._encode(obj, "", flat))
    assert_same_structure(ck._decode(json.loads(text), st_load(st_save(flat))), obj)


# --- no pickle ----------------------------------------------------------------------------------

def test_loading_never_unpickles(saved, monkeypatch):
    run_dir, model, _ = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load must not unpickle")

    class NoUnpickler:
        def __init__(self, *args, **kwargs):
            forbidden()

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", NoUnpickler)
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    ckpt = load_checkpoint(run_dir)
    ckpt.load_optimizer_state(torch.optim.Adam(ckpt.model.parameters()))
    assert same_weights(load(run_dir), model)


# --- error paths: each raises CheckpointError naming the file ------------------------------------

def rewrite_config(ckpt_dir: Path, change) -> None:
    """Edit config.json and re-seal it (a consistent file that is wrong in one way)."""
    path = ckpt_dir / "config.json"
    manifest = json.loads(path.read_text())
    manifest.pop("config_sha256")
    change(manifest)
    manifest["config_sha256"] = ck._canonical_sha256(manifest)
    path.write_text(json.dumps(manifest))


def flip_byte(path: Path, offset: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def wrong_shape_checkpoint(run_dir: Path) -> None:
    model = ConceptModel(small_config())
    model.energy = torch.nn.Linear(16, 5)  # the config has 2 concepts + base = 3 rows
    save_checkpoint(run_dir, 9, model=model)


C = "ckpt-000004"
ERROR_CASES = [
    # id, how to break the run directory, path to load (relative), text the message names
    ("missing directory", lambda r: None, "nowhere", "nowhere"),
    ("missing latest", lambda r: (r / "latest").unlink(), ".", "latest"),
    ("latest not JSON", lambda r: (r / "latest").write_text("ckpt-0000"), ".", "latest"),
    ("latest names a missing dir",
     lambda r: (r / "latest").write_text('{"checkpoint": "ckpt-000099"}'), ".", "ckpt-000099"),
    ("latest escapes the run dir",
     lambda r: (r / "latest").write_text('{"checkpoint": "../x"}'), ".", "latest"),
    ("missing model.safetensors", lambda r: (r / C / "model.safetensors").unlink(), ".",
     "model.safetensors"),
    ("truncated model.safetensors", lambda r: truncate(r / C / "model.safetensors"), C,
     "model.safetensors"),
    ("altered state.safetensors", lambda r: flip_byte(r / C / "state.safetensors"), ".",
     "state.safetensors"),
    ("altered optimizer.safetensors", lambda r: flip_byte(r / C / "optimizer.safetensors", 100),
     ".", "optimizer.safetensors"),
    ("missing config.json", lambda r: (r / C / "config.json").unlink(), C, "config.json"),
    ("config.json not JSON", lambda r: truncate(r / C / "config.json"), ".", "config.json"),
    ("config.json altered value",
     lambda r: (r / C / "config.json").write_text(
         (r / C / "config.json").read_text().replace('"lr": 0.01', '"lr": 0.02')),
     ".", "config.json"),
    ("config.json wrong version",
     lambda r: rewrite_config(r / C, lambda m: m.update(version=2)), ".", "config.json"),
    ("config.json not a checkpoint", lambda r: (r / C / "config.json").write_text("{}"), ".",
     "config.json"),
    ("config does not rebuild",
     lambda r: rewrite_config(r / C, lambda m: m["model_config"].update(heads="bogus")), ".",
     "config.json"),
    ("size recorded wrongly",
     lambda r: rewrite_config(r / C, lambda m: m["files"]["model.safetensors"].update(size=1)),
     ".", "model.safetensors"),
    ("weight of the wrong shape", wrong_shape_checkpoint, ".", "model.safetensors"),
    ("a file, not a directory", lambda r: None, f"{C}/model.safetensors", "model.safetensors"),
    ("empty directory", lambda r: (r / "empty").mkdir(), "empty", "latest"),
]


@pytest.mark.parametrize("loader", [load, load_checkpoint], ids=["load", "load_checkpoint"])
@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_broken_checkpoints_raise_checkpoint_error_naming_the_file(saved, case, loader):
    name, damage, target, named = case
    run_dir = saved[0]
    damage(run_dir)
    with pytest.raises(CheckpointError) as info:
        loader(run_dir / target)
    message = str(info.value)
    assert named in message, message
    assert isinstance(info.value, ValueError)
    if name == "config.json wrong version":
        assert "version 2" in message and "reads version 1" in message
    if name == "weight of the wrong shape":
        assert "energy.weight has shape [5, 16], the config needs [3, 16]" in message
    if name == "missing latest":
        assert "ckpt-000004" in message  # says which checkpoint to load instead
    if "altered" in name or "truncated" in name:
        assert "ckpt-000003" in message  # points at an earlier checkpoint


def test_optimizer_state_errors_name_the_file(tmp_path, saved):
    model, _ = trained(steps=0)
    save_checkpoint(tmp_path, 0, model=model)
    with pytest.raises(CheckpointError, match="optimizer.safetensors.*no optimiser state"):
        load_checkpoint(tmp_path).load_optimizer_state(torch.optim.Adam(model.parameters()))
    ckpt = load_checkpoint(saved[0])
    with pytest.raises(CheckpointError, match="optimizer.safetensors.*Adam.*SGD"):
        ckpt.load_optimizer_state(torch.optim.SGD(ckpt.model.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match="optimizer.safetensors.*does not fit"):
        ckpt.load_optimizer_state(torch.optim.Adam(list(ckpt.model.parameters())[:2]))
    flip_byte(ckpt.path / "optimizer.safetensors", 100)  # changed after load_checkpoint
    with pytest.raises(CheckpointError, match="optimizer.safetensors: SHA-256 mismatch"):
        ckpt.load_optimizer_state(torch.optim.Adam(ckpt.model.parameters()))


# --- crashes --------------------------------------------------------------------------------------

def test_leftovers_of_dead_writers_are_ignored_and_cleaned(tmp_path):
    model, _ = trained(steps=0)
    save_checkpoint(tmp_path, 1, model=model)
    junk = tmp_path / f".tmp-ckpt-000002-{DEAD_PID}"
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(b"half a file")
    (tmp_path / f".tmp-latest-{DEAD_PID}").write_text("{")
    live = tmp_path / f".tmp-ckpt-000003-{os.getppid()}"  # a live writer's: left alone
    live.mkdir()
    assert load_checkpoint(tmp_path).step == 1
    save_checkpoint(tmp_path, 2, model=model)
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        sorted(["ckpt-000001", "ckpt-000002", "latest", live.name])


def test_latest_naming_a_temporary_copy_is_protected_then_cleaned(tmp_path):
    # The state a kill leaves in the middle of replacing a step that `latest` names.
    model, _ = trained(steps=0)
    save_checkpoint(tmp_path, 5, model=model)
    temp = tmp_path / f".tmp-ckpt-000005-{DEAD_PID}"
    os.rename(tmp_path / "ckpt-000005", temp)
    (tmp_path / "latest").write_text(json.dumps({"checkpoint": temp.name, "step": 5}))
    assert load_checkpoint(tmp_path).path == temp
    save_checkpoint(tmp_path, 6, model=model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000006", "latest"]


# A "zygote": one fresh interpreter imports torch once, then forks a writer per round, so each
# kill lands in a tight save loop instead of in the seconds an interpreter takes to import torch.
ZYGOTE = textwrap.dedent("""
    import os, sys, torch
    from conceptalg.models.model import ConceptModel, ModelConfig
    from conceptalg.training.checkpoint import rng_state_tensors, save_checkpoint

    def write_forever(run_dir, step):
        torch.manual_seed(step)
        model = ConceptModel(ModelConfig(sample_shape=(2,), factors={"side": ["left", "right"]},
                             backbone="mlp", backbone_options={"hidden": (16, 16)}, bounds=None))
        opt = torch.optim.Adam(model.parameters(), betas=(0.0, 0.999))
        buffer = torch.randn(8192, 2)
        for i in range(10 ** 9):
            (model(torch.randn(8, 2)) ** 2).mean().backward()
            opt.step()
            opt.zero_grad()
            save_checkpoint(run_dir, step, model=model, optimizer=opt, keep=3, metadata={"i": i},
                            tensors={"buffer": buffer, **rng_state_tensors()})
            step += i % 4 != 3  # every fourth save replaces the step just written

    # Warm up (the first Adam step takes seconds of lazy imports) before forking writers.
    model = ConceptModel(ModelConfig(sample_shape=(2,), factors={"side": ["left", "right"]},
                         backbone="mlp", backbone_options={"hidden": (16, 16)}, bounds=None))
    model(torch.zeros(1, 2)).sum().backward()
    torch.optim.Adam(model.parameters()).step()
    print("ready", flush=True)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                write_forever(sys.argv[1], int(line))
            finally:
                os._exit(1)
        print(pid, flush=True)
        os.waitpid(pid, 0)  # reap it, so the next save sees its pid as dead
        print("reaped", flush=True)
""")


def test_kill_9_at_random_moments_never_breaks_latest(tmp_path):
    if not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"):
        pytest.skip("needs fork and SIGKILL")
    script, run_dir = tmp_path / "zygote.py", tmp_path / "run"
    script.write_text(ZYGOTE)
    env = {**os.environ, "PYTHONPATH": str(Path(conceptalg.__file__).resolve().parents[1])}
    zygote = subprocess.Popen([sys.executable, str(script), str(run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env, text=True)
    rng, loaded_steps = random.Random(6), []
    try:
        assert zygote.stdout.readline().strip() == "ready"
        for k, delay in enumerate([0.0] + [rng.uniform(0.02, 0.5) for _ in range(4)]):
            zygote.stdin.write(f"{k * 1000}\n")
            zygote.stdin.flush()
            writer = int(zygote.stdout.readline())
            time.sleep(delay)
            os.kill(writer, signal.SIGKILL)
            assert zygote.stdout.readline().strip() == "reaped"
            try:
                ckpt = load_checkpoint(run_dir)
            except CheckpointError as e:
                assert "latest" in str(e) and not (run_dir / "latest").exists(), str(e)
                continue
            loaded_steps.append(ckpt.step)
            assert ckpt.tensors["buffer"].shape == (8192, 2)
            ckpt.load_optimizer_state(torch.optim.Adam(ckpt.model.parameters(),
                                                       betas=(0.0, 0.999)))
    finally:
        zygote.kill()
        zygote.wait()
        zygote.stdin.close()
        zygote.stdout.close()
    assert len(loaded_steps) >= 3, loaded_steps  # the kills did land among saves
    save_checkpoint(run_dir, 10 ** 6, model=ConceptModel(small_config()), keep=3)
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]
    assert load_checkpoint(run_dir).step == 10 ** 6
    assert len(list_checkpoints(run_dir)) == 3


# --- RNG states -----------------------------------------------------------------------------------

def draw_everything(generator):
    return (torch.rand(5).tolist(), random.random(), random.gauss(0, 1),
            np.random.rand(3).tolist(), np.random.randn(3).tolist(),
            torch.rand(5, generator=generator).tolist())


def test_rng_state_helpers_repeat_the_same_draws(tmp_path):
    generator = torch.Generator().manual_seed(11)
    random.gauss(0, 1), np.random.randn(1)  # leave cached Gaussians in both Mersenne Twisters
    state = rng_state_tensors(generator)
    assert state["rng.torch"].dtype == torch.uint8
    first = draw_everything(generator)
    restore_rng_state(state, generator)
    assert draw_everything(generator) == first
    save_checkpoint(tmp_path, 1, model=ConceptModel(small_config()),
                    tensors={"buffer": torch.zeros(3), **state})
    restore_rng_state(load_checkpoint(tmp_path).tensors, generator)  # other keys ignored
    assert draw_everything(generator) == first


def test_restore_rng_state_reports_missing_generator_state():
    with pytest.raises(CheckpointError, match="rng.generator"):
        restore_rng_state(rng_state_tensors(), torch.Generator())
