"""The docs pages render and are findable: no paragraph glued to a table (Markdown would read it
as table rows, and `mkdocs build --strict` does not notice), the home page and the site's nav
list every page, the README links the glossary first, and the glossary defines each term before
any other entry uses it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
GLOSSARY = (DOCS / "glossary.md").read_text()


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        out.append((number, "" if fenced else line))
    return out


def glued_tables(text: str) -> list[int]:
    """Line numbers of text lines that touch a table (the line right before its first row or
    right after its last), which Markdown renders as part of the table or not as a table."""
    lines = _prose_lines(text)
    found = []
    for (_, before), (number, line) in zip(lines, lines[1:], strict=False):
        row, previous_row = line.startswith("|"), before.startswith("|")
        if row != previous_row and before.strip() and line.strip():
            found.append(number)
    return found


def test_the_check_sees_a_paragraph_glued_to_a_table():
    """Control: the shape that broke docs/science.md is found, and a separated one is not."""
    glued = "| a | b |\n|---|---|\n| 1 | 2 |\nWhere we differ on purpose.\n"
    assert glued_tables(glued) == [4]
    assert glued_tables("Text.\n| a |\n|---|\n") == [2]
    assert glued_tables("Text.\n\n| a |\n|---|\n| 1 |\n\nMore.\n") == []
    assert glued_tables("```\n| a |\nnot a table\n```\n") == []


def test_no_page_has_a_paragraph_glued_to_a_table():
    glued = {
        page.name: glued_tables(page.read_text())
        for page in [*PAGES, ROOT / "README.md"]
        if glued_tables(page.read_text())
    }
    assert glued == {}, f"a table needs a blank line before and after it: {glued}"


def test_the_home_page_and_the_nav_list_every_page():
    index = (DOCS / "index.md").read_text()
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        if page.name != "index.md":
            assert f"]({page.name})" in index, f"docs/index.md does not list {page.name}"
        assert re.search(rf":\s+{re.escape(page.name)}\s*$", nav, re.M), page.name


def test_readme_links_the_glossary_before_its_terms():
    readme = (ROOT / "README.md").read_text()
    link = readme.index("(docs/glossary.md)")
    for term in ("collapse stop", "90% bounds", "best val", "compressible to", "chance"):
        assert link < readme.lower().index(term), term


def _entries() -> list[tuple[list[str], str]]:
    """Per glossary entry: the terms it defines (its bold words) and its text."""
    out = []
    for entry in re.split(r"\n(?=- \*\*)", GLOSSARY):
        entry = re.sub(r"\[[^]]*\]\([^)]*\)", "", entry.split("\n\n")[0])  # not links, headings
        if entry.startswith("- **"):
            terms = [
                t.strip("`").rstrip("*\\").strip() for t in re.findall(r"\*\*(.+?)\*\*", entry)
            ]
            out.append((terms, entry))
    return out


#: Words that are also plain English, as the glossary uses them before defining their term.
PLAIN = {"dense", "seed", "run", "chance", "round", "curve", "preset", "study", "dip", "peak"}


def test_the_glossary_defines_each_term_before_another_entry_uses_it():
    entries = _entries()
    assert len(entries) >= 25
    for i, (terms, _) in enumerate(entries):
        for term in terms:
            if term.lower() in PLAIN or len(term) < 3:
                continue
            early = [e for _, e in entries[:i] if term.lower() in e.lower()]
            assert not early, f"{term!r} is used before its entry: {early[0][:80]}"


def test_the_glossary_defines_the_words_the_readme_uses():
    defined = " ".join(" ".join(t) for t, _ in _entries()).lower()
    for word in ("collapse stop", "collapsed", "90% bounds", "dense epochs", "demo", "chance",
                 "collapse_rounds", "noise_seed", "cifar-100n", "best val", "compressible to",
                 "activation entropy", "memorization", "sparsity", "verdict"):  # fmt: skip
        assert word in defined, word
    assert "- **λ\\***" in GLOSSARY and "`activation_entropy`" in GLOSSARY
