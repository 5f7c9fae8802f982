"""`conceptalg explain`: normal form, leaves, formula; --model checks names, or fails clearly."""

import pytest

import conceptalg
from conceptalg import ConceptLibrary
from conceptalg.cli import main


def test_explain_prints_normal_form_leaves_and_formula(capsys):
    assert main(["explain", "c & ~(a & ~b) | ~~d"]) == 0
    out = capsys.readouterr().out
    assert "normal form: c & ~a & b | d" in out
    assert "leaves (4, " in out and "\n  a  " in out
    assert "E = softmin(E[c] - E[a] + E[b], E[d])" in out
    assert "names are not checked" in out


@pytest.mark.parametrize("semantics, formula", [
    ("product", "E = E_0 - 2*E[a]"),
    ("guidance", "D = -2*D[a]"),
    ("logic", "P = (1 - P[a])^2"),
])
def test_explain_semantics(capsys, semantics, formula):
    assert main(["explain", "2*~a", "--semantics", semantics]) == 0
    assert formula in capsys.readouterr().out


def test_explain_or_temperature(capsys):
    assert main(["explain", "a | b", "--or-temperature", "0.1"]) == 0
    assert "-0.1*logsumexp_i(-e_i/0.1)" in capsys.readouterr().out


def test_explain_model_that_cannot_load(capsys, tmp_path, monkeypatch):
    def broken(path):
        raise OSError(f"no checkpoint in {path}")
    monkeypatch.setitem(conceptalg.__dict__, "load", broken)
    assert main(["explain", "a", "--model", str(tmp_path)]) == 1
    assert "cannot load a model from" in capsys.readouterr().err


def test_explain_model_checks_names(capsys, monkeypatch):
    lib = ConceptLibrary({"red": abs, "circle": abs}, base=abs)
    monkeypatch.setitem(conceptalg.__dict__, "load", lambda path: lib)
    assert main(["explain", "red & ~circle", "--model", "m"]) == 0
    out = capsys.readouterr().out
    assert "function abs" in out and "names are not checked" not in out
    assert main(["explain", "rde & circle", "--model", "m"]) == 1
    assert "did you mean `red`?" in capsys.readouterr().err
