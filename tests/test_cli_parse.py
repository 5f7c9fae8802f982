"""`conceptalg parse`: canonical text, tree, JSON, exit code 2 with a caret on bad input."""

import json
import subprocess
import sys

import pytest

from conceptalg.cli import main


def test_parse_prints_canonical_form_and_tree(capsys):
    assert main(["parse", "2*~red&circle"]) == 0
    out = capsys.readouterr().out
    assert "canonical:  2 * ~red & circle" in out
    assert "\n    Weighted 2\n      Not\n        Concept red\n" in out


def test_parse_json(capsys):
    assert main(["parse", "--json", "a | a & b"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["canonical"] == "a | a & b"
    assert data["tree"]["type"] == "Or"
    assert [t["type"] for t in data["tree"]["terms"]] == ["Concept", "And"]


def test_syntax_error_exits_2_with_caret(capsys):
    assert main(["parse", "a & or"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "line 1, column 5" in captured.err
    assert captured.err.rstrip().endswith("a & or\n      ^")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "conceptalg", *args], capture_output=True,
                          timeout=120)


def test_module_entry_point_and_exit_code():
    ok = _run("parse", "a & ~b")
    assert ok.returncode == 0 and b"canonical:  a & ~b" in ok.stdout
    bad = _run("parse", "a b")
    assert bad.returncode == 2 and b"missing operator" in bad.stderr.lower()
    assert b"Traceback" not in bad.stderr


@pytest.mark.parametrize("arg,code", [(b"'\xff' & a", 0), (b"a & \xff", 2)])
def test_undecodable_input_prints_safely(arg, code):
    # a byte that is not UTF-8 reaches Python as a lone surrogate; output must not crash
    result = _run("parse", arg)
    assert result.returncode == code, result.stderr
    assert b"Traceback" not in result.stderr
    assert b"\\udcff" in (result.stdout + result.stderr)


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("conceptalg", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the `conceptalg` console script is not installed next to this Python"
    result = subprocess.run([exe, "parse", "x"], capture_output=True, timeout=120)
    assert result.returncode == 0 and b"canonical:  x" in result.stdout
