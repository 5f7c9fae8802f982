"""Pointers into the documentation stay inside the repository.

Docstrings, comments, the grammar and the README cite the design as ``docs/design.md §N`` and
the reference numbers as ``docs/references.md``. A clone of the repository must be able to
follow every such citation, so:

(a) nothing points outside the repository (``../shared``, ``shared/design``,
    ``shared/references``), every citation of a design section is written
    ``docs/design.md §N`` (a bare ``design §N`` fails) and every ``references.md`` is
    ``docs/references.md``;
(b) every ``docs/design.md §N`` names a section that docs/design.md has (a heading ``## N.``);
(c) every file ``docs/<name>`` that is cited exists.

Pure text checks: nothing is imported or run. Failures name the file and the line.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()
DOCS = ROOT / "docs"
DESIGN = DOCS / "design.md"

#: what is scanned: these folders (recursively) and files
SCANNED_DIRS = ("conceptalg", "bench", "examples", "tests", "grammar")
SCANNED_FILES = ("README.md",)
#: folders never scanned: caches and generated outputs (bench/results is git-ignored)
SKIPPED_DIRS = {"__pycache__", "results"}

#: between "design" and "§": a space, or a line break (then, on the next line, optionally a
#: comment marker of Python or Lark) — a citation may be wrapped over two lines
_GAP = r"(?:[ \t]+|[ \t]*\r?\n[ \t]*(?:#+|//|\*)?[ \t]*)"
OUTSIDE = ("../shared", "shared/design", "shared/references")
BARE_DESIGN = re.compile(r"\bdesign" + _GAP + r"§")
DESIGN_MD_WITHOUT_DOCS = re.compile(r"(?<!docs/)\bdesign\.md")
REFERENCES_WITHOUT_DOCS = re.compile(r"(?<!docs/)\breferences\.md")
#: ``docs/design.md §4``, also ``docs/design.md §0, §5`` and ``§6 and §7``: every number counts
DESIGN_CITATION = re.compile(r"docs/design\.md" + _GAP + r"§(\d+)((?:\s*(?:,|and|&|–|-)\s*§\d+)*)")
MORE_SECTIONS = re.compile(r"§(\d+)")
#: a path inside docs/ (not part of a longer path or a URL such as .../docs/stable)
DOCS_PATH = re.compile(r"(?<![\w/.\-])docs/([\w.\-/]+)")
#: characters after a matched path that show it is a template, not a file name
TEMPLATE_CHARS = "{<*$%["


def _is_text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def scanned_files() -> list[tuple[Path, str]]:
    """Every text file the checks read, with its text (this test file left out)."""
    found = []
    candidates = [ROOT / name for name in SCANNED_FILES]
    for folder in SCANNED_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            parts = path.relative_to(ROOT).parts
            if any(p in SKIPPED_DIRS or p.startswith(".") for p in parts[:-1]):
                continue
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".pyc":
                candidates.append(path)
    for path in candidates:
        if path.resolve() == THIS or not path.is_file():
            continue
        text = _is_text(path)
        if text is not None:
            found.append((path, text))
    return found


def docs_markdown() -> list[tuple[Path, str]]:
    """The Markdown files of docs/ (they cite each other)."""
    return [(p, p.read_text(encoding="utf-8")) for p in sorted(DOCS.glob("*.md"))]


def _where(path: Path, text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    content = text.splitlines()[line - 1].strip() if text.splitlines() else ""
    return f"{path.relative_to(ROOT)}:{line}: {content}"


def design_sections() -> set[int]:
    return {int(n) for n in re.findall(r"^## (\d+)\.", DESIGN.read_text(encoding="utf-8"),
                                        flags=re.M)}


def test_the_scan_reads_the_code():
    names = {str(p.relative_to(ROOT)) for p, _ in scanned_files()}
    assert "README.md" in names and "conceptalg/__init__.py" in names
    assert not any(name == str(THIS.relative_to(ROOT)) for name in names)


def test_the_documents_exist():
    assert DESIGN.is_file(), "docs/design.md is missing"
    assert (DOCS / "references.md").is_file(), "docs/references.md is missing"
    assert 0 in design_sections(), "docs/design.md has no heading '## 0.' (the public contract)"


def test_no_pointer_leaves_the_repository():
    problems = []
    for path, text in scanned_files():
        for needle in OUTSIDE:
            start = text.find(needle)
            while start != -1:
                problems.append(f"{_where(path, text, start)}  [points outside the repository: "
                                f"{needle!r}]")
                start = text.find(needle, start + 1)
        for m in BARE_DESIGN.finditer(text):
            problems.append(f"{_where(path, text, m.start())}  [write 'docs/design.md §N', not "
                            f"a bare 'design §N']")
        for m in DESIGN_MD_WITHOUT_DOCS.finditer(text):
            problems.append(f"{_where(path, text, m.start())}  [write 'docs/design.md']")
        for m in REFERENCES_WITHOUT_DOCS.finditer(text):
            problems.append(f"{_where(path, text, m.start())}  [write 'docs/references.md']")
    assert not problems, "pointers that a clone cannot follow:\n" + "\n".join(problems)


def test_cited_design_sections_exist():
    sections = design_sections()
    problems, cited = [], 0
    for path, text in scanned_files() + docs_markdown():
        for m in DESIGN_CITATION.finditer(text):
            numbers = [int(m.group(1))] + [int(n) for n in MORE_SECTIONS.findall(m.group(2))]
            cited += len(numbers)
            for n in numbers:
                if n not in sections:
                    problems.append(f"{_where(path, text, m.start())}  [docs/design.md has no "
                                    f"section §{n}; it has {sorted(sections)}]")
    assert not problems, "citations of missing design sections:\n" + "\n".join(problems)


def test_cited_docs_files_exist():
    problems = []
    for path, text in scanned_files() + docs_markdown():
        for m in DOCS_PATH.finditer(text):
            if text[m.end():m.end() + 1] in tuple(TEMPLATE_CHARS):
                continue  # a template such as docs/{name}.png
            name = m.group(1).rstrip(".-/")
            if not name:
                continue
            if not (DOCS / name).exists():
                problems.append(f"{_where(path, text, m.start())}  [docs/{name} does not "
                                f"exist]")
    assert not problems, "cited files missing from docs/:\n" + "\n".join(problems)
