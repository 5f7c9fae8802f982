"""Progress reports: a tqdm bar on a terminal, plain lines elsewhere (never a carriage return),
at most one line every ``every`` seconds of an injected clock and one at close."""

from __future__ import annotations

import doctest
import io

import pytest

import conceptalg
from conceptalg import progress
from conceptalg.progress import LineProgress, NoProgress, progress_bar


class Clock:
    """A fake clock: each call returns the next of the given times."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# (id, total, every, the clock at the start, then (time, n) per update, the close time,
#  the lines written)
LINES = [
    ("one line at close", 10, 5.0, 0.0, [(1.0, 4), (2.0, 6)], 2.5,
     ["train: 10/10 (100%) [00:02, 4 it/s]"]),
    ("paced by every", 8, 5.0, 0.0, [(4.9, 2), (5.0, 2), (9.0, 2), (10.5, 2)], 11.0,
     ["train: 4/8 (50%) [00:05, 1.25 s/it]", "train: 8/8 (100%) [00:10, 1.31 s/it]",
      "train: 8/8 (100%) [00:11, 1.38 s/it]"]),
    ("every 0: each update", 3, 0.0, 0.0, [(1.0, 1), (2.0, 2)], 2.0,
     ["train: 1/3 (33%) [00:01, 1 it/s]", "train: 3/3 (100%) [00:02, 1.5 it/s]",
      "train: 3/3 (100%) [00:02, 1.5 it/s]"]),
    ("no total", None, 5.0, 0.0, [(1.0, 7)], 2.0, ["train: 7 [00:02, 3.5 it/s]"]),
    ("total 0", 0, 5.0, 0.0, [], 1.0, ["train: 0/0 [00:01, 0 it/s]"]),
    ("no time passed", 4, 5.0, 3.0, [(3.0, 1)], 3.0, ["train: 1/4 (25%) [00:00, ? it/s]"]),
    ("hours", 2, 5000.0, 0.0, [(3600.0, 1)], 3725.0,
     ["train: 1/2 (50%) [1:02:05, 3.72e+03 s/it]"]),
]


@pytest.mark.parametrize("total, every, start, updates, end, lines",
                         [c[1:] for c in LINES], ids=[c[0] for c in LINES])
def test_plain_lines_are_paced_by_the_clock(total, every, start, updates, end, lines):
    out = io.StringIO()
    clock = Clock(start, *(t for t, _ in updates), end)
    bar = progress_bar(total, "train", stream=out, every=every, clock=clock)
    assert isinstance(bar, LineProgress)
    for _, n in updates:
        bar.update(n)
    bar.close()
    bar.close()                                                  # a second close writes nothing
    assert out.getvalue().splitlines() == lines
    assert "\r" not in out.getvalue() and out.getvalue().endswith("\n")


def test_postfix_and_unit_show_in_the_next_line():
    out = io.StringIO()
    bar = progress_bar(4, "sampling (mala)", unit="step", stream=out, clock=Clock(0.0, 6.0, 8.0))
    bar.set_postfix({"loss": "0.25"}, refresh=False)
    bar.update(2)
    bar.set_postfix(E=1.5)
    bar.close()
    assert out.getvalue().splitlines() == [
        "sampling (mala): 2/4 (50%) [00:06, 3 s/step, loss=0.25]",
        "sampling (mala): 2/4 (50%) [00:08, 4 s/step, E=1.5]"]


def test_a_terminal_gets_a_tqdm_bar_on_that_stream():
    from tqdm import tqdm

    out = Terminal()
    bar = progress_bar(5, "train", stream=out)
    assert isinstance(bar, tqdm)
    bar.update(5)
    bar.set_postfix({"loss": "1"}, refresh=False)
    bar.close()
    assert "\r" in out.getvalue() and "5/5" in out.getvalue()


def test_disabled_reports_nothing():
    out = io.StringIO()
    bar = progress_bar(5, "train", enabled=False, stream=out)
    assert isinstance(bar, NoProgress)
    with bar:
        bar.update(3)
        bar.set_postfix({"loss": 1})
    assert out.getvalue() == ""


def test_the_default_stream_is_stderr_at_call_time(capsys):
    bar = progress_bar(2, "train", clock=Clock(0.0, 1.0))
    bar.close()
    assert capsys.readouterr().err == "train: 0/2 (0%) [00:01, 0 it/s]\n"


@pytest.mark.parametrize("every", [-1.0, float("nan"), float("inf"), "5", True])
def test_every_is_checked(every):
    with pytest.raises(ValueError, match="every must be a finite number of seconds ≥ 0"):
        LineProgress(3, "train", stream=io.StringIO(), every=every)


SAMPLED = [("mala", dict(sampler="mala", steps=20), "sampling (mala): 20/20 (100%)"),
           ("annealed", dict(sampler="langevin", steps=5, sigmas=[2.0, 1.0, 0.0]),
            "sampling (langevin): 15/15 (100%)"),
           ("heun with a trailing zero", dict(sampler="heun", sigmas=[2.0, 1.0, 0.0]),
            "sampling (heun): 2/2 (100%)")]


@pytest.mark.parametrize("run, last", [s[1:] for s in SAMPLED], ids=[s[0] for s in SAMPLED])
def test_sampling_without_a_terminal_writes_plain_lines(run, last, capsys):
    energy = lambda x, sigma=None: 0.5 * (x ** 2).sum(1)  # noqa: E731
    conceptalg.sample(energy, 8, shape=(2,), seed=0, progress=True, **run)
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines()[-1].startswith(last), err


def test_module_examples_run():
    assert doctest.testmod(progress, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_sampling_without_progress_writes_nothing(capsys):
    conceptalg.sample(lambda x: (x ** 2).sum(1), 4, shape=(2,), steps=4, seed=0)
    assert capsys.readouterr().err == ""
