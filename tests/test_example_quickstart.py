"""The main job's shapes part (examples/quickstart.py, ``shapes_part``) on the shipped model:
every expression sampled and labelled — the OR with its branches, the NOT with guidance's
negation setting — and the figure written (two samples each, to stay fast)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib.image

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "examples" / "quickstart.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def test_the_shapes_part_shows_an_or_and_a_not(tmp_path, capsys):
    example = _example()
    assert {"red | blue", "circle & ~red"} <= set(example.SHAPES_EXPRESSIONS)
    example.shapes_part(ROOT / "models" / "shapes", tmp_path, n=2)
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if "(n = 2, exact decoder)" in line]
    assert len(lines) == len(example.SHAPES_EXPRESSIONS)
    union = next(line for line in lines if line.startswith("red | blue"))
    assert "branches red " in union and ", blue " in union
    negation = next(line for line in lines if line.startswith("circle & ~red"))
    assert "negation x" in negation and "at σ ≥" in negation
    image = matplotlib.image.imread(tmp_path / "quickstart-shapes.png")
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_the_scenes_part_asks_for_bound_objects_and_a_held_out_pair(tmp_path, capsys):
    example = _example()
    bound = [t for t in example.SCENES_EXPRESSIONS if "[" in t]
    assert bound and any("red & circle" in t for t in bound)   # a pair no training scene holds
    example.scenes_part(ROOT / "models" / "scenes", tmp_path, n=2)
    lines = [line for line in capsys.readouterr().out.splitlines()
             if "(n = 2, exact scenes decoder)" in line]
    assert [line.rsplit(" correct ", 1)[0].strip() for line in lines] == \
        [t.strip() for t in example.SCENES_EXPRESSIONS]
    image = matplotlib.image.imread(tmp_path / "quickstart-scenes.png")
    assert image.shape[0] > 100 and image.shape[1] > 100
