"""Compiler speed: `compose()` for 1/10/100-leaf expressions, and `forward` of K linear heads on
one MLP trunk, batched through `concept_energies` versus one call per head.

    python bench/compose.py          # prints a table, writes bench/results/compose.json

One CPU thread; the compared runs are interleaved (each repeat runs every arm once, in turn) and
each figure is the median over repeats. Every ratio has an A/A ratio beside it: the same
denominator measured twice, interleaved, so the noise of this machine is on the same line.
"compose cold" clears the parse and normal-form caches first; "compose warm" is a repeat of the
same text (parse and normal form cached, resolution and planning redone).
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conceptalg import ConceptLibrary, compose, parse  # noqa: E402
from conceptalg.compiler import _normal_form  # noqa: E402

REPEATS = 15


def expression(leaves: int) -> str:
    """And/Or/Not/weights mixed, ``leaves`` distinct concepts, every negation anchored."""
    parts = [f"{'2*' if i % 4 == 2 else ''}c{i}" for i in range(leaves)]
    text = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        text += [" & ~", " | ", " & "][i % 3] + part
    return text


def timed(fn, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def interleaved(arms: dict, number: int, repeats: int = REPEATS) -> dict[str, float]:
    """Median seconds per call of each arm; each repeat runs all arms once, in turn."""
    times: dict[str, list[float]] = {name: [] for name in arms}
    for fn in arms.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in arms.items():
            times[name].append(timed(fn, number))
    return {name: statistics.median(ts) for name, ts in times.items()}


class LinearHeads(torch.nn.Module):
    """An MLP trunk (2 → 256 → 256, SiLU) with one linear energy head per concept."""

    def __init__(self, names):
        super().__init__()
        self.index = {n: i for i, n in enumerate(names)}
        self.trunk = torch.nn.Sequential(torch.nn.Linear(2, 256), torch.nn.SiLU(),
                                         torch.nn.Linear(256, 256), torch.nn.SiLU())
        self.heads = torch.nn.Linear(256, len(names))
        self._rows: dict[tuple, torch.Tensor] = {}

    def concept_energies(self, x, heads):
        key = tuple(heads)
        rows = self._rows.get(key)
        if rows is None:
            rows = self._rows[key] = torch.tensor([self.index[h] for h in heads])
        h = self.trunk(x)  # [B, 256]
        return h @ self.heads.weight[rows].T + self.heads.bias[rows]  # [B, K]


def bench_compose(results: dict) -> None:
    lib = ConceptLibrary({f"c{i}": (lambda x: x.sum(-1)) for i in range(100)})
    texts = {n: expression(n) for n in (1, 10, 100)}

    def cold(text):
        def run():
            parse.cache_clear()
            _normal_form.cache_clear()
            compose(text, lib)
        return run

    arms = {}
    for n, text in texts.items():
        arms[f"cold {n}"] = cold(text)
        arms[f"warm {n}"] = lambda text=text: compose(text, lib)
    arms["cold 1 (A/A)"] = cold(texts[1])
    arms["warm 1 (A/A)"] = lambda: compose(texts[1], lib)
    t = interleaved(arms, number=20)
    for mode in ("cold", "warm"):
        aa = t[f"{mode} 1 (A/A)"] / t[f"{mode} 1"]
        for n in (1, 10, 100):
            results[f"compose {mode}, {n} leaves (us)"] = 1e6 * t[f"{mode} {n}"]
        for n in (10, 100):
            ratio = t[f"{mode} {n}"] / t[f"{mode} 1"]
            results[f"compose {mode}, {n} leaves / 1 leaf"] = (ratio, aa)


def bench_forward(results: dict, batch: int = 1000) -> None:
    torch.manual_seed(0)
    model = LinearHeads([f"h{i}" for i in range(8)]).eval()
    x = torch.randn(batch, 2)
    energies = {}
    for k in (1, 2, 4, 8):
        text = " & ".join(f"h{i}" for i in range(k))
        batched = ConceptLibrary().add_model(model, [f"h{i}" for i in range(k)])
        separate = ConceptLibrary()
        for i in range(k):
            separate.add(f"h{i}", lambda x, name=f"h{i}": model.concept_energies(x, [name])[:, 0])
        energies[f"batched K={k}"] = compose(text, batched)
        energies[f"separate K={k}"] = compose(text, separate)
    energies["batched K=1 (A/A)"] = compose("h0", ConceptLibrary().add_model(model, ["h0"]))
    raw = lambda x: model.concept_energies(x, ["h0"])[:, 0]  # noqa: E731

    def forward(fn):
        def run():
            with torch.no_grad():
                fn(x)
        return run

    def with_grad(fn):
        def run():
            xg = x.detach().requires_grad_(True)
            torch.autograd.grad(fn(xg).sum(), xg)
        return run

    for label, wrap in (("forward", forward), ("energy+grad", with_grad)):
        arms = {name: wrap(e) for name, e in energies.items()}
        arms["hand-written K=1"] = wrap(raw)
        t = interleaved(arms, number=10)
        aa = t["batched K=1 (A/A)"] / t["batched K=1"]
        for k in (1, 2, 4, 8):
            results[f"{label} batched K={k} (ms)"] = 1e3 * t[f"batched K={k}"]
            results[f"{label} separate K={k} (ms)"] = 1e3 * t[f"separate K={k}"]
        for k in (2, 4, 8):
            ratio = t[f"batched K={k}"] / t["batched K=1"]
            results[f"{label} batched K={k} / batched K=1"] = (ratio, aa)
            results[f"{label} separate K={k} / batched K={k}"] = (
                t[f"separate K={k}"] / t[f"batched K={k}"], aa)
        results[f"{label} composed K=1 / hand-written call"] = (
            t["batched K=1"] / t["hand-written K=1"], aa)


def main() -> None:
    torch.set_num_threads(1)
    results: dict = {}
    bench_compose(results)
    bench_forward(results)
    width = max(map(len, results))
    for key, value in results.items():
        if isinstance(value, tuple):
            print(f"{key:<{width}}  {value[0]:9.3f}   (A/A {value[1]:.3f})")
        else:
            print(f"{key:<{width}}  {value:9.3f}")
    payload = {
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "threads": torch.get_num_threads(),
                        "repeats": REPEATS, "batch": 1000},
        "results": {k: ({"ratio": v[0], "aa_ratio": v[1]} if isinstance(v, tuple) else v)
                    for k, v in results.items()},
    }
    out = ROOT / "bench" / "results" / "compose.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
