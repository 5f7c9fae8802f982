"""Multi-process training and sharded sampling with torch.distributed (gloo on CPU).

The multi-process tests start real processes with the environment torchrun gives them
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and run this very
file as the worker (``python tests/test_distributed.py SCENARIO DIR``); one test goes through
``torchrun`` itself. Every launch is bounded: the process group's timeout is short and the
launcher kills everything still running after ``LAUNCH_TIMEOUT`` seconds.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

LAUNCH_TIMEOUT = 150  # seconds for a whole multi-process launch (2 shared cores: be generous)
GROUP_TIMEOUT = 30    # seconds a process waits for the others


# --- shared by the test process and the workers ------------------------------------------

def tiny_data():
    from conceptalg.training import ConceptData

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(60, 2, generator=g) * 0.4 - 1.5,
                   torch.randn(60, 2, generator=g) * 0.4 + 1.5]).clamp(-3, 3)
    return ConceptData.from_labels(x, ["left"] * 60 + ["right"] * 60, bounds=(-3.0, 3.0))


def tiny_trainer(distributed=None, **overrides):
    from conceptalg.training import Trainer, default_train_config

    settings = dict(steps=6, batch_size=16, log_every=1, seed=0, buffer_size=192,
                    langevin_steps=5)
    settings.update(overrides)
    return Trainer(tiny_data(), config=default_train_config((2,), **settings),
                   backbone_options={"hidden": (16, 16)}, distributed=distributed)


def elementwise(x):
    return 0.5 * (x ** 2).sum(1)


def small_network():
    import conceptalg
    from conceptalg.models import ConceptModel, ModelConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ConceptModel(ModelConfig(sample_shape=(2,), factors={"side": ["left", "right"]},
                                         backbone="mlp", backbone_options={"hidden": (16, 16)},
                                         bounds=(-3.0, 3.0)))
    return conceptalg.compose("left & ~right", model)


def nan_outside(x):
    """N(0, I), but NaN beyond x₀ > 2: chains that get there are restarted (reset mode)."""
    return torch.where(x[:, 0] > 2.0, torch.nan, 0.5 * (x ** 2).sum(1))


# name -> (energy factory, sample() keywords); n = 7 splits unevenly over 2 processes
SAMPLE_CASES = {
    "langevin-elementwise": (lambda: elementwise, dict(
        n=7, shape=(2,), steps=30, step_size=0.05, seed=3)),
    "mala-adapting-with-info": (lambda: elementwise, dict(
        n=7, shape=(2,), sampler="mala", steps=40, warmup=20, seed=4, return_info=True)),
    "langevin-chunked": (lambda: elementwise, dict(
        n=9, shape=(2,), steps=20, step_size=0.05, seed=5, batch_size=2)),
    "reset-nonfinite": (lambda: nan_outside, dict(
        n=8, shape=(2,), steps=30, step_size=0.02, bounds=(-3.0, 3.0), seed=5,
        on_nonfinite="reset", check_every=5, return_info=True)),
    "network": (small_network, dict(n=7, steps=30, seed=6)),
}
BITWISE = ["langevin-elementwise", "mala-adapting-with-info", "langevin-chunked",
           "reset-nonfinite"]


def run_case(name, distributed):
    import conceptalg

    factory, kwargs = SAMPLE_CASES[name]
    out = conceptalg.sample(factory(), distributed=distributed, **kwargs)
    if isinstance(out, tuple):
        x, info = out
        return {"x": x, "energy trace": info["energy trace"], "step size": info["step size"],
                "acceptance rate": info["acceptance rate"],
                "resets": torch.tensor(info["resets"])}
    return {"x": out}


# --- the worker ----------------------------------------------------------------------------

def _worker(scenario: str, out: Path) -> None:
    from conceptalg.training import distributed

    rank = int(os.environ["RANK"])
    if scenario == "dies-before-joining" and rank == 1:
        raise RuntimeError("simulated failure of rank 1 before joining the group")
    ctx = distributed.from_environment(timeout=float(os.environ["GROUP_TIMEOUT"]))
    try:
        _scenario(scenario, out, rank, ctx)
    except BaseException:
        distributed.shutdown(wait=False)
        raise
    # The scenario's trainers (and their DDP wrappers) are gone now: collect them while the
    # group is alive, so no gloo work outlives destroy_process_group into interpreter exit.
    gc.collect()
    distributed.shutdown()


def _scenario(scenario: str, out: Path, rank: int, ctx) -> None:
    from safetensors.torch import save_file

    from conceptalg.training import (ConceptData, Trainer, TrainingDiverged,
                                     default_train_config)

    if scenario == "dies" and rank == 1:
        raise RuntimeError("simulated failure of rank 1 before its first collective")
    if scenario in ("dies", "dies-before-joining"):
        tiny_trainer().fit(2)
    elif scenario == "mismatch":
        tiny_trainer(batch_size=16 if rank == 0 else 32).fit(2)
    elif scenario == "train":
        calls = count_saves()
        trainer = tiny_trainer()
        trainer.fit(4)
        trainer.save(out / "run")
        save_file(trainer.model.state_dict(), str(out / f"params-{rank}.safetensors"))
        resumed = type(trainer).resume(out / "run", tiny_data())
        resumed.fit(2)
        trainer.fit(2)
        exact = all(torch.equal(v, resumed.model.state_dict()[k])
                    for k, v in trainer.model.state_dict().items())
        report = {"rank": ctx.rank, "world size": ctx.world_size, "save calls": len(calls),
                  "resume exact": exact,
                  "losses": [m["loss"] for m in trainer.history],
                  "resumed losses": [m["loss"] for m in resumed.history]}
        # the other head kinds: classifier factors that a rank's batch may not label, FiLM
        for heads, labels in [("classifier", {"a": ["p", "q"] * 60,
                                              "b": ["r", "s"] + [-1] * 118}),
                              ("film", {"a": ["p", "q"] * 60})]:
            data = ConceptData.from_labels(tiny_data().x, labels, bounds=(-3.0, 3.0))
            other = Trainer(data, config=default_train_config(
                (2,), steps=3, batch_size=8, langevin_steps=3, kl_weight=1.0),
                heads=heads, backbone_options={"hidden": (16, 16)})
            other.fit()
            flat = torch.cat([p.detach().flatten() for p in other.model.parameters()])
            both = [torch.empty_like(flat) for _ in range(2)]
            torch.distributed.all_gather(both, flat)
            report[f"{heads} identical"] = torch.equal(both[0], both[1])
        # a one-process checkpoint continues on two ranks: its buffers are dealt out
        if rank == 0:
            alone = tiny_trainer(distributed=False)
            alone.fit(2)
            alone.save(out / "alone")
        torch.distributed.barrier()
        spread = Trainer.resume(out / "alone", tiny_data())
        report["dealt buffer sizes"] = [len(b) for b in spread.buffers]
        spread.fit(2)
        flat = torch.cat([p.detach().flatten() for p in spread.model.parameters()])
        both = [torch.empty_like(flat) for _ in range(2)]
        torch.distributed.all_gather(both, flat)
        report["spread identical"] = torch.equal(both[0], both[1])
        # a divergence seen by one rank stops every rank at the same step
        try:
            tiny_trainer(steps=100, lr=1.0, alpha=0.0, max_energy=3.0, grad_clip=1e6).fit()
        except TrainingDiverged as e:
            report["diverged"] = str(e).split(":")[0]
        (out / f"report-{rank}.json").write_text(json.dumps(report))
    elif scenario == "dsm":
        _dsm_scenario(out, rank, ctx)
    elif scenario == "sample":
        import conceptalg

        results = {}
        for name in SAMPLE_CASES:
            for key, value in run_case(name, distributed=True).items():
                results[f"{name}/{key}"] = value.contiguous()
        results["seedless"] = conceptalg.sample(elementwise, 5, shape=(2,), steps=5,
                                                distributed=True)
        save_file(results, str(out / f"samples-{rank}.safetensors"))
    else:
        raise ValueError(f"unknown scenario {scenario!r}")


def count_saves() -> list:
    """Count this process's checkpoint writes from now on: the list grows by one per write."""
    from conceptalg.training import checkpoint

    calls: list = []
    original = checkpoint.save_checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    checkpoint.save_checkpoint = counting
    return calls


def dsm_trainer(distributed=None, **overrides):
    from conceptalg.training import DSMConfig, DSMTrainer, builtin_data

    config = DSMConfig(**{**dict(steps=6, batch_size=16, log_every=2, grad_clip=1e6, seed=0),
                          **overrides})
    return DSMTrainer(builtin_data("toy2d"), config=config, parameterization="score",
                      backbone_options={"hidden": (16, 16)}, distributed=distributed)


def _dsm_scenario(out: Path, rank: int, ctx) -> None:
    """Denoising score matching on two ranks (streamed toy2d): the averaged gradient of the
    first step against one process's gradient on the union of the two batches; identical
    weights; rank 0 alone writes; an exact resume on the same number of ranks."""
    import copy

    from safetensors.torch import save_file

    from conceptalg.training import builtin_data

    calls = count_saves()
    trainer = dsm_trainer()
    state = trainer.generator.get_state()
    x, head, _, sigma, noise, _ = trainer._batch()                 # this rank's first batch
    trainer.generator.set_state(state)
    union = []
    for t in (x, head.double(), sigma, noise):
        parts = [torch.empty_like(t) for _ in range(2)]
        torch.distributed.all_gather(parts, t.contiguous())
        union.append(torch.cat(parts))
    alone = dsm_trainer(distributed=False)
    alone.online.load_state_dict(copy.deepcopy(trainer.online.state_dict()))
    alone.loss(union[0], union[1].long(), None, union[2], union[3]).backward()
    trainer.train_step()
    diffs = [float((p.grad - q.grad).abs().max() / (q.grad.abs().max() + 1e-12))
             for p, q in zip(trainer.online.parameters(), alone.online.parameters())]
    trainer.fit()
    trainer.save(out / "dsm-run")
    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()},
              str(out / f"dsm-params-{rank}.safetensors"))
    flat = torch.cat([p.detach().flatten() for p in trainer.online.parameters()])
    both = [torch.empty_like(flat) for _ in range(2)]
    torch.distributed.all_gather(both, flat)
    resumed = type(trainer).resume(out / "dsm-run", builtin_data("toy2d"), steps=8)
    trainer.config.steps = 8
    resumed.fit()
    trainer.fit()
    exact = all(torch.equal(v, resumed.online.state_dict()[k])
                for k, v in trainer.online.state_dict().items())
    report = {"rank": rank, "gradient vs union": max(diffs), "identical": torch.equal(*both),
              "save calls": len(calls), "resume exact": exact,
              "losses": [m["loss"] for m in trainer.history]}
    (out / f"dsm-report-{rank}.json").write_text(json.dumps(report))


# --- launching -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(**extra) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               GROUP_TIMEOUT=str(GROUP_TIMEOUT))
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def launch(scenario: str, out: Path, world: int = 2, group_timeout: float = GROUP_TIMEOUT):
    """Start ``world`` worker processes as torchrun would; returns ``[(returncode, stderr,
    seconds)]`` by rank. Anything still running after LAUNCH_TIMEOUT is killed (a failure)."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = _environment(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE=world,
                           RANK=rank, LOCAL_RANK=rank, LOCAL_WORLD_SIZE=world,
                           GROUP_TIMEOUT=group_timeout)
        procs.append(subprocess.Popen([sys.executable, __file__, scenario, str(out)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    start, results = time.monotonic(), []
    try:
        for p in procs:
            left = max(1.0, LAUNCH_TIMEOUT - (time.monotonic() - start))
            _, err = p.communicate(timeout=left)
            results.append((p.returncode, err, time.monotonic() - start))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{scenario}: the processes did not finish within {LAUNCH_TIMEOUT} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def _ok(results):
    for rank, (code, err, _) in enumerate(results):
        assert code == 0, f"rank {rank} failed:\n{err[-3000:]}"


# --- training -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    _ok(launch("train", out))
    reports = [json.loads((out / f"report-{r}.json").read_text()) for r in range(2)]
    return out, reports


@pytest.fixture(scope="module")
def two_rank_dsm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-dsm")
    _ok(launch("dsm", out))
    return out, [json.loads((out / f"dsm-report-{r}.json").read_text()) for r in range(2)]


def test_dsm_averages_gradients_as_one_process_on_the_union(two_rank_dsm_run):
    _, reports = two_rank_dsm_run
    for r in reports:
        assert r["gradient vs union"] < 1e-5, r
        assert r["identical"] and r["resume exact"]
    assert [r["save calls"] for r in reports] == [1, 0]          # rank 0 writes, alone
    assert reports[0]["losses"] == reports[1]["losses"]          # logged means over the ranks


def test_a_two_process_dsm_checkpoint_resumes_in_one_process(two_rank_dsm_run):
    from safetensors.torch import load_file

    from conceptalg.training import DSMTrainer, builtin_data

    out, _ = two_rank_dsm_run
    saved = load_file(str(out / "dsm-params-0.safetensors"))
    trainer = DSMTrainer.resume(out / "dsm-run", builtin_data("toy2d"), steps=8)
    assert trainer.step == 6 and trainer.world_size == 1
    for key, value in saved.items():
        assert torch.equal(trainer.model.state_dict()[key], value), key
    trainer.fit()                                  # continues alone: rank 0's generator
    assert trainer.step == 8


def test_ranks_end_with_identical_parameters(two_rank_run):
    from safetensors.torch import load_file

    out, reports = two_rank_run
    assert [r["world size"] for r in reports] == [2, 2]
    p0, p1 = (load_file(str(out / f"params-{r}.safetensors")) for r in range(2))
    assert p0.keys() == p1.keys()
    for key in p0:
        assert torch.equal(p0[key], p1[key]), key
    # the metrics are averages over the ranks: the same on both
    assert reports[0]["losses"] == reports[1]["losses"]


def test_rank_zero_alone_writes_a_loadable_checkpoint(two_rank_run):
    import conceptalg
    from conceptalg.training.checkpoint import load_checkpoint
    from safetensors.torch import load_file

    out, reports = two_rank_run
    assert [r["save calls"] for r in reports] == [1, 0]
    model = conceptalg.load(out / "run")
    params = load_file(str(out / "params-0.safetensors"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, params[key]), key
    ckpt = load_checkpoint(out / "run")
    assert ckpt.metadata["world_size"] == 2 and ckpt.step == 4
    n_buffers = len(model.head_names) + 1
    for i in range(n_buffers):  # rank 0 under the single-process names, rank 1 prefixed
        assert f"buffer.{i}.samples" in ckpt.tensors
        assert f"rank.1.buffer.{i}.samples" in ckpt.tensors
    assert not torch.equal(ckpt.tensors["generator"], ckpt.tensors["rank.1.generator"])


@pytest.mark.parametrize("heads", ["classifier", "film"])
def test_other_head_kinds_stay_identical_across_ranks(two_rank_run, heads):
    _, reports = two_rank_run
    assert all(r[f"{heads} identical"] for r in reports)


def test_divergence_stops_every_rank_at_the_same_step(two_rank_run):
    _, reports = two_rank_run
    assert reports[0].get("diverged", "").startswith("training diverged at step")
    assert reports[0]["diverged"] == reports[1]["diverged"]


def test_resume_with_the_same_world_size_is_exact(two_rank_run):
    _, reports = two_rank_run
    for r in reports:
        assert r["resume exact"]
        assert r["resumed losses"] == r["losses"]


def test_a_two_process_checkpoint_resumes_in_one_process(two_rank_run):
    from conceptalg.training import Trainer
    from conceptalg.training.checkpoint import load_checkpoint

    out, _ = two_rank_run
    ckpt = load_checkpoint(out / "run")
    trainer = Trainer.resume(out / "run", tiny_data())
    assert trainer.world_size == 1 and trainer.step == 4
    for i, buf in enumerate(trainer.buffers):
        # one process inherits every rank's chains (within its capacity)
        saved = torch.cat([ckpt.tensors[f"buffer.{i}.samples"],
                           ckpt.tensors[f"rank.1.buffer.{i}.samples"]])
        assert len(buf) == min(buf.capacity, len(saved))
        if len(saved) <= buf.capacity:
            mine = buf.state_dict()["samples"]
            assert sorted(map(tuple, mine.tolist())) == sorted(map(tuple, saved.tolist()))
    trainer.fit()
    assert trainer.step == 6 and len(trainer.history) == 6


def test_a_one_process_checkpoint_continues_on_two_ranks(two_rank_run):
    from conceptalg.training.checkpoint import load_checkpoint

    out, reports = two_rank_run
    saved = load_checkpoint(out / "alone").tensors
    dealt = [a + b for a, b in zip(reports[0]["dealt buffer sizes"],
                                   reports[1]["dealt buffer sizes"])]
    assert dealt == [len(saved[f"buffer.{i}.samples"]) for i in range(len(dealt))] and all(r["spread identical"] for r in reports)


@pytest.mark.parametrize("parts,world,expected", [
    ([[1, 2, 3], [10, 20, 30]], 1, [1, 10, 2, 20, 3, 30]),
    ([[1, 2, 3, 4], [10, 20]], 2, [1, 10, 4]),
    ([[1, 2, 3, 4], [10, 20]], 1, [1, 2, 10, 3, 4, 20]),
    ([[1, 2], []], 3, [1]),
], ids=["merge-two", "split-uneven", "merge-uneven", "more-ranks-than-rows"])
def test_redeal_merges_buffers_by_age(parts, world, expected):
    from conceptalg.training.distributed import redeal as _redeal

    tensors = [torch.tensor(p, dtype=torch.float32).reshape(-1, 1) for p in parts]
    assert _redeal(tensors, 0, world)[:, 0].tolist() == expected
    dealt = torch.cat([_redeal(tensors, r, world) for r in range(world)])
    assert sorted(dealt[:, 0].tolist()) == sorted(sum(parts, []))


def test_rank_seeds():
    from conceptalg.training.distributed import rank_seed, shard_bounds

    assert rank_seed(5, 0) == 5
    seeds = {rank_seed(s, r) for s in range(50) for r in range(8)}
    assert len(seeds) == 50 * 8  # no rank replays another seed's stream
    assert shard_bounds(7, 2) == [0, 3, 7] and shard_bounds(8, 3) == [0, 2, 5, 8]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """``python -m conceptalg ARGS`` on two local processes under torchrun (bounded in time)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "conceptalg", *args]
    return subprocess.run(cmd, env=_environment(), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)


@pytest.mark.slow
def test_cli_train_under_torchrun(tmp_path):
    from conceptalg.cli import main

    out = tmp_path / "run"
    done = torchrun("train", "--data", "toy2d", "--num-samples", "400", "--out", str(out),
                    "--steps", "4", "--batch-size", "32", "--langevin-steps", "5",
                    "--log-every", "2", "--checkpoint-every", "2", "--timeout",
                    str(GROUP_TIMEOUT), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 4 steps") == 1  # rank 0 alone prints
    assert "training on 2 processes (gloo)" in done.stderr
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2
    assert json.loads((out / "latest").read_text())["step"] == 4
    # and a single process continues it
    assert main(["train", "--data", "toy2d", "--n", "400", "--out", str(out), "--steps", "6",
                 "--resume", "--no-progress"]) == 0
    assert json.loads((out / "latest").read_text())["step"] == 6
    # `conceptalg sample --distributed` under torchrun: the same samples as one process
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    assert main(["sample", "ring & top", "--model", str(out), "--n", "40", "--steps", "20",
                 "--out", str(tmp_path / "one.png"), "--save", str(one), "--no-progress"]) == 0
    done = torchrun("sample", "ring & top", "--model", str(out), "--num-samples", "40",
                    "--steps", "20", "--out", str(tmp_path / "two.png"), "--save", str(two),
                    "--no-progress", "--distributed")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(f"wrote {two}") == 1  # rank 0 alone writes
    from safetensors.torch import load_file

    torch.testing.assert_close(load_file(str(two))["samples"], load_file(str(one))["samples"])


@pytest.mark.slow
def test_cli_train_dsm_under_torchrun(tmp_path):
    from conceptalg.cli import main

    out = tmp_path / "run"
    done = torchrun("train", "--data", "toy2d", "--objective", "dsm", "--out",
                    str(out), "--steps", "4", "--batch-size", "32", "--log-every", "2",
                    "--checkpoint-every", "2", "--timeout", str(GROUP_TIMEOUT), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 4 steps") == 1  # rank 0 alone prints
    assert "training on 2 processes (gloo)" in done.stderr
    meta = json.loads((out / "ckpt-000004" / "config.json").read_text())["metadata"]
    assert (meta["objective"], meta["world_size"]) == ("dsm", 2)
    # a single process continues it
    assert main(["train", "--data", "toy2d", "--objective", "dsm", "--out", str(out),
                 "--steps", "6", "--resume", "--no-progress"]) == 0
    assert json.loads((out / "latest").read_text())["step"] == 6


# --- bad set-ups end with a clear error, not a hang ----------------------------------------

def test_mismatched_configs_raise_on_every_rank(tmp_path):
    results = launch("mismatch", tmp_path)
    for rank, (code, err, _) in enumerate(results):
        assert code != 0, f"rank {rank} should have failed"
        assert "ValueError" in err and "different training set-ups" in err, err[-2000:]
        assert "batch_size = 32 (rank 0: 16)" in err, err[-2000:]


def test_a_rank_that_dies_ends_the_other_with_a_clear_error(tmp_path):
    results = launch("dies", tmp_path)
    code0, err0, seconds = results[0]
    assert "simulated failure of rank 1" in results[1][1]
    assert code0 != 0
    assert "DistributedError" in err0 and "rank 0 of 2 failed while" in err0, err0[-2000:]
    assert seconds < GROUP_TIMEOUT + 60


def test_a_rank_that_never_joins_times_out_with_a_clear_error(tmp_path):
    results = launch("dies-before-joining", tmp_path, group_timeout=5)
    code0, err0, seconds = results[0]
    assert code0 != 0
    assert "DistributedError" in err0 and "could not start the process group" in err0, \
        err0[-2000:]
    assert seconds < 5 + 60


def test_trainer_without_a_group_refuses_distributed_true():
    with pytest.raises(ValueError, match="initialised process group"):
        tiny_trainer(distributed=True)


# --- sharded sampling ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def single_process_samples():
    return {name: run_case(name, distributed=False) for name in SAMPLE_CASES}


def _compare(got: dict, want: dict, name: str) -> None:
    for key, value in want.items():
        other = got[key] if key in got else got[f"{name}/{key}"]
        if name in BITWISE:
            assert torch.equal(other, value), (name, key)
        else:
            assert torch.allclose(other, value, rtol=1e-4, atol=1e-5), (name, key)


def test_sharded_sampling_over_two_processes_matches_one(tmp_path, single_process_samples):
    from safetensors.torch import load_file

    _ok(launch("sample", tmp_path))
    by_rank = [load_file(str(tmp_path / f"samples-{r}.safetensors")) for r in range(2)]
    for name, want in single_process_samples.items():
        for got in by_rank:  # every process gets all the samples
            _compare(got, want, name)
    assert int(single_process_samples["reset-nonfinite"]["resets"]) > 0  # the path ran
    # seed=None: rank 0 picks the seed for all
    assert torch.equal(by_rank[0]["seedless"], by_rank[1]["seedless"])


def test_sharded_sampling_in_a_one_process_group_matches(tmp_path, single_process_samples):
    import torch.distributed as dist

    for name, want in single_process_samples.items():  # no group: one process
        _compare(run_case(name, distributed=True), want, name)
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        for name, want in single_process_samples.items():
            _compare(run_case(name, distributed=True), want, name)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]))
