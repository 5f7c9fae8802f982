"""Parse speed: `import conceptalg`, the first parse in a fresh process, and steady-state parses.

    python bench/parse.py            # prints a table, writes bench/results/parse.json

"cold" is the first parse in a new process (imports lark and builds the LALR tables);
"uncached" re-parses text the parser has not seen (the lru cache bypassed); "cached" is a repeat
of the same text (an lru-cache hit). Each figure is the median of several runs; an A/A row (the
same measurement taken twice, interleaved) shows the noise of this machine.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def expression(leaves: int) -> str:
    ops = ["&", "|", "&"]
    parts = [f"{'~' if i % 3 == 1 else ''}{'2*' if i % 4 == 2 else ''}c{i}" for i in range(leaves)]
    text = parts[0]
    for i, part in enumerate(parts[1:]):
        text += f" {ops[i % 3]} " + (f"({part} | d{i})" if i % 5 == 4 else part)
    return text


def in_fresh_process(code: str, repeats: int) -> float:
    """Median wall time (s) that `code` reports for itself in a new interpreter."""
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=ROOT, check=True)
        times.append(float(out.stdout.strip()))
    return statistics.median(times)


def timed(fn, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def main() -> None:
    results: dict[str, float] = {}
    results["import conceptalg (ms)"] = 1e3 * in_fresh_process(
        "import time; t=time.perf_counter(); import conceptalg; print(time.perf_counter()-t)", 7)
    for leaves in (1, 10, 100):
        text = expression(leaves)
        results[f"cold first parse, {leaves} leaves (ms)"] = 1e3 * in_fresh_process(
            f"import time, conceptalg; t=time.perf_counter(); conceptalg.parse({text!r}); "
            "print(time.perf_counter()-t)", 5)

    from conceptalg import parse

    parse("warm & up")
    for leaves in (1, 10, 100):
        text = expression(leaves)
        uncached, uncached_again, cached = [], [], []
        for _ in range(7):  # interleave the compared measurements
            uncached.append(timed(lambda: parse.__wrapped__(text), 50))
            cached.append(timed(lambda: parse(text), 2000))
            uncached_again.append(timed(lambda: parse.__wrapped__(text), 50))
        u, u2 = statistics.median(uncached), statistics.median(uncached_again)
        results[f"uncached parse, {leaves} leaves (us)"] = 1e6 * u
        results[f"A/A ratio, uncached {leaves} leaves"] = u2 / u
        results[f"cached parse, {leaves} leaves (us)"] = 1e6 * statistics.median(cached)

    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value:10.3f}")
    out = ROOT / "bench" / "results" / "parse.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
