"""conceptalg.sample(): arguments, defaults, reproducibility, masks, bounds, chunking, module
state, non-finite handling — and the kernels' acceptance ratios against hand-written float64
formulas."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

import conceptalg
from conceptalg.errors import SamplerError
from conceptalg.sampling import MALA, MH, ReplayBuffer
from conceptalg.sampling.hmc import HMCKernel
from conceptalg.sampling.mala import MALAKernel

SAMPLERS = ["langevin", "mala", "hmc", "mh"]




def quadratic(x: torch.Tensor) -> torch.Tensor:
    """An elementwise energy: each chain's value depends on its own row only."""
    return 0.5 * (x ** 2).reshape(x.shape[0], -1).sum(1)


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32 if x.dtype == torch.float32 else torch.int64)


# ------------------------------------------------------------------ argument validation
BAD_ARGUMENTS = [
    ("n-zero", dict(n=0), ValueError, "n must be an integer ≥ 1"),
    ("unknown-sampler", dict(sampler="malla"), ValueError, "did you mean 'mala'"),
    ("sampler-type", dict(sampler=3), TypeError, "sampler must be a name"),
    ("noise-scale-mala", dict(sampler="mala", noise_scale=0.01), ValueError, "temperature"),
    ("noise-scale-and-T", dict(noise_scale=0.01, temperature=2.0), ValueError,
     "either noise_scale"),
    ("steps-zero", dict(steps=0), ValueError, "steps must be an integer ≥ 1"),
    ("warmup-too-long", dict(steps=10, warmup=10), ValueError, "warmup must be < steps"),
    ("step-size-negative", dict(step_size=-1.0), ValueError, "step_size must be a finite"),
    ("bounds-order", dict(bounds=(1.0, 0.0)), ValueError, "low < high"),
    ("bounds-shape", dict(bounds=(torch.zeros(3), 1.0)), ValueError, "does not broadcast"),
    ("unknown-option", dict(grad_clp=0.1), TypeError, "did you mean 'grad_clip'"),
    ("grad-clip-hmc", dict(sampler="hmc", grad_clip=0.1), ValueError, "does not apply"),
    ("on-nonfinite", dict(on_nonfinite="ignore"), ValueError, "'raise' or 'reset'"),
    ("thin-too-large", dict(steps=10, thin=6), ValueError, "thin must be ≤"),
    ("check-every", dict(check_every=0), ValueError, "check_every must be"),
    ("batch-size", dict(batch_size=0), ValueError, "batch_size must be"),
    ("temperature-negative", dict(temperature=-1.0), ValueError, "temperature must be finite"),
    ("schedule-length", dict(steps=10, temperature=[1.0] * 9), ValueError, "one value per step"),
    ("mask-dtype", dict(mask=torch.ones(2)), ValueError, "mask must be a bool tensor"),
    ("mask-shape", dict(mask=torch.ones(3, dtype=torch.bool), init=torch.zeros(4, 2)),
     ValueError, "must broadcast"),
    ("mask-without-init", dict(mask=torch.tensor([True, False])), ValueError, "pass init="),
    ("init-shape", dict(init=torch.zeros(5, 2)), ValueError, "init must have shape"),
    ("num-leapfrog", dict(sampler="hmc", num_leapfrog=0), ValueError, "num_leapfrog"),
    ("target-accept", dict(sampler="mala", target_accept=1.5), ValueError, "target_accept"),
    ("seed", dict(seed=-1), ValueError, "seed must be"),
    ("set-twice", dict(sampler=MALA(step_size=0.1), step_size=0.2), ValueError,
     "step_size is set twice"),
]


@pytest.mark.parametrize("kwargs, error, message",
                         [case[1:] for case in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_arguments_are_named(kwargs, error, message):
    kwargs = {"n": 4, "shape": (2,), "steps": 10, **kwargs}
    n = kwargs.pop("n")
    with pytest.raises(error, match=re.escape(message)):
        conceptalg.sample(quadratic, n, **kwargs)


def test_missing_shape_is_explained():
    with pytest.raises(ValueError, match="give shape="):
        conceptalg.sample(quadratic, 4)


def test_energy_with_wrong_output_shape():
    with pytest.raises(SamplerError, match=r"one value per chain, shape \[4\]"):
        conceptalg.sample(lambda x: x ** 2, 4, shape=(2,), steps=3)


def test_non_differentiable_energy_points_to_mh():
    energy = lambda x: (x.detach() ** 2).sum(1)                           # noqa: E731
    with pytest.raises(SamplerError, match="sampler='mh'"):
        conceptalg.sample(energy, 4, shape=(2,), steps=3)
    assert conceptalg.sample(energy, 4, shape=(2,), steps=3, sampler="mh").shape == (4, 2)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_init_outside_bounds_raises_with_count(sampler):
    init = torch.tensor([[0.5, 1.5], [-0.1, 0.2], [-3.0, 0.0]])
    with pytest.raises(ValueError, match=r"2 values below the lower bound 0\.0 and 1 values "
                                         r"above the upper bound 1\.0"):
        conceptalg.sample(quadratic, 3, sampler=sampler, init=init, bounds=(0.0, 1.0), steps=3)


# ------------------------------------------------------------------ reproducibility
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_seed_reproduces_bitwise_and_seeds_differ(sampler):
    run = lambda seed: conceptalg.sample(quadratic, 64, shape=(3,), sampler=sampler,  # noqa
                                         steps=30, seed=seed)
    a, b, c = run(7), run(7), run(8)
    assert torch.equal(bits(a), bits(b))
    assert not torch.equal(a, c)


def test_seed_is_reported_and_replays():
    x, info = conceptalg.sample(quadratic, 16, shape=(2,), steps=10, return_info=True)
    again = conceptalg.sample(quadratic, 16, shape=(2,), steps=10, seed=info["seed"])
    assert torch.equal(x, again)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_chunking_matches_unchunked_bitwise(sampler):
    kw = dict(shape=(3,), sampler=sampler, steps=30, seed=3, bounds=(-2.0, 2.0),
              return_info=True)
    whole, info = conceptalg.sample(quadratic, 50, **kw)
    chunked, info_c = conceptalg.sample(quadratic, 50, batch_size=7, **kw)
    assert torch.equal(bits(whole), bits(chunked))
    assert torch.equal(info["energy trace"], info_c["energy trace"])
    assert torch.equal(info["step size"], info_c["step size"])


# ------------------------------------------------------------------ masks and bounds
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_masked_coordinates_are_bitwise_unchanged(sampler):
    init = torch.randn(32, 2, 3, generator=torch.Generator().manual_seed(0))
    init[0, 1, 2] = -0.0                                   # the sign of zero must survive too
    mask = torch.tensor([[True, False, True], [False, True, False]])
    x = conceptalg.sample(quadratic, 32, sampler=sampler, init=init, mask=mask, steps=20, seed=1)
    assert torch.equal(bits(x[:, ~mask]), bits(init[:, ~mask]))
    assert (x[:, mask] != init[:, mask]).float().mean() > 0.5


def test_broadcast_mask_with_a_single_init_sample():
    init = torch.tensor([0.3, 0.7])
    x = conceptalg.sample(quadratic, 10, shape=(2,), init=init, mask=torch.tensor([False, True]),
                          steps=5, seed=0)
    assert x.shape == (10, 2) and torch.all(x[:, 0] == 0.3)


@pytest.mark.parametrize("kernel_class", [MALAKernel, HMCKernel])
def test_proposals_outside_bounds_are_rejected(kernel_class):
    from conceptalg.sampling.base import Bounds
    kernel = kernel_class(quadratic, bounds=Bounds(0.0, 1.0))
    state = kernel.init(torch.full((200, 2), 0.5), step_size=50.0)        # huge: all leave
    new, info = kernel.step(torch.Generator().manual_seed(0), state)
    assert not bool(info.is_accepted.any())
    assert torch.equal(new.x, state.x)
    assert bool(torch.all(info.log_accept_ratio == -math.inf))


def test_mh_rejects_outside_bounds():
    from conceptalg.sampling.base import Bounds
    from conceptalg.sampling.mh import MHKernel
    kernel = MHKernel(quadratic, bounds=Bounds(0.0, 1.0))
    state = kernel.init(torch.full((200, 2), 0.5), step_size=100.0)
    new, info = kernel.step(torch.Generator().manual_seed(0), state)
    assert not bool(info.is_accepted.any()) and torch.equal(new.x, state.x)


def test_langevin_clamps_and_puts_atoms_on_the_boundary():
    x = conceptalg.sample(lambda x: (5.0 * x).sum(1), 500, shape=(2,), bounds=(0.0, 1.0),
                          step_size=0.05, steps=50, seed=0)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float((x == 0.0).float().mean()) > 0.05                      # mass on the wall


def test_bounds_tensor_per_coordinate():
    low, high = torch.tensor([0.0, -1.0]), torch.tensor([1.0, 0.0])
    x = conceptalg.sample(quadratic, 200, shape=(2,), sampler="mala", bounds=(low, high),
                          steps=40, seed=0)
    assert torch.all(x >= low) and torch.all(x <= high)


def test_default_init_is_uniform_within_bounds():
    x = conceptalg.sample(lambda x: 0.0 * x.sum(1), 2000, shape=(1,), sampler=MH(adapt=False),
                          step_size=1e-9, steps=1, warmup=0, bounds=(2.0, 3.0), seed=0)
    assert float(x.min()) >= 2.0 and float(x.max()) <= 3.0
    assert abs(float(x.mean()) - 2.5) < 5 * math.sqrt(1 / 12 / 2000)


# ------------------------------------------------------------------ the energy's defaults
class DefaultsEnergy(nn.Module):
    sample_shape = (3,)
    bounds = (-1.0, 1.0)
    sampler_defaults = {"sampler": "langevin", "steps": 12, "step_size": 0.004,
                        "noise_scale": 0.02, "grad_clip": 0.5}

    def forward(self, x):
        return quadratic(x)


def test_energy_defaults_are_used_and_explicit_arguments_win():
    energy = DefaultsEnergy()
    x, info = conceptalg.sample(energy, 8, seed=0, return_info=True)
    assert x.shape == (8, 3) and info["steps"] == 12
    assert torch.allclose(info["step size"], torch.full((8,), 0.004))
    assert float(x.abs().max()) <= 1.0
    _, info = conceptalg.sample(energy, 8, seed=0, steps=20, step_size=0.01, return_info=True)
    assert info["steps"] == 20 and torch.allclose(info["step size"], torch.full((8,), 0.01))
    # another sampler drops the Langevin-specific defaults (noise_scale would be an error)
    _, info = conceptalg.sample(energy, 8, seed=0, sampler="mala", return_info=True)
    assert info["sampler"] == "mala" and info["steps"] == 12
    # an explicit temperature replaces the default noise scale
    conceptalg.sample(energy, 8, seed=0, temperature=0.5)


def test_energy_init_samples_used_without_bounds():
    calls = []

    class Own:
        sample_shape = (2,)

        def __call__(self, x):
            return quadratic(x)

        def init_samples(self, n, generator, device):
            calls.append(n)
            return torch.full((n, 2), 9.0, device=device)

    x = conceptalg.sample(Own(), 5, sampler=MH(adapt=False), step_size=1e-9, steps=1,
                          warmup=0, seed=0)
    assert calls == [5] and torch.allclose(x, torch.full((5, 2), 9.0))


def test_energy_init_samples_win_over_bounds_and_are_clamped():
    class Own:
        sample_shape = (2,)
        bounds = (0.0, 1.0)

        def __call__(self, x):
            return quadratic(x)

        def init_samples(self, n, generator, device):
            return torch.tensor([[0.25, 0.75], [0.5, 3.0]], device=device)[:n]

    x = conceptalg.sample(Own(), 2, sampler=MH(adapt=False), step_size=1e-9, steps=1,
                          warmup=0, seed=0)
    assert torch.equal(x, torch.tensor([[0.25, 0.75], [0.5, 1.0]]))


def test_unknown_default_key_is_reported():
    class Bad:
        sampler_defaults = {"stepsize": 1.0}

        def __call__(self, x):
            return quadratic(x)

    with pytest.raises(ValueError, match="did you mean 'step_size'"):
        conceptalg.sample(Bad(), 4, shape=(2,))


# ------------------------------------------------------------------ module state
class Watched(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.utils.parametrizations.spectral_norm(nn.Linear(2, 16))
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(16, 1)
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.out(self.drop(torch.tanh(self.lin(x)))).squeeze(-1) + quadratic(x)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampling_runs_in_eval_mode_and_leaves_module_state_alone(sampler):
    net = Watched()
    net.train()
    net.out.eval()                                            # mixed flags must come back
    before = {k: v.clone() for k, v in net.state_dict().items()}
    conceptalg.sample(net, 16, shape=(2,), sampler=sampler, steps=10, seed=0)
    assert net.modes and not any(net.modes)
    assert net.training and net.lin.training and not net.out.training
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)      # incl. spectral-norm u, v
    assert all(p.grad is None for p in net.parameters())


def test_flags_restored_when_sampling_fails():
    net = Watched()
    net.train()
    with pytest.raises(ValueError):
        conceptalg.sample(net, 4, shape=(2,), steps=10, init=torch.full((4, 2), 5.0),
                          bounds=(0.0, 1.0))
    bad = lambda x: net(x) * torch.nan                                   # noqa: E731
    with pytest.raises(SamplerError):
        conceptalg.sample(bad, 4, shape=(2,), steps=10)
    assert net.training


# ------------------------------------------------------------------ non-finite values
class Faulty:
    """0.5|x|², broken in rows < 5 from call ``start`` (for ``calls`` calls, default forever):
    ``nan-energy`` gives a NaN energy with a finite gradient, ``inf-grad`` an infinite gradient
    with a finite energy."""

    def __init__(self, kind: str, start: int, calls: int = 10 ** 9) -> None:
        self.kind, self.start, self.stop, self.count = kind, start, start + calls, 0

    def __call__(self, x):
        self.count += 1
        if not self.start <= self.count < self.stop:
            return quadratic(x)
        rows = (torch.arange(x.shape[0]) < 5).reshape(-1, *([1] * (x.dim() - 1)))
        if self.kind == "nan-energy":
            return quadratic(x) + torch.where(rows[:, 0], torch.nan, 0.0)
        return quadratic(_InfGrad.apply(x, rows))


class _InfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rows):
        ctx.save_for_backward(rows)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        (rows,) = ctx.saved_tensors
        return torch.where(rows, torch.inf, grad), None


CASES = [(s, k) for s in SAMPLERS for k in ("nan-energy", "inf-grad")
         if (s, k) != ("mh", "inf-grad")]                # MH computes no gradient


@pytest.mark.parametrize("sampler, kind", CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_non_finite_raises_with_interval_and_count(sampler, kind):
    energy = Faulty(kind, start=40)
    with pytest.raises(SamplerError) as err:
        conceptalg.sample(energy, 100, shape=(2,), sampler=sampler, steps=100, seed=0)
    text = str(err.value)
    assert "5 of 100 chains went non-finite" in text
    assert "checked every 10 steps" in text
    first, last = map(int, re.search(r"between steps (\d+) and (\d+)", text).groups())
    assert last % 10 == 0 and last - first == 9


@pytest.mark.parametrize("sampler, kind", CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_reset_restarts_only_the_bad_chains(sampler, kind):
    energy = Faulty(kind, start=40, calls=1)                 # one broken evaluation mid-run
    x, info = conceptalg.sample(energy, 100, shape=(2,), sampler=sampler, steps=100, seed=0,
                                on_nonfinite="reset", return_info=True)
    assert info["resets"] == 5
    assert bool(torch.isfinite(x).all()) and bool(torch.isfinite(info["energy trace"]).all())


def test_check_every_one_finds_the_exact_step():
    with pytest.raises(SamplerError, match="at step 39;"):
        conceptalg.sample(Faulty("nan-energy", start=40), 10, shape=(2,), steps=100, seed=0,
                          check_every=1)


def test_non_finite_start_is_reported_or_redrawn():
    def energy(x):
        return torch.where(x[:, 0] > 50, torch.nan, quadratic(x))
    init = torch.zeros(10, 2)
    init[:3, 0] = 100.0
    with pytest.raises(SamplerError, match="3 of 10 chains start with a non-finite"):
        conceptalg.sample(energy, 10, init=init, steps=5)
    x, info = conceptalg.sample(energy, 10, init=init, steps=5, on_nonfinite="reset",
                                return_info=True, seed=0)
    assert info["resets"] == 3 and float(x[:, 0].max()) < 50


def test_reset_cannot_rescue_the_last_interval():
    with pytest.raises(SamplerError, match="restarted only before the last check"):
        conceptalg.sample(Faulty("nan-energy", start=95), 10, shape=(2,), steps=100, seed=0,
                          on_nonfinite="reset")


# ------------------------------------------------------------------ adaptation, options
@pytest.mark.parametrize("sampler", ["mala", "hmc", "mh"])
def test_step_size_adapts_then_freezes(sampler):
    run = lambda steps: conceptalg.sample(quadratic, 64, shape=(2,), sampler=sampler,  # noqa
                                          steps=steps, warmup=60, seed=2, return_info=True)
    _, short = run(70)
    _, long = run(160)
    assert torch.equal(short["step size"], long["step size"])       # nothing after warm-up
    assert not torch.allclose(short["step size"], torch.full((64,), 0.1 if sampler != "mh"
                                                             else 0.5))
    assert short["step size"].std() > 0                            # per chain


def test_adapt_false_keeps_the_step():
    _, info = conceptalg.sample(quadratic, 8, shape=(2,), sampler=MALA(adapt=False),
                                step_size=0.3, steps=20, return_info=True)
    assert torch.allclose(info["step size"], torch.full((8,), 0.3))


def test_per_chain_step_sizes_can_be_passed_back():
    _, info = conceptalg.sample(quadratic, 8, shape=(2,), sampler="mala", steps=40, seed=0,
                                return_info=True)
    _, again = conceptalg.sample(quadratic, 8, shape=(2,), sampler=MALA(adapt=False),
                                 step_size=info["step size"], steps=20, return_info=True)
    assert torch.equal(again["step size"], info["step size"])


def test_noise_scale_decouples_noise_from_step():
    flat = lambda x: 0.0 * x.sum(1)                                      # noqa: E731
    init = torch.zeros(20000, 1)
    x = conceptalg.sample(flat, 20000, init=init, step_size=100.0, noise_scale=0.01, steps=1,
                          warmup=0, seed=0)
    assert abs(float(x.std()) - 0.01) < 5 * 0.01 / math.sqrt(2 * 20000)


def test_grad_clip_caps_the_drift():
    steep = lambda x: 1000.0 * x.sum(1)                                  # noqa: E731
    x = conceptalg.sample(steep, 100, init=torch.zeros(100, 2), step_size=1.0,
                          noise_scale=1e-6, grad_clip=0.01, steps=1, warmup=0, seed=0)
    assert torch.allclose(x, torch.full((100, 2), -0.01), atol=1e-4)


def test_annealing_schedule_is_applied():
    hot = conceptalg.sample(quadratic, 2000, shape=(1,), sampler="mala", steps=200, seed=0,
                            temperature=[100.0] * 200)
    cooled = conceptalg.sample(quadratic, 2000, shape=(1,), sampler="mala", steps=200, seed=0,
                               temperature=lambda t: max(1.0, 100.0 * (1 - t / 100)))
    assert 70 < float(hot.var()) < 130 and 0.85 < float(cooled.var()) < 1.15


def test_info_keys_and_shapes():
    x, info = conceptalg.sample(quadratic, 10, shape=(2,), sampler="hmc", steps=40, thin=5,
                                seed=0, return_info=True)
    for key in ("acceptance rate", "mean acceptance rate", "step size", "energy trace",
                "gradient norm", "ess", "split r-hat", "resets", "seed", "temperature"):
        assert key in info
    assert info["energy trace"].shape == (4, 10) and info["gradient norm"].shape == (4, 10)
    assert torch.allclose(info["energy trace"][-1], quadratic(x))
    assert torch.allclose(info["gradient norm"][-1], x.norm(dim=1))
    assert "gradient norm" not in conceptalg.sample(quadratic, 10, shape=(2,), sampler="mh",
                                                    steps=40, return_info=True)[1]


def test_progress_bar(capsys):
    conceptalg.sample(quadratic, 4, shape=(2,), steps=5, progress=True)
    assert "sampling (langevin)" in capsys.readouterr().err


def test_replay_buffer_ring_and_state_dict():
    buf = ReplayBuffer(4, (1,), reinit=0.0)
    buf.push(torch.arange(6.0)[:, None])
    assert len(buf) == 4
    assert torch.equal(buf.state_dict()["samples"][:, 0], torch.tensor([2.0, 3.0, 4.0, 5.0]))
    other = ReplayBuffer(4, (1,))
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.state_dict()["samples"], buf.state_dict()["samples"])
    drawn = buf.sample(1000, torch.Generator().manual_seed(0))
    assert set(drawn[:, 0].tolist()) == {2.0, 3.0, 4.0, 5.0}


def test_replay_buffer_reinit_fraction():
    buf = ReplayBuffer(10, (1,), bounds=(10.0, 11.0))
    buf.push(torch.zeros(10, 1))
    drawn = buf.sample(20000, torch.Generator().manual_seed(0))
    fresh = float((drawn >= 10.0).float().mean())
    assert abs(fresh - 0.05) < 5 * math.sqrt(0.05 * 0.95 / 20000)


# ------------------------------------------------------------------ acceptance ratios
A = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
M = torch.tensor([0.5, -1.0], dtype=torch.float64)


def gauss(x):
    d = x - M.to(x.dtype)
    return 0.5 * ((d @ A.to(x.dtype)) * d).sum(1)


def log_q(y, x, h, temperature):
    """log N(y; x − h A(x − μ), 2hT I) up to its constant (the same for both directions)."""
    mean = x - h[:, None] * ((x - M) @ A)
    return -((y - mean) ** 2).sum(1) / (4 * h * temperature)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
def test_mala_log_ratio_matches_closed_form(dtype, tol):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 2, generator=g, dtype=torch.float64)
    h = torch.exp(torch.empty(500, dtype=torch.float64).uniform_(-4, 0, generator=g))
    temperature = 1.7
    kernel = MALAKernel(gauss)
    state = kernel.init(x.to(dtype), h.to(dtype), temperature)
    _, info = kernel.step(torch.Generator().manual_seed(1), state)
    y = info.proposal.double()
    expected = (-(gauss(y) - gauss(x)) / temperature
                + log_q(x, y, h, temperature) - log_q(y, x, h, temperature))
    assert info.log_accept_ratio.dtype == torch.float64
    assert torch.allclose(info.log_accept_ratio, expected, atol=tol, rtol=tol)


def test_hmc_log_ratio_matches_hand_leapfrog():
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    temperature, steps = 1.3, 4
    kernel = HMCKernel(gauss, num_leapfrog=steps, jitter=0.2)
    state = kernel.init(x, 0.3, temperature)
    gen = torch.Generator().manual_seed(5)
    p, jit, _ = kernel.draw(torch.Generator().manual_seed(5), state)
    _, info = kernel.step(gen, state)
    eps = (0.3 * (1 + 0.2 * (2 * jit - 1)))[:, None]
    grad = lambda q: (q - M) @ A / temperature                            # noqa: E731
    q, mom = x.clone(), p.clone()
    mom = mom - eps / 2 * grad(q)
    for i in range(steps):
        q = q + eps * mom
        mom = mom - (eps if i + 1 < steps else eps / 2) * grad(q)
    h0 = gauss(x) / temperature + 0.5 * (p ** 2).sum(1)
    h1 = gauss(q) / temperature + 0.5 * (mom ** 2).sum(1)
    assert torch.allclose(info.proposal, q, atol=1e-12)
    assert torch.allclose(info.log_accept_ratio, h0 - h1, atol=1e-10)


def test_bound_method_of_a_module_also_runs_in_eval_mode():
    net = Watched()
    net.train()
    conceptalg.sample(net.forward, 8, shape=(2,), steps=5, seed=0)
    assert net.modes and not any(net.modes) and net.training


def test_deterministic_switch_is_restored():
    before = torch.are_deterministic_algorithms_enabled()
    a = conceptalg.sample(quadratic, 16, shape=(2,), sampler="mala", steps=10, seed=0,
                          deterministic=True)
    assert torch.are_deterministic_algorithms_enabled() == before
    assert torch.equal(a, conceptalg.sample(quadratic, 16, shape=(2,), sampler="mala",
                                            steps=10, seed=0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_cuda_runs_and_reproduces_with_deterministic(sampler):
    run = lambda: conceptalg.sample(quadratic, 256, shape=(2,), sampler=sampler, steps=50,  # noqa
                                    seed=0, device="cuda", deterministic=True)
    a, b = run(), run()
    assert a.device.type == "cuda" and torch.equal(a, b)


def test_reset_restarts_chains_at_the_end_of_an_intermediate_noise_level():
    def energy(x, sigma):                 # NaN far out, but only at the first (wide) level
        bad = (sigma > 2.0) & (x[:, 0] > 1.0)
        return torch.where(bad, torch.nan, 0.5 * (x ** 2).sum(1) / (1 + sigma ** 2))

    run = dict(init=torch.zeros(64, 2), sigmas=[3.0, 0.5], steps=10, check_every=10, seed=0)
    with pytest.raises(SamplerError, match="went non-finite"):
        conceptalg.sample(energy, 64, **run)
    x, info = conceptalg.sample(energy, 64, on_nonfinite="reset", return_info=True, **run)
    assert info["resets"] > 0 and bool(torch.isfinite(x).all())
