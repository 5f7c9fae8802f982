"""Why classifier heads do not extrapolate on ``shapes``: the colour shortcut, measured.

A classifier trained on the training split (docs/design.md §7's hold-out: every colour seen with two
shapes only) is asked the shape of real images of the held-out pairs. Three stems feed the same
small conv net and per-factor heads:

- ``rgb``: an ordinary first convolution over the three channels (what every arm uses);
- ``colour-blind``: one convolution applied to each channel alone with shared weights, then the
  maximum over channels — shape evidence that cannot depend on which channels are lit (and so
  no colour at all);
- ``both``: the two side by side (shape can be read colour-blind, colour from the rgb path).

and two hold-outs: the default six pairs, and ``(circle, red)`` alone. Each cell trains
``--steps`` Adam steps of cross-entropy on ``--n`` images (batch 64, pixel noise up to 0.05, one
seed), then scores fresh real images of seen and held-out pairs. Then the same for the
library's own JEM classifier-head models, with and without ``colour_blind=("shape", "size")``
(those heads on a colour-blind trunk, ``ModelConfig.colour_blind``).

    .venv/bin/python bench/shortcut.py [--steps 1200] [--model-steps 300] [--threads 2]

Writes bench/results/shortcut.json and shortcut.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conceptalg.data.shapes import DEFAULT_HOLDOUT, FACTORS, ShapesDataset  # noqa: E402
from conceptalg.models.backbones import colour_blind_conv  # noqa: E402
from conceptalg.training import Trainer, builtin_data, default_train_config  # noqa: E402

RESULTS = ROOT / "bench" / "results"
STEMS = ("rgb", "colour-blind", "both")
HOLDOUTS = {"default six pairs": DEFAULT_HOLDOUT, "(circle, red) only": {("circle", "red")}}


class StemClassifier(nn.Module):
    """A 3-conv classifier (global mean and max pooling, one linear head per factor) whose
    first convolution is ``stem`` (module docstring)."""

    def __init__(self, stem: str, width: int = 32) -> None:
        super().__init__()
        self.stem, self.width = stem, width
        self.rgb = nn.Conv2d(3, width, 3, stride=2, padding=1) if stem != "colour-blind" else None
        self.tied = nn.Conv2d(1, width, 3, stride=2, padding=1) if stem != "rgb" else None
        c_in = width * (2 if stem == "both" else 1)
        self.rest = nn.Sequential(nn.SiLU(), nn.Conv2d(c_in, 2 * width, 3, stride=2, padding=1),
                                  nn.SiLU(), nn.Conv2d(2 * width, 2 * width, 3, padding=1),
                                  nn.SiLU())
        self.heads = nn.ModuleDict({f: nn.Linear(4 * width, len(v)) for f, v in FACTORS.items()})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        parts = []
        if self.tied is not None:
            parts.append(colour_blind_conv(self.tied, x))                     # [B, W, r/2, r/2]
        if self.rgb is not None:
            parts.append(self.rgb(x))
        h = self.rest(torch.cat(parts, 1))                                   # [B, 2W, r', r']
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], 1)
        return {f: head(h) for f, head in self.heads.items()}


def accuracy(logits_of, holdout, split: str, seed: int) -> dict[str, float]:
    """Per-factor and all-factor accuracy of ``logits_of(images) -> {factor: [N, V]}`` on 600
    fresh real images of ``split``."""
    data = ShapesDataset(600, seed=seed, split=split, holdout=holdout)
    with torch.no_grad():
        out = logits_of(data.images)
    hits = {f: out[f].argmax(1) == data.labels[f] for f in FACTORS}
    return {**{f: float(h.float().mean()) for f, h in hits.items()},
            "all": float(torch.stack(list(hits.values())).all(0).float().mean())}


def scored(logits_of, holdout, seed: int, start: float) -> dict:
    return {"seen": accuracy(logits_of, holdout, "train", seed + 1),
            "held out": accuracy(logits_of, holdout, "heldout", seed + 2),
            "seconds": round(time.perf_counter() - start, 1)}


def run_cell(stem: str, holdout, steps: int, n: int, seed: int) -> dict:
    torch.manual_seed(seed)
    net = StemClassifier(stem)
    data = ShapesDataset(n, seed=seed, split="train", holdout=holdout)
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(data), (64,), generator=g)
        x = data.images[idx]
        x = (x + 0.05 * torch.rand(64, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g))
        out = net(x.clamp(0, 1))
        loss = sum(nn.functional.cross_entropy(out[f], data.labels[f][idx]) for f in FACTORS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return scored(net, holdout, seed, start)


def run_model(colour_blind: tuple[str, ...], holdout, steps: int, n: int, seed: int) -> dict:
    """The library's JEM classifier-head model (conv trunk width 16, no spectral norm, 5
    Langevin steps, batch 32, lr 2e-3), its shape and size heads on the colour-blind trunk or
    not, trained ``steps`` iterations; scored like :func:`run_cell`."""
    data = builtin_data("shapes", n=n, seed=seed, holdout=holdout)
    cfg = default_train_config(data.sample_shape, steps=steps, langevin_steps=5, batch_size=32,
                               lr=2e-3, seed=seed)
    trainer = Trainer(data, config=cfg, heads="classifier", colour_blind=colour_blind,
                      backbone_options={"width": 16, "spectral_norm": False})
    start = time.perf_counter()
    trainer.fit()
    return scored(trainer.model.eval().classifier_logits, holdout, seed, start)


def _table(kind: str, cells: dict) -> list[str]:
    lines = [f"| hold-out | {kind} | seen: all factors | held out: shape | held out: colour | "
             "held out: all factors |", "|---|---|---|---|---|---|"]
    for name, row in cells.items():
        for variant, c in row.items():
            lines.append(f"| {name} | {variant} | {100 * c['seen']['all']:.1f} | "
                         f"{100 * c['held out']['shape']:.1f} | "
                         f"{100 * c['held out']['color']:.1f} | "
                         f"{100 * c['held out']['all']:.1f} |")
    return lines


def markdown(result: dict) -> str:
    lines = [f"Classifiers trained on the `shapes` training split ({result['steps']} steps, "
             f"{result['n']} images, seed {result['seed']}), scored on 600 fresh real images "
             f"each of seen and held-out pairs (% correct).", ""]
    lines += _table("stem", result["cells"])
    lines += ["", f"The library's JEM classifier-head models (`heads=\"classifier\"`, "
                  f"{result['model steps']} steps, width 16):", ""]
    lines += _table("colour_blind", result["models"])
    lines += ["", "Chance: shape 33 %, colour 17 %, a (shape, colour) pair 5.6 %."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--model-steps", type=int, default=300,
                        help="training iterations of the JEM models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"steps": args.steps, "n": args.n, "seed": args.seed, "cells": {}}
    for name, holdout in HOLDOUTS.items():
        result["cells"][name] = {}
        for stem in STEMS:
            cell = run_cell(stem, holdout, args.steps, args.n, args.seed)
            result["cells"][name][stem] = cell
            print(f"{name}, {stem}: held-out shape {100 * cell['held out']['shape']:.1f} %, "
                  f"seen {100 * cell['seen']['all']:.1f} % ({cell['seconds']} s)", flush=True)
    result["model steps"], result["models"] = args.model_steps, {}
    for name, holdout in HOLDOUTS.items():
        result["models"][name] = {}
        for blind in ((), ("shape", "size")):
            cell = run_model(blind, holdout, args.model_steps, 3000, args.seed)
            result["models"][name][", ".join(blind) or "none"] = cell
            print(f"{name}, JEM colour_blind={blind}: held-out shape "
                  f"{100 * cell['held out']['shape']:.1f} % ({cell['seconds']} s)", flush=True)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shortcut.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (out / "shortcut.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
