"""Evaluators on real data, the extrapolation matrix and the protocol with oracle generators,
and the joint-code baseline."""

import csv

import pytest
import torch

from conceptalg import parse
from conceptalg.data.scenes import ScenesDataset
from conceptalg.data.shapes import (CONCEPTS, DEFAULT_HOLDOUT, FACTORS, ShapesDataset, render,
                                    render_batch)
from conceptalg.evaluation.baseline import (JointSampler, joint_data, joint_model, load_joint,
                                            pair_name, save_joint)
from conceptalg.evaluation.classifiers import (ClassifierEvaluator, DecoderEvaluator,
                                               ScenesEvaluator, make_evaluator,
                                               train_factor_classifiers)
from conceptalg.evaluation.extrapolation import (extrapolation_matrix, is_held_out,
                                                 write_matrix_csv)
from conceptalg.evaluation.figures import save_extrapolation_figure
from conceptalg.evaluation.metrics import correct
from conceptalg.evaluation.protocol import evaluate_expressions
from conceptalg.expr import And, Concept, concepts


@pytest.fixture(scope="module")
def real():
    return ShapesDataset(240, seed=3, split="all")


def test_decoder_labels_are_exact_on_rendered_images(real):
    labels = DecoderEvaluator()(real.images)
    assert bool(labels.valid.all())
    for name in CONCEPTS:
        f = next(f for f, vs in FACTORS.items() if name in vs)
        expected = real.labels[f] == FACTORS[f].index(name)
        assert torch.equal(correct(name, labels), expected), name
    assert torch.allclose(labels.centres[:, 0], real.centres, atol=0.01)


def test_decoder_rejects_what_is_not_one_clean_object(real):
    two = (real.images[0] + real.images[1]).clamp(0, 1)
    blank = torch.zeros(3, 32, 32)
    noise = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = DecoderEvaluator()(torch.stack([two, blank, noise, real.images[0]]))
    assert labels.valid.tolist() == [False, False, False, True]
    assert DecoderEvaluator().real_accuracy(n=100)["all"] == 1.0


def test_classifier_evaluator_reads_every_pair_of_real_data(real):
    net = train_factor_classifiers(steps=200, n=3000, test_n=300, seed=0)
    report = net.report
    assert report["trained on"].endswith("split 'all'")
    assert report["all pairs"]["all"] >= 0.95
    assert report["held-out pairs"]["shape"] >= 0.95  # the pairs the generators never see
    labels = ClassifierEvaluator(net)(real.images)
    for f in FACTORS:
        assert (labels.values[f] == real.labels[f]).float().mean() >= 0.95


@pytest.mark.slow
def test_classifier_trained_on_the_training_split_entangles_shape_with_colour():
    """Why evaluators see every pair: on the generators' split, each colour comes with two
    shapes only, and the classifier reads held-out pairs wrongly."""
    net = train_factor_classifiers(steps=200, n=3000, test_n=300, seed=0, split="train")
    assert net.report["held-out pairs"]["shape"] < 0.5
    assert net.report["held-out pairs"]["color"] >= 0.95


def test_scenes_evaluator_finds_real_objects():
    data = ScenesDataset(60, seed=5)
    evaluator = ScenesEvaluator()
    labels = evaluator(data.images)
    assert bool(labels.valid.all())
    for i in range(len(data)):
        for k in range(int(data.counts[i])):
            x, y = data.centres[i, k].tolist()
            assert bool(labels.concept(Concept("at", args=(x + 0.05, y))).__getitem__(i))
    far = labels.concept(Concept("at", args=(-1.0, -1.0)))
    assert not bool(far.any())
    assert evaluator.real_accuracy(n=60)["all"] == 1.0


def test_scenes_read_labels_keep_the_objects_of_an_unclean_scene():
    data = ScenesDataset(20, seed=6, max_objects=2)
    x = data.images.clone()
    x[:, :, 0:3, 0:3] = 0.5  # a grey 3×3 speck in a corner: no palette colour, not an object
    strict, loose = ScenesEvaluator()(x), ScenesEvaluator(clean_only=False)(x)
    assert not bool(strict.valid.any()) and bool(loose.valid.all())
    for i in range(len(data)):
        x0, y0 = data.centres[i, 0].tolist()
        at = Concept("at", args=(x0, y0))
        assert not bool(strict.concept(at)[i]) and bool(loose.concept(at)[i])
    assert not bool(loose.concept(Concept("at", args=(0.5, -1.0))).any())


def test_make_evaluator_choices():
    assert isinstance(make_evaluator("shapes"), DecoderEvaluator)
    assert isinstance(make_evaluator("scenes"), ScenesEvaluator)
    with pytest.raises(ValueError, match="decoder only"):
        make_evaluator("scenes", "classifier")
    with pytest.raises(ValueError, match="no evaluator"):
        make_evaluator("toy2d")


# --- oracle generators ----------------------------------------------------------------------

def oracle(expr, n, seed):
    """Renders exactly what a conjunction of factor values asks for (other factors random)."""
    g = torch.Generator().manual_seed(seed)
    wanted = {}
    for c in concepts(parse(expr) if isinstance(expr, str) else expr):
        f = c.factor or next(f for f, vs in FACTORS.items() if c.name in vs)
        wanted[f] = FACTORS[f].index(c.name)
    codes = {f: torch.full((n,), wanted[f]) if f in wanted else
             torch.randint(len(vs), (n,), generator=g) for f, vs in FACTORS.items()}
    return render_batch(codes, 0.25 + 0.5 * torch.rand(n, 2, generator=g))


def always_red_circle(expr, n, seed):
    return render("circle", "red", "large", 0.5, 0.5).expand(n, -1, -1, -1).clone()


def test_protocol_with_an_oracle_generator():
    results = evaluate_expressions(oracle, ["red & circle", "small & blue", "square"],
                                   DecoderEvaluator(), 20, keep_samples=True)
    for s, x in results:
        assert s.accuracy.value == 1.0 and s.accuracy.n == 20 and x.shape[0] == 20
    assert results[2][0].diversity["entropy"]["color"] > 0.6   # colour left free
    [(red, _)] = evaluate_expressions(always_red_circle, ["red | blue"], DecoderEvaluator(), 8)
    assert red.mixture == {"red | blue": {"red": 1.0, "blue": 0.0}}


def test_extrapolation_matrix_csv_and_figure(tmp_path):
    m = extrapolation_matrix(always_red_circle, DecoderEvaluator(), FACTORS, "shape", "color",
                             n=3, holdout=DEFAULT_HOLDOUT)
    assert len(m.cells) == 18
    held = {k for k, c in m.cells.items() if c.held_out}
    assert held == set(DEFAULT_HOLDOUT)
    hits = {k for k, c in m.cells.items() if c.score.accuracy.value == 1.0}
    assert hits == {("circle", "red")}  # the only cell this generator gets right
    assert (m.pooled(True).successes, m.pooled(True).n) == (3, 18)
    assert (m.pooled(False).successes, m.pooled(False).n) == (0, 36)
    rows = list(csv.DictReader(open(write_matrix_csv(m, tmp_path / "m.csv"))))
    assert list(rows[0]) == ["shape", "color", "held_out", "accuracy", "stderr", "n", "read"]
    assert len(rows) == 18 and sum(r["held_out"] == "True" for r in rows) == 6
    png = save_extrapolation_figure(m, tmp_path / "m.png")
    assert png.stat().st_size > 5000


def test_read_rate_counts_unclean_samples_that_accuracy_rejects():
    def red_circle_with_a_speck(expr, n, seed=0):
        x = always_red_circle(expr, n, seed)
        x[:, 1, 1:4, 1:4] = 1.0  # a separate green 3×3 speck: two objects, not valid
        return x

    m = extrapolation_matrix(red_circle_with_a_speck, DecoderEvaluator(), FACTORS, "shape",
                             "color", n=4, holdout=DEFAULT_HOLDOUT)
    cell = m.cells[("circle", "red")]
    assert cell.score.accuracy.value == 0.0 and cell.read.value == 1.0
    assert (m.pooled(True, read=True).successes, m.pooled(True, read=True).n) == (4, 24)
    assert m.pooled(False, read=True).successes == 0


@pytest.mark.parametrize("factors,values,expected", [
    (("shape", "color"), ("circle", "red"), True),
    (("color", "shape"), ("red", "circle"), True),
    (("shape", "color"), ("circle", "green"), False),
    (("shape", "size"), ("circle", "small"), False),
])
def test_is_held_out(factors, values, expected):
    assert is_held_out(factors, values, DEFAULT_HOLDOUT) is expected
    assert is_held_out(factors, values, frozenset()) is False


def test_extrapolation_matrix_rejects_unknown_factors():
    with pytest.raises(ValueError, match="no factor 'texture'"):
        extrapolation_matrix(oracle, DecoderEvaluator(), FACTORS, "shape", "texture")


# --- the joint-code baseline ------------------------------------------------------------------

def test_joint_baseline_trains_samples_and_round_trips(tmp_path):
    from conceptalg.training import Trainer, default_train_config

    data = joint_data(200)
    assert set(data.labels["pair"].unique().tolist()) == {
        data.factors["pair"].index(pair_name(s, c)) for s in ("circle", "square", "triangle")
        for c in FACTORS["color"] if (s, c) not in DEFAULT_HOLDOUT}
    trainer = Trainer(data, model=joint_model({"width": 4}), config=default_train_config(
        data.sample_shape, steps=2, batch_size=8, log_every=1))
    trainer.fit()
    generate = JointSampler(trainer.model, steps=3)
    x = generate(And(Concept("circle"), Concept("red", factor="color")), 3, 0)  # held out
    assert x.shape == (3, 3, 32, 32)
    for bad in ("red", "red & blue", "circle & ~red", "red | circle"):
        with pytest.raises(ValueError, match="one \\(shape, colour\\) pair"):
            generate(bad, 2, 0)
    loaded = load_joint(save_joint(trainer.model, tmp_path / "joint"))
    assert torch.equal(JointSampler(loaded, steps=3)("red & circle", 3, 0), x)
