"""The installed wheel carries the grammar; importing and parsing do not import torch."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def test_import_and_parse_do_not_import_torch():
    code = "import sys, conceptalg; conceptalg.parse('a & ~b'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_installed_wheel_parses_from_another_directory(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("conceptalg-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    code = textwrap.dedent("""
        import conceptalg, pathlib
        from conceptalg.syntax import grammar_path
        print(pathlib.Path(conceptalg.__file__).parent)
        print(grammar_path())
        print(conceptalg.parse("red & ~circle | 2*'x'"))
    """)
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=elsewhere, env=env)
    assert run.returncode == 0, run.stderr
    package_dir, grammar, parsed = run.stdout.strip().splitlines()
    assert Path(package_dir) == target / "conceptalg"  # the wheel's copy, not the source tree
    assert Path(grammar) == target / "conceptalg" / "grammar" / "concepts.lark"
    assert parsed == "red & ~circle | 2 * x"


def test_public_function_names_are_not_shadowed_by_submodules():
    code = ("import conceptalg, conceptalg.compiler, conceptalg.library, conceptalg.sampling, "
            "conceptalg.training; print(callable(conceptalg.concepts), callable(conceptalg.parse),"
            " callable(conceptalg.sample), callable(conceptalg.train), callable(conceptalg.load))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"] * 5
