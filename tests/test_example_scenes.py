"""The scenes example runs end to end (a tiny model when none is given) and draws its figure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib.image

ROOT = Path(__file__).resolve().parents[1]


def test_scenes_example_writes_its_figure(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("scenes_example", ROOT / "examples" / "scenes.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--model", str(example.tiny_model(tmp_path / "tiny", 3)), "--n", "2",
                         "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("of 2 correct") == len(example.REQUESTS)
    image = matplotlib.image.imread(tmp_path / "scenes.png")
    assert image.shape[0] > 100 and image.shape[1] > 100
