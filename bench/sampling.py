"""Per-step cost of ``conceptalg.sample`` against hand-written loops on the same energy.

The energy is an MLP 2 → 128 → 128 → 1 with SiLU (plus ``|x|²/2`` so that ``exp(−E)`` is
normalisable) on 1000 chains. Compared, interleaved in one
process (one thread on CPU):

- ``sample(sampler="langevin")`` vs a hand-written ``torch.autograd.grad`` ULA loop, on the
  module itself and composed from a dict (``compose("e", {"e": mlp})``: the compiler's path);
- ``sample(sampler=MALA(adapt=False))`` (the same fixed step, so the same arithmetic) and
  ``sample(sampler="mala")`` (the default: per-chain adaptation during warm-up, whose chains
  follow other trajectories) vs a hand-written MALA loop with float64 log ratios;
- each hand-written loop vs itself (an A/A ratio: the noise floor of the measurement).

On CPU denormals are flushed to zero (``torch.set_flush_denormal``) for every run: the large
step sizes that adaptation tries early in warm-up put rejected proposals far out, where the
MLP's SiLU produces denormal numbers whose slow arithmetic would be timed instead of the sampler.

Per-step time = wall time of a run / steps (``sample``'s set-up, initial energy evaluation and
end-of-run checks are charged to it, so short runs show any fixed cost); each repeat runs every
variant once, in a rotated order. Every ratio is printed twice, over the minimum and over the
median of the repeats, each beside its A/A. By default two configurations run: issue 15's,
100 steps with the minimum of 9 repeats (where a fixed per-run cost weighs most), and 200 steps
with 11 repeats; ``--steps``/``--repeats`` run one configuration. Target: ratios ≤ 1.05.
Writes bench/results/sampling.json.

    .venv/bin/python bench/sampling.py [--device cuda] [--chains 1000]
    .venv/bin/python bench/sampling.py --steps 100 --repeats 9      # issue 15's configuration
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import conceptalg
from conceptalg.sampling import MALA


def make_energy(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(),
                        nn.Linear(128, 1)).to(device)

    class MLPEnergy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # The quadratic term makes exp(−E) normalisable: chains stay where the MLP is
            # evaluated on ordinary numbers (an untrained MLP alone sends them to infinity).
            return self.net(x).squeeze(-1) + 0.5 * x.square().sum(1)

    return MLPEnergy().eval()


def handwritten_ula(energy, x, steps: int, h: float, generator) -> torch.Tensor:
    sigma = math.sqrt(2.0 * h)
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        e = energy(x)
        (g,) = torch.autograd.grad(e.sum(), x)
        x = x.detach() - h * g + sigma * torch.randn(x.shape, generator=generator,
                                                     device=x.device)
    return x


def handwritten_mala(energy, x, steps: int, h: float, generator) -> torch.Tensor:
    sigma = math.sqrt(2.0 * h)
    x = x.detach().requires_grad_(True)
    e = energy(x)
    (g,) = torch.autograd.grad(e.sum(), x)
    x, e = x.detach(), e.detach()
    for _ in range(steps):
        xi = torch.randn(x.shape, generator=generator, device=x.device)
        y = (x - h * g + sigma * xi).requires_grad_(True)
        ey = energy(y)
        (gy,) = torch.autograd.grad(ey.sum(), y)
        y, ey = y.detach(), ey.detach()
        log_ratio = (e.double() - ey.double()) + 0.5 * xi.square().sum(1, dtype=torch.float64) \
            - (x - y + h * gy).square().sum(1, dtype=torch.float64) / (4.0 * h)
        u = torch.rand(x.shape[0], generator=generator, dtype=torch.float64, device=x.device)
        accept = torch.log(u) < log_ratio
        a = accept[:, None]
        x, e, g = torch.where(a, y, x), torch.where(accept, ey, e), torch.where(a, gy, g)
    return x


ISSUE_CONFIG = (100, 9)        # issue 15: 100 steps, the minimum of 9 interleaved repeats
CONFIGS = (ISSUE_CONFIG, (200, 11))
PAIRS = [("langevin / handwritten ULA", "sample langevin", "handwritten ULA", "ULA A/A"),
         ("langevin composed / handwritten ULA", "sample langevin, composed", "handwritten ULA",
          "ULA A/A"),
         ("mala adapt=False / handwritten MALA", "sample mala, adapt=False", "handwritten MALA",
          "MALA A/A"),
         ("mala (adapting) / handwritten MALA", "sample mala", "handwritten MALA", "MALA A/A")]
AA = {"ULA A/A": ("handwritten ULA (A/A)", "handwritten ULA"),
      "MALA A/A": ("handwritten MALA (A/A)", "handwritten MALA")}


def measure(energy, composed, x0, device: torch.device, steps: int,
            repeats: int) -> dict[str, list[float]]:
    """Seconds per step of every variant in each of ``repeats`` interleaved, rotated rounds."""
    n, h_ula, h_mala = x0.shape[0], 0.01, 0.05

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def gen() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(0)

    runs = {
        "handwritten ULA": lambda: handwritten_ula(energy, x0, steps, h_ula, gen()),
        "handwritten ULA (A/A)": lambda: handwritten_ula(energy, x0, steps, h_ula, gen()),
        "sample langevin": lambda: conceptalg.sample(energy, n, sampler="langevin", steps=steps,
                                                     step_size=h_ula, init=x0, seed=0),
        "sample langevin, composed": lambda: conceptalg.sample(
            composed, n, shape=(2,), sampler="langevin", steps=steps, step_size=h_ula, init=x0,
            seed=0),
        "handwritten MALA": lambda: handwritten_mala(energy, x0, steps, h_mala, gen()),
        "handwritten MALA (A/A)": lambda: handwritten_mala(energy, x0, steps, h_mala, gen()),
        "sample mala, adapt=False": lambda: conceptalg.sample(
            energy, n, sampler=MALA(adapt=False), steps=steps, step_size=h_mala, init=x0,
            seed=0),
        "sample mala": lambda: conceptalg.sample(energy, n, sampler="mala", steps=steps,
                                                 step_size=h_mala, init=x0, seed=0),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():                                   # warm up allocator and caches
        fn()
    names = list(runs)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]   # interleaved, rotated
        for name in order:
            fn = runs[name]
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - start) / steps)
    return times


def summarise(times: dict[str, list[float]]) -> dict[str, Any]:
    """Ratios and A/A ratios over the minimum and over the median of the repeats."""
    out: dict[str, Any] = {}
    for stat, f in (("min", min), ("median", statistics.median)):
        per = {k: f(v) for k, v in times.items()}
        out[f"{stat}_seconds_per_step"] = per
        out[f"ratios_{stat}"] = {r: per[a] / per[b] for r, a, b, _ in PAIRS}
        out[f"aa_ratios_{stat}"] = {k: per[a] / per[b] for k, (a, b) in AA.items()}
    return out


def report(steps: int, repeats: int, summary: dict[str, Any]) -> None:
    issue = " — issue 15's configuration" if (steps, repeats) == ISSUE_CONFIG else ""
    print(f"steps={steps} repeats={repeats}{issue}")
    mins, meds = summary["min_seconds_per_step"], summary["median_seconds_per_step"]
    for k in mins:
        print(f"  {k:28s} min {mins[k] * 1e3:7.3f}  median {meds[k] * 1e3:7.3f} ms/step")
    for r, _, _, a in PAIRS:
        lo, mid = summary["ratios_min"][r], summary["ratios_median"][r]
        aa_lo, aa_mid = summary["aa_ratios_min"][a], summary["aa_ratios_median"][a]
        flag = "ok" if max(lo, mid) <= 1.05 else \
            "ok by min" if lo <= 1.05 else "ABOVE TARGET 1.05"
        print(f"  ratio {r:36s} min {lo:.3f} (A/A {aa_lo:.3f})   median {mid:.3f} "
              f"(A/A {aa_mid:.3f})  {flag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=None,
                        help="run one configuration (default: 100 steps × 9 repeats, issue "
                             "15's, then 200 × 11)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sampling.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
        torch.set_flush_denormal(True)
    energy = make_energy(device)
    composed = conceptalg.compose("e", {"e": energy})   # the same MLP through the compiler
    x0 = torch.randn(args.chains, 2, generator=torch.Generator().manual_seed(1)).to(device)
    if args.steps is None and args.repeats is None:
        configs = CONFIGS
    else:
        steps = args.steps or ISSUE_CONFIG[0]
        configs = ((steps, args.repeats or (ISSUE_CONFIG[1] if steps == ISSUE_CONFIG[0]
                                            else 11)),)
    print(f"device={device} threads={torch.get_num_threads()} chains={args.chains}")
    results = []
    for steps, repeats in configs:
        times = measure(energy, composed, x0, device, steps, repeats)
        summary = summarise(times)
        report(steps, repeats, summary)
        results.append({"steps": steps, "repeats": repeats,
                         "issue_configuration": (steps, repeats) == ISSUE_CONFIG,
                         **summary, "all_seconds_per_step": times})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "sampling per-step time", "device": str(device),
        "threads": torch.get_num_threads(), "chains": args.chains,
        "energy": "MLP 2-128-128-1 SiLU + |x|^2/2",
        "flush_denormal": device.type == "cpu", "torch": torch.__version__,
        "python": platform.python_version(), "target": 1.05, "configurations": results,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
