"""The exact check of bindings on decoded scenes (conceptalg.evaluation.bindings) and the
bindings benchmark's scoring path (bench/bindings_eval.py) with oracle generators."""

import sys
from pathlib import Path

import pytest
import torch

from conceptalg.data.render import draw
from conceptalg.data.scenes import ScenesDataset
from conceptalg.data.shapes import COLORS, DEFAULT_HOLDOUT, PALETTE, RADII, SHAPES
from conceptalg.errors import UnknownConceptError
from conceptalg.evaluation.bindings import bindings, check_bindings, scene_labels
from conceptalg.evaluation.classifiers import DecoderEvaluator, ScenesEvaluator, make_evaluator
from conceptalg.evaluation.decoder import decode_scenes
from conceptalg.evaluation.figures import save_bindings_figure
from conceptalg.evaluation.metrics import SampleLabels, correct, truth
from conceptalg.evaluation.protocol import evaluate_expressions
from conceptalg.expr import And, Concept, Not, Or, Weighted, concepts

ROOT = Path(__file__).resolve().parents[1]


def at(x, y):
    return Concept("at", args=(x, y))


def C(name, factor=None):
    return Concept(name, factor=factor)


def render(objects, n=1):
    """``n`` copies of one scene of ``(shape, colour, (x, y))`` objects, ``[n, 3, 32, 32]``."""
    if not objects:
        return torch.zeros(n, 3, 32, 32)
    kind = torch.tensor([SHAPES.index(s) for s, _, _ in objects])
    centres = torch.tensor([p for _, _, p in objects], dtype=torch.float32)
    rgb = PALETTE[[COLORS.index(c) for _, c, _ in objects]]
    image = draw(kind, centres, torch.full((len(objects),), RADII["small"]), rgb, 32,
                 image=torch.zeros(len(objects), dtype=torch.long), n_images=1)
    return image.expand(n, -1, -1, -1).clone()


@pytest.fixture(scope="module")
def real():
    data = ScenesDataset(40, seed=11, split="all")
    return data, ScenesEvaluator()(data.images)


def objects(data, i):
    """``(shape, colour, (x, y))`` of each object of scene ``i``."""
    return [(SHAPES[data.shapes[i, j]], COLORS[data.colors[i, j]],
             tuple(data.centres[i, j].tolist())) for j in range(int(data.counts[i]))]


def other(values, value, step=1):
    return values[(values.index(value) + step) % len(values)]


# --------------------------------------------------------------------------- real renders


def test_every_true_binding_holds_on_real_scenes(real):
    data, labels = real
    assert bool(labels.valid.all())
    for i in range(len(data)):
        for s, c, p in objects(data, i):
            place = at(*p)
            bodies = [C(s) & C(c), C(s, "shape") & C(c, "color"), C(c), C(s),
                      C(c) | C(other(COLORS, c)), C(s) & ~C(other(COLORS, c)),
                      ~C(other(SHAPES, s)) & C(c), Weighted(2, C(s)) & Weighted(0.5, C(c)),
                      C(other(SHAPES, s)) | C(c)]
            for body in bodies:
                expr = place[body]
                assert bool(correct(expr, labels)[i]), (i, str(expr))
                assert check_bindings(expr, labels).checks[0].reasons()[i] == "ok"


def test_every_swapped_binding_fails_on_real_scenes(real):
    data, labels = real
    swapped = 0
    for i in range(len(data)):
        objs = objects(data, i)
        for j, (s, c, p) in enumerate(objs):
            cases = [(C(s) & C(other(COLORS, c)), "colour"), (C(other(SHAPES, s)) & C(c), "shape"),
                     (C(other(SHAPES, s)) & C(other(COLORS, c)), "shape, colour"),
                     (~C(c), "colour"), (C(other(SHAPES, s)) | C(other(COLORS, c)),
                                         "shape & colour")]
            for s2, c2, _ in objs[:j] + objs[j + 1:]:  # the properties of another object
                if c2 != c:
                    cases.append((C(s) & C(c2), "colour"))
                if s2 != s:
                    cases.append((C(s2) & C(c), "shape"))
            for body, reason in cases:
                report = check_bindings(at(*p)[body], labels)
                assert not bool(report.correct[i]), (i, str(report.expr))
                assert report.checks[0].reasons()[i] == reason, (i, str(report.expr))
                swapped += 1
        far = next(q for q in [(0.1, 0.1), (0.9, 0.9), (0.1, 0.9), (0.9, 0.1), (0.5, 0.5)]
                   if all((torch.tensor(q) - torch.tensor(p)).norm() > 0.2 for *_, p in objs))
        s, c, _ = objs[0]
        report = check_bindings(at(*far)[C(s) & C(c)], labels)
        assert not bool(report.correct[i]) and report.checks[0].reasons()[i] == "position"
    assert swapped > 5 * len(data)


def _oracle(data, point, body):
    """Ground truth from the scene description: the true object nearest ``point`` lies within
    0.1 and ``body(shape, colour)``; plus which samples lie too near the tolerance to judge."""
    dist = (data.centres - torch.tensor(point)).norm(dim=-1)
    dist = torch.where(data.mask, dist, torch.full_like(dist, float("inf")))
    best, j = dist.min(1)
    rows = torch.arange(len(data))
    holds = torch.tensor([bool(b <= 0.1) and body(SHAPES[data.shapes[i, k]],
                                                  COLORS[data.colors[i, k]])
                          for i, b, k in zip(rows.tolist(), best.tolist(), j.tolist())])
    return holds, (best - 0.1).abs() < 0.01


@pytest.mark.parametrize("name,body,rule", [
    ("own pair", lambda s, c: C(s) & C(c), lambda s, c: lambda s2, c2: (s2, c2) == (s, c)),
    ("own colour", lambda s, c: C(c, "color"), lambda s, c: lambda s2, c2: c2 == c),
    ("not the colour", lambda s, c: ~C(c), lambda s, c: lambda s2, c2: c2 != c),
    ("shape or other colour", lambda s, c: C(s) | C(other(COLORS, c)),
     lambda s, c: lambda s2, c2: s2 == s or c2 == other(COLORS, c)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bindings_agree_with_the_scene_description_on_every_sample(real, name, body, rule):
    """Each object's binding, read on all 40 scenes, against the true scenes' own answer."""
    data, labels = real
    for i in range(0, len(data), 3):
        for s, c, p in objects(data, i):
            expected, unsure = _oracle(data, p, rule(s, c))
            got = truth(at(*p)[body(s, c)], labels)
            assert torch.equal(got[~unsure], expected[~unsure]), (i, p)


def test_a_negated_binding_is_the_complement(real):
    data, labels = real
    for i in range(0, len(data), 4):
        for s, c, p in objects(data, i):
            for body in (C(s) & C(c), C(other(COLORS, c)), ~C(s), C(s) | C(c)):
                b = at(*p)[body]
                assert torch.equal(truth(~b, labels), ~truth(b, labels))
                assert torch.equal(correct(~b, labels), labels.valid & ~truth(b, labels))


def test_plain_at_agrees_with_the_evaluator_before_bindings(real):
    """The labels of the scenes evaluator as they were (validity and centres only)."""
    data, labels = real
    d = decode_scenes(data.images)
    before = SampleLabels(d.valid, {}, {}, centres=d.centres, mask=d.mask & d.valid[:, None])
    g = torch.Generator().manual_seed(0)
    points = [tuple(p) for p in torch.rand(30, 2, generator=g).tolist()]
    points += [tuple((data.centres[i, 0] + 0.06).tolist()) for i in range(10)]
    for p in points:
        assert torch.equal(truth(at(*p), labels), truth(at(*p), before)), p
        # a binding whose body always holds is the plain at()
        assert torch.equal(truth(at(*p)[C("red") | ~C("red")], labels), truth(at(*p), labels))
        # and a binding implies its place
        assert not bool((truth(at(*p)[C("red")], labels) & ~truth(at(*p), labels)).any())


def test_loose_labels_bind_every_object_found():
    scene = render([("circle", "red", (0.3, 0.3))])
    blur = scene.clone()
    blur[0, :, 4:8, 20:24] = 0.5   # a grey speck: the scene is not clean any more
    loose, strict = ScenesEvaluator(clean_only=False)(blur), ScenesEvaluator()(blur)
    b = at(0.3, 0.3)[C("red") & C("circle")]
    assert strict.valid.tolist() == [False] and truth(b, strict).tolist() == [False]
    assert loose.valid.tolist() == [True] and truth(b, loose).tolist() == [True]


# --------------------------------------------------------------------------- hand cases

TWO = [("circle", "red", (0.3, 0.3)), ("square", "blue", (0.7, 0.7))]
HAND = [  # (id, scene, expression, correct, reasons of the bindings on the sample)
    ("own binding", TWO, at(0.3, 0.3)[C("red") & C("circle")], True, ["ok"]),
    ("qualified names", TWO, at(0.3, 0.3)[C("red", "color") & C("circle", "shape")], True,
     ["ok"]),
    ("within 0.1", TWO, at(0.38, 0.3)[C("red") & C("circle")], True, ["ok"]),
    ("beyond 0.1", TWO, at(0.42, 0.3)[C("red") & C("circle")], False, ["position"]),
    ("no object there", TWO, at(0.3, 0.75)[C("red")], False, ["position"]),
    ("another colour", TWO, at(0.3, 0.3)[C("blue") & C("circle")], False, ["colour"]),
    ("another shape", TWO, at(0.3, 0.3)[C("red") & C("square")], False, ["shape"]),
    ("the other object's pair", TWO, at(0.3, 0.3)[C("blue") & C("square")], False,
     ["shape, colour"]),
    ("negated property", TWO, at(0.3, 0.3)[~C("blue")], True, ["ok"]),
    ("negated property fails", TWO, at(0.3, 0.3)[~C("red")], False, ["colour"]),
    ("or of properties", TWO, at(0.3, 0.3)[C("blue") | C("circle")], True, ["ok"]),
    ("or of properties fails", TWO, at(0.3, 0.3)[C("blue") | C("square")], False,
     ["shape & colour"]),
    ("weights ignored", TWO, at(0.3, 0.3)[Weighted(3, C("red")) & C("circle")], True, ["ok"]),
    ("no red object at p", TWO, ~at(0.7, 0.7)[C("red")], True, ["colour"]),
    ("a red object at p", TWO, ~at(0.3, 0.3)[C("red")], False, ["ok"]),
    ("nothing at p at all", TWO, ~at(0.3, 0.75)[C("red")], True, ["position"]),
    ("two bindings", TWO, at(0.3, 0.3)[C("red") & C("circle")]
     & at(0.7, 0.7)[C("blue") & C("square")], True, ["ok", "ok"]),
    ("two bindings swapped", TWO, at(0.3, 0.3)[C("blue") & C("square")]
     & at(0.7, 0.7)[C("red") & C("circle")], False, ["shape, colour", "shape, colour"]),
    ("or of bindings", TWO, at(0.3, 0.3)[C("blue")] | at(0.7, 0.7)[C("blue")], True,
     ["colour", "ok"]),
    ("binding and plain at", TWO, at(0.7, 0.7)[C("square")] & at(0.3, 0.3), True, ["ok"]),
    ("plain at far away", TWO, at(0.7, 0.7)[C("square")] & at(0.3, 0.75), False, ["ok"]),
    ("one object", TWO[:1], at(0.3, 0.3)[C("circle") & ~C("blue")], True, ["ok"]),
    ("blank image", [], at(0.3, 0.3)[C("red")], False, ["invalid scene"]),
    ("blank: a negation is not enough", [], ~at(0.3, 0.3)[C("red")], False,
     ["invalid scene"]),
]


@pytest.mark.parametrize("scene,expr,expected,reasons", [c[1:] for c in HAND],
                         ids=[c[0] for c in HAND])
def test_hand_cases(scene, expr, expected, reasons):
    report = check_bindings(expr, ScenesEvaluator()(render(scene)))
    assert report.correct.tolist() == [expected]
    assert [check.reasons()[0] for check in report.checks] == reasons
    assert [str(check.binding) for check in report.checks] == [str(b) for b in bindings(expr)]


REFUSED = [
    ("a place other than at", Concept("near", args=(0.3, 0.3))[C("red")], "at(x, y)"),
    ("a size in the body", at(0.3, 0.3)[C("small")], "small"),
    ("an unknown property", at(0.3, 0.3)[C("purple")], "purple"),
    ("a place in the body", at(0.3, 0.3)[C("red") & at(0.5, 0.5)], "properties of one object"),
]


@pytest.mark.parametrize("expr,message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_what_the_check_refuses(expr, message):
    labels = ScenesEvaluator()(render(TWO))
    with pytest.raises(UnknownConceptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        truth(expr, labels)
    with pytest.raises(UnknownConceptError):
        check_bindings(expr, labels)


def test_shapes_labels_refuse_bindings():
    from conceptalg.data.shapes import render as render_one

    labels = DecoderEvaluator()(render_one("circle", "red", "small", 0.5, 0.5)[None])
    with pytest.raises(UnknownConceptError, match="binding"):
        truth(at(0.5, 0.5)[C("red")], labels)


def test_evaluate_scores_bindings_with_the_scenes_evaluator():
    """The path of `conceptalg evaluate` on a scenes model: make_evaluator, then score."""
    exprs = [at(0.3, 0.3)[C("red") & C("circle")] & at(0.7, 0.7)[C("blue") | C("green")],
             at(0.3, 0.3)[C("blue")], ~at(0.3, 0.3)[C("blue")] | at(0.5, 0.5)]
    results = evaluate_expressions(lambda e, n, seed: render(TWO, n), exprs,
                                   make_evaluator("scenes"), 4)
    assert [s.accuracy.value for s, _ in results] == [1.0, 0.0, 1.0]
    assert results[0][0].mixture == {}        # an OR inside a binding is about one object
    assert results[2][0].mixture["~at(0.3, 0.3)[blue] | at(0.5, 0.5)"] == {
        "~at(0.3, 0.3)[blue]": 1.0, "at(0.5, 0.5)": 0.0}


def test_the_scenes_evaluator_reads_real_objects_exactly():
    assert ScenesEvaluator(seed=3).real_accuracy(n=60) == {"all": 1.0, "n": 60}


def test_bindings_lists_each_binding_once_in_order():
    a, b = at(0.3, 0.3)[C("red")], at(0.7, 0.7)[C("circle")]
    expr = Or(And(a, Not(b)), And(Weighted(2, b), a, at(0.1, 0.1)))
    assert bindings(expr) == [a, b]
    assert bindings(at(0.1, 0.1) & C("red")) == []


def test_scene_labels_hide_the_objects_of_invalid_scenes():
    three = TWO + [("triangle", "green", (0.3, 0.75))]
    five = render(three + [("circle", "cyan", (0.75, 0.25)), ("square", "red", (0.5, 0.5))])
    labels = scene_labels(decode_scenes(torch.cat([render(three), five])))
    assert labels.valid.tolist() == [True, False]
    assert labels.objects["shape"][1].tolist() == [-1] * 4
    assert truth(at(0.3, 0.3)[C("red")], labels).tolist() == [True, False]


# --------------------------------------------------------------------------- the benchmark


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bindings_eval
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return bindings_eval


def render_query(expr, n, swap_colours=False):
    """What a perfect generator draws for a query: each binding's (shape, colour) at its point
    (a red circle at each place of an at()-only query); ``swap_colours`` paints each object in
    the next colour instead."""
    scene = []
    for b in bindings(expr):
        names = {c.factor: c.name for c in concepts(b.body)}
        colour = other(COLORS, names["color"]) if swap_colours else names["color"]
        scene.append((names["shape"], colour, b.place.args))
    if not scene:
        scene = [("circle", "red", c.args) for c in concepts(expr) if c.args is not None]
    return render(scene, n)


def test_benchmark_queries_come_from_real_scenes(bench):
    for k in (1, 2, 3):
        seen = bench.binding_queries(k, 6, 1000, "seen", DEFAULT_HOLDOUT)
        held = bench.binding_queries(k, 6, 1300, "held out", DEFAULT_HOLDOUT)
        assert len(seen) == len(held) == 6
        assert all(len(q.points) == k and not any(q.held) for q in seen)
        assert all(len(q.points) == k and any(q.held) for q in held)
        assert all(h == (p in DEFAULT_HOLDOUT) for q in held for p, h in zip(q.pairs, q.held))
        for q in seen + held:
            assert len(bindings(q.expr)) == k and bindings(q.places) == []
    assert bench.binding_queries(1, 6, 0, "held out", frozenset()) == []
    # the scale is chosen on the training scenes' own objects
    training = ScenesDataset(48, seed=0, split="train")
    first = bench.binding_queries(1, 6, 0, "seen", DEFAULT_HOLDOUT, min_objects=1)
    assert first[0].points[0] == tuple(round(v, 3) for v in training.centres[0, 0].tolist())


@pytest.mark.parametrize("family", ["seen", "held out"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_benchmark_scores_a_perfect_generator_100_and_a_colour_swap_0(bench, k, family):
    queries = bench.binding_queries(k, 5, 1000 * k, family, DEFAULT_HOLDOUT)
    evaluator, loose = ScenesEvaluator(), ScenesEvaluator(clean_only=False)
    right, kept = bench.score_queries(lambda e, n, s: render_query(e, n), queries, evaluator,
                                      loose, 2, 0, keep=1)
    assert right["accuracy"] == 1.0 and right["n"] == 10 and right["valid"] == 1.0
    assert right["binding failures"] == {} and right["bindings checked"] == 10 * k
    held = right["bindings of held-out pairs"]
    assert (held is None) == (family == "seen") and (held is None or held["accuracy"] == 1.0)
    assert len(kept) == 1 and kept[0][1].shape == (2, 3, 32, 32)
    wrong, _ = bench.score_queries(lambda e, n, s: render_query(e, n, swap_colours=True),
                                   queries, evaluator, loose, 2, 0)
    assert wrong["accuracy"] == 0.0 and wrong["read"]["accuracy"] == 0.0
    assert wrong["binding failures"] == {"colour": 10 * k}
    places, _ = bench.score_queries(lambda e, n, s: render_query(e, n), queries, evaluator,
                                    loose, 2, 0, places=True)
    assert places["accuracy"] == 1.0


def test_benchmark_chooses_the_scale_on_training_queries(bench, monkeypatch):
    asked = []

    def sampler(model, guidance_scale, device, **options):
        def generate(expr, n, seed):
            asked.append(str(expr))
            return render_query(expr, n, swap_colours=guidance_scale != 2.0)
        return generate

    monkeypatch.setattr(bench, "ModelSampler", sampler)
    training = bench.binding_queries(2, 3, 0, "seen", DEFAULT_HOLDOUT, min_objects=1)
    evaluator, loose = ScenesEvaluator(), ScenesEvaluator(clean_only=False)
    best, scored = bench.choose_scale(None, [1.0, 2.0, 3.0], training, 1, 0, None, evaluator,
                                      loose)
    assert best == 2.0 and scored["2.0"]["accuracy"] == 1.0 and scored["3.0"]["accuracy"] == 0
    assert set(asked) == {str(q.expr) for q in training}


def test_bindings_figure_draws_the_benchmark_rows(bench, tmp_path):
    queries = bench.binding_queries(2, 2, 2000, "held out", DEFAULT_HOLDOUT)
    evaluator, loose = ScenesEvaluator(), ScenesEvaluator(clean_only=False)
    _, right = bench.score_queries(lambda e, n, s: render_query(e, n), queries, evaluator,
                                   loose, 3, 0, keep=2)
    _, wrong = bench.score_queries(lambda e, n, s: torch.zeros(n, 3, 32, 32), queries,
                                   evaluator, loose, 3, 0, keep=1)
    path = save_bindings_figure(right + wrong, tmp_path / "bindings.png", ncol=4)
    assert path.stat().st_size > 5000


def test_benchmark_main_writes_its_table_json_and_figure(bench, monkeypatch, tmp_path, capsys):
    """main() end to end with a perfect generator in place of a model's sampler."""
    import json
    from types import SimpleNamespace

    info = SimpleNamespace(model=None, step=7, holdout=None)
    monkeypatch.setattr(bench, "load_arm", lambda path, device=None: ("scenes", info))
    scales = []

    def sampler(model, guidance_scale=None, device=None, **options):
        scales.append(guidance_scale)
        return lambda expr, n, seed: render_query(expr, n)

    monkeypatch.setattr(bench, "ModelSampler", sampler)
    out, figure = tmp_path / "bindings.json", tmp_path / "bindings.png"
    assert bench.main(["model", "--queries", "3", "--per-query", "2", "--choose-queries", "2",
                       "--guidance-scales", "1,2", "--out", str(out),
                       "--figure", str(figure)]) == 0
    result = json.loads(out.read_text())
    assert scales == [1.0, 2.0, 1.0] and result["guidance scale"] == 1.0
    assert result["holdout"] == sorted(map(list, DEFAULT_HOLDOUT))
    for k in (1, 2, 3):
        for family in ("seen", "held out", "at() only"):
            assert result[f"k={k}"][family]["accuracy"] == 1.0
            assert result[f"k={k}"][family]["n"] == 6
    assert result["seconds for 16 bound scenes (k=2)"] >= 0
    assert figure.stat().st_size > 5000
    table = capsys.readouterr().out
    assert "100.0 ± 0.0 (n 6)" in table and "held-out pairs" in table


@pytest.mark.parametrize("spec,expected", [
    ({"name": "scenes", "holdout": [["circle", "red"], ["square", "green"]]},
     {("circle", "red"), ("square", "green")}),
    ({"name": "scenes", "holdout": []}, set()),
    ({"name": "scenes"}, None),   # scenes trained before the hold-out: none recorded
], ids=["recorded", "none held out", "not recorded"])
def test_model_info_reads_the_hold_out_of_a_scenes_model(monkeypatch, spec, expected):
    from types import SimpleNamespace

    from conceptalg.evaluation.protocol import model_info
    from conceptalg.training import checkpoint

    model = SimpleNamespace(config=SimpleNamespace(factors={}, parametric={"at": 2}))
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda path, map_location: SimpleNamespace(
        model=model, metadata={"data": spec}, path=path, step=1))
    info = model_info("run")
    assert info.data == "scenes"
    assert info.holdout == (None if expected is None else frozenset(expected))
