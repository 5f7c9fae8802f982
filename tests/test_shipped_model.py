"""The shipped ``models/shapes`` model: small, loadable, documented, and its samples of a seen
(shape, colour) pair are clean objects of that pair far more often than chance."""

import math
import re
from pathlib import Path

import pytest
import torch

import conceptalg
from conceptalg.evaluation.classifiers import DecoderEvaluator
from conceptalg.evaluation.metrics import score
from conceptalg.evaluation.protocol import model_info
from conceptalg.data.shapes import COLORS, DEFAULT_HOLDOUT, SHAPES

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "shapes"


def test_shipped_model_is_small_and_complete():
    files = [p for p in SHIPPED.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    assert size <= 5 * 2 ** 20, f"models/shapes is {size / 2 ** 20:.1f} MiB, over 5 MiB"
    info = model_info(SHIPPED)
    model = info.model
    config = model.config
    assert config.objective == "dsm" and config.sample_shape == (3, 32, 32)
    assert info.data == "shapes" and info.holdout == DEFAULT_HOLDOUT
    names = set(model.as_concept_library().names())
    assert {f"shape={s}" for s in SHAPES} | {f"color={c}" for c in COLORS} <= names
    # it composes and samples with its own defaults: no other argument needed
    assert config.sampler_defaults["sampler"] == "heun" and config.sampler_defaults["sigmas"]
    assert config.composition["semantics"] == "guidance" and \
        config.composition["guidance_scale"] > 0
    energy = conceptalg.compose("red & circle", model)
    assert energy.semantics == "guidance" and energy.semantics_from_library


def test_models_readme_gives_the_commands_that_made_it():
    text = (ROOT / "models" / "README.md").read_text()
    step = model_info(SHIPPED).step
    train = re.search(r"conceptalg train --data shapes .*--objective dsm", text)
    export = re.search(r"conceptalg export \S+ models/shapes", text)
    assert train and export, "models/README.md must give the train and export commands"
    assert f"step {step}" in text, "models/README.md must name the step it was exported at"


@pytest.mark.slow
def test_seen_pair_samples_are_clean_objects_of_that_pair():
    """Chance: a sample whose (shape, colour) reading were uniform over the 18 pairs would be
    the asked pair with p0 = 1/18 even if every sample were clean. One-sided binomial test of
    the protocol's strict accuracy (one clean object, both concepts right) at z > 4."""
    info = model_info(SHIPPED)
    shape, color = "circle", "blue"
    assert (shape, color) not in info.holdout
    n = 48
    x = conceptalg.sample(conceptalg.compose(f"{shape} & {color}", info.model), n, seed=0)
    assert x.shape == (n, 3, 32, 32) and torch.isfinite(x).all()
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    hits = score(f"{shape} & {color}", DecoderEvaluator()(x)).accuracy.successes
    p0 = 1 / 18
    z = (hits - n * p0) / math.sqrt(n * p0 * (1 - p0))
    assert z > 4, f"{hits}/{n} samples are clean {color} {shape}s (chance {n * p0:.1f}); z = {z:.1f}"
