"""Pasted outputs stay true: every `analyze` output shown in the README and docs/ has only the
columns the tool prints now (in its order), cells of the shapes it prints, and lines
(`verdict`, `collapsed`, `rounds`, `λ choice`) made of clauses it prints, compared with what
the current code prints on small generated results folders (numbers, ids and key=value lists
stand for any). And scripts/docs_outputs.py, which makes those outputs from real runs, names
every command whose output a page shows."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pandas as pd
import pytest
from support import run_cli, write_store

from sparsedd.analysis.synthetic import synthetic_rounds

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The prefixes of analyze's lines below its table, as it prints them.
LINE_PREFIXES = ("verdict   ", "collapsed ", "rounds    ", "λ choice  ")


def code_blocks(text: str) -> list[list[str]]:
    """The fenced code blocks of a Markdown page, as lists of lines."""
    return [b.splitlines() for b in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)]


def cells(line: str) -> list[str]:
    """A plain-text table line's cells (columns are two or more spaces apart)."""
    return re.split(r"\s{2,}", line.strip())


def shape(text: str) -> str:
    """``text`` with what varies from run to run made generic: run ids, key=value lists,
    numbers (signed, with decimals) and the sets of λ."""
    text = re.sub(r"\b[0-9a-f]{16}\b", "ID", text)
    text = re.sub(r"\w+=[^\s:;,]+(?: \w+=[^\s:;,]+)*", "K", text)
    text = re.sub(r"[+\-−]?\d+(?:[.,]\d+)*", "#", text)
    return re.sub(r"\{[#, ]*\}", "{#}", text)


def clauses(line: str) -> set[str]:
    """The clauses of a line, shaped: split at ';', ',', '.', ':' and parentheses."""
    parts = re.split(r"[;:(),]|\.(?:\s|$)", shape(line))
    return {p.strip(" ,") for p in parts if p.strip(" ,")}


def _frames() -> list[pd.DataFrame]:
    """Results that make analyze print each kind of row and line: SDD and no SDD with runs
    stopped as collapsed; one seed of one λ (test-set size unknown, and 60 test images); an
    inconclusive curve; unequal rounds; a valley at the minimum rise."""
    both = pd.concat(
        [
            synthetic_rounds("sdd", 0.1, 0.004, 2, rounds=18, weight_decay=0.0, seed=1),
            synthetic_rounds("flat", 0.05, 0.0005, 3, rounds=18, weight_decay=2.0, seed=2,
                                n_test=10**6, collapsed_from=[13, 16, None]),
        ]
    )  # fmt: skip
    one = synthetic_rounds("sdd", 0.03, 0.02, 1, rounds=18, weight_decay=0.0, seed=3)
    small = synthetic_rounds("sdd", 0.03, 0.02, 1, rounds=18, weight_decay=0.0, seed=7,
                                n_test=60)  # fmt: skip
    wobbly = pd.concat(
        [
            synthetic_rounds("sdd", 0.01, 0.01, 2, rounds=10, weight_decay=lam, seed=4 + i)
            for i, lam in enumerate((0.0, 0.1))
        ]
    )
    unequal = synthetic_rounds("sdd", 0.05, rounds=12, n_seeds=2, seed=6)
    unequal = unequal[~((unequal["run_id"] == unequal["run_id"].iloc[0]) & (unequal["round"] > 5))]
    # a valley as deep as the minimum rise: more seeds barely help ("many more seeds")
    edge = synthetic_rounds("sdd", 0.025, 0.01, 2, rounds=12, weight_decay=0.0, seed=1,
                               n_test=2000)  # fmt: skip
    return [both, one, small, wobbly, unequal, edge]


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> list[list[str]]:
    """What `sparsedd analyze` prints now on each generated folder, as lines."""
    outputs = []
    for i, frame in enumerate(_frames()):
        folder = write_store(frame, tmp_path_factory.mktemp(f"printed{i}"))
        text = io.StringIO()
        with contextlib.redirect_stdout(text):  # run_cli keeps no output in a module fixture
            assert run_cli(["analyze", str(folder)])[0] == 0
        outputs.append(text.getvalue().splitlines())
    return outputs


class Known:
    """What the current code prints, shaped: the table's columns and each column's cell
    shapes, the rounds table's columns, and the clauses of the lines below the table."""

    def __init__(self, outputs: list[list[str]]) -> None:
        self.columns: list[str] = []
        self.cell_shapes: dict[str, set[str]] = {}
        self.rounds_columns: list[str] = []
        self.clauses: dict[str, set[str]] = {p: set() for p in LINE_PREFIXES}
        for lines in outputs:
            self.add(lines)

    def add(self, lines: list[str]) -> None:
        head = cells(lines[0])
        self.columns = head if len(head) > len(self.columns) else self.columns
        for line in lines[1:]:
            if not line.strip() or line.startswith(LINE_PREFIXES):
                break
            for column, cell in zip(head, cells(line), strict=True):
                self.cell_shapes.setdefault(column, set()).add(shape(cell))
        for line in lines:
            for prefix in LINE_PREFIXES:
                if line.startswith(prefix):
                    self.clauses[prefix] |= clauses(line[len(prefix) :])
        at = lines.index("rounds per run (sparsedd export --run ID --round best|dip|peak):")
        head = cells(lines[at + 1])
        self.rounds_columns = head if len(head) > len(self.rounds_columns) else self.rounds_columns


@pytest.fixture(scope="module")
def known(printed) -> Known:
    return Known(printed)


#: Curve keys: any value (the generated folders use other ones).
KEYS = {"model", "dataset", "noise", "weight_decay"}


def in_order(shown: list[str], printed: list[str]) -> bool:
    """Whether ``shown`` is ``printed`` with some columns left out, none added or moved."""
    it = iter(printed)
    return all(column in it for column in shown)


def problems(block: list[str], known: Known) -> list[str]:
    """What a pasted analyze output shows that the tool no longer prints."""
    found = []
    head = cells(block[0])
    if not in_order(head, known.columns):
        found.append(f"columns {head} are not {known.columns}")
        return found
    rows = []
    for line in block[1:]:
        if not line.strip() or line.startswith(LINE_PREFIXES):
            break
        rows.append(cells(line))
    for row in rows:
        if len(row) != len(head):
            found.append(f"a row of {len(row)} cells under {len(head)} columns: {row}")
            continue
        for column, cell in zip(head, row, strict=True):
            if column not in KEYS and shape(cell) not in known.cell_shapes.get(column, set()):
                found.append(f"{column!r} shows {cell!r}, a value the tool does not print")
    for line in block:
        for prefix in LINE_PREFIXES:
            if line.startswith(prefix):
                new = clauses(line[len(prefix) :]) - known.clauses[prefix]
                found += [f"{prefix.strip()!r} line says {c!r}" for c in sorted(new)]
    heads = [i for i, line in enumerate(block) if line.startswith("rounds per run")]
    for i in heads:
        shown = cells(block[i + 1])
        if not in_order(shown, known.rounds_columns):
            found.append(f"rounds columns {shown} are not {known.rounds_columns}")
    return found


def analyze_blocks() -> list[tuple[str, list[str]]]:
    """(page, block) for every pasted analyze output: from the line whose cells include
    n_seeds (the table's header) on."""
    found = []
    for page in PAGES:
        for block in code_blocks(page.read_text()):
            starts = [i for i, line in enumerate(block) if "n_seeds" in cells(line)]
            found += [(page.name, block[i:]) for i in starts[:1]]
    return found


def test_pages_show_analyze_outputs():
    pages = {page for page, _ in analyze_blocks()}
    assert {"README.md", "own-data.md"} <= pages


#: Pages whose pasted output is known to be stale, and why: strict, so that the test fails once
#: the page is re-pasted and the entry must go.
STALE_PAGES: dict[str, str] = {}


def _cases() -> list:
    return [
        pytest.param(page, block, marks=pytest.mark.xfail(strict=True, reason=STALE_PAGES[page]))
        if page in STALE_PAGES
        else (page, block)
        for page, block in analyze_blocks()
    ]


@pytest.mark.parametrize(("page", "block"), _cases(), ids=lambda v: str(v)[:20])
def test_a_pasted_analyze_output_shows_only_what_the_tool_prints(page, block, known):
    assert problems(block, known) == [], page


#: docs/own-data.md's block before issue 25: columns and lines the tool stopped printing.
STALE = """\
model      dataset  noise  weight_decay  n_seeds  dense  best (at sparsity)  compressible to  SDD  dip (at sparsity)  peak (at sparsity)  rise [95% CI]  best val  λ* (val)
  vit  imagefolder    0.2             0        1  83.3%       96.7% (36.0%)            95.6%  yes      85.0% (86.6%)       88.9% (93.1%)           +3.9     80.0%         0
λ choice  model=vit dataset=imagefolder noise=0.2: validation picks the only λ run, 0 (best validation accuracy 80.0%). λ = 0: SDD detected, best test accuracy 96.7% at 36.0% sparsity.
"""  # noqa: E501


def test_the_check_catches_a_stale_block(known):
    """Control: the block the issue found stale is refused for its columns; with today's
    columns, an old value and an old line are refused too."""
    assert any("columns" in p for p in problems(STALE.splitlines(), known))
    now = known.columns
    row = ["vit", "imagefolder", "0.2", "0", "1", "83.3%", "96.7% (36.0%)", "95.6%", "yes",
           "85.0% (86.6%)", "88.9% (93.1%)", "+3.9", "-", "80.0%", "0"]  # fmt: skip
    assert len(row) == len(now)
    old_line = STALE.splitlines()[2]
    found = problems(["  ".join(now), "  ".join(row), old_line], known)
    assert any("'verdict' shows 'yes'" in p for p in found)
    assert any("'rise [90% bounds]' shows '+3.9'" in p for p in found)
    assert any("validation picks the only λ run" in p for p in found)


def _script():
    spec = importlib.util.spec_from_file_location("docs_outputs", ROOT / "scripts/docs_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_makes_every_output_a_page_shows():
    """Every `$ sparsedd ...` command whose output docs/ shows is one the script runs."""
    script = _script()
    made = {shape(c.format(run="800058")) for _, _, c in (*script.OWN_DATA, *script.DEMO)}
    shown = {
        shape(line[2:])
        for page in PAGES
        for block in code_blocks(page.read_text())
        for line in block
        if line.startswith("$ sparsedd ")
    }
    assert shown and shown <= made, shown - made


def test_the_readme_round_table_is_the_one_the_script_makes(tmp_path):
    """The README's per-round table has the header and row shapes that the script's
    per_round_table writes (on a generated demo-shaped folder: λ 0 and 2, a collapsed seed)."""
    frame = pd.concat(
        [
            synthetic_rounds("sdd", 0.1, rounds=18, n_seeds=2, weight_decay=0.0, seed=1),
            synthetic_rounds("flat", rounds=18, n_seeds=2, weight_decay=2.0, seed=2,
                                collapsed_from=[13, 16]),
        ]
    )  # fmt: skip
    made = _script().per_round_table(write_store(frame, tmp_path / "runs")).splitlines()
    assert len(made) == 2 + 10  # header, rule, rounds 0, 2, ..., 18
    readme = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(readme) if line.startswith("| round | sparsity |"))
    shown = readme[start : start + 12]
    assert shown[0] == made[0] and shown[1] == made[1]
    assert {shape(line) for line in shown[2:]} <= {shape(line) for line in made[2:]}
