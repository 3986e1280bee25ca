"""The documentation is true: its runnable blocks run against the sample, its links resolve inside
the repository, the README stays short and its results table is what its own blocks wrote.

A fenced block whose info string carries the word ``run`` (```` ```python run ````,
```` ```bash run ````) is runnable: the blocks of one file run in order in one fresh folder that
holds ``mm-skin/`` (a copy of the session's built sample), ``examples/`` and ``lesion.png``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOC_PAGES = sorted((REPO / "docs").glob("*.md"))
CARD_TEMPLATES = sorted((REPO / "cards").glob("*.jinja"))
README_LIMIT = 12_000
LINKED_PAGES = ("dataset", "evaluation", "training", "serving", "reliability", "development")
FENCE = re.compile(r"^```([^`\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
RUNNABLE_LANGUAGES = ("python", "bash")
BLOCK_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language and whether it is marked ``run``."""

    source: str
    line: int
    language: str
    runnable: bool
    code: str


def fenced_blocks(text: str, source: str) -> list[Block]:
    """Every fenced block of a Markdown (or Markdown template) text, in order."""
    blocks = []
    for match in FENCE.finditer(text):
        words = match.group(1).split()
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(source, line, words[0] if words else "", "run" in words[1:], match.group(2)))
    return blocks


def runnable_blocks(path: Path) -> list[Block]:
    """The blocks of a file marked ``run``, in order."""
    return [b for b in fenced_blocks(path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix()) if b.runnable]


def _workdir(root: Path, vqa_folder: Path) -> Path:
    """A fresh folder beside the built sample, as the documentation assumes."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(vqa_folder, root / "mm-skin")  # a copy: blocks may rebuild or write into it
    (root / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    image = sorted((REPO / "examples" / "mm-skin-sample" / "MM-SkinQA" / "dataset").glob("*.png"))[0]
    shutil.copyfile(image, root / "lesion.png")
    return root


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg",
           "HF_DATASETS_CACHE": str(root.parent / f"{root.name}-datasets-cache")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_blocks(blocks: list[Block], cwd: Path) -> None:
    """Run the blocks in order in ``cwd``; the first one that exits non-zero fails the test."""
    env = _env(cwd)
    for index, block in enumerate(blocks):
        assert block.language in RUNNABLE_LANGUAGES, f"{block.source}:{block.line}: cannot run a {block.language!r} block"
        script = cwd.parent / f"{cwd.name}-block{index}.{'py' if block.language == 'python' else 'sh'}"
        script.write_text(block.code, encoding="utf-8")
        command = [sys.executable, str(script)] if block.language == "python" else ["bash", "-euo", "pipefail", str(script)]
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        assert proc.returncode == 0, (
            f"{block.source}:{block.line}: the {block.language} block exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
        )


# --------------------------------------------------------------------------- the blocks run
PAGES_WITH_BLOCKS = [p for p in DOC_PAGES if runnable_blocks(p)]


@pytest.mark.parametrize("page", PAGES_WITH_BLOCKS, ids=[p.name for p in PAGES_WITH_BLOCKS])
def test_runnable_blocks_of_each_docs_page_run(page: Path, vqa_folder: Path, tmp_path: Path) -> None:
    run_blocks(runnable_blocks(page), _workdir(tmp_path / "work", vqa_folder))


def _results_table(readme: str) -> dict[str, list[str]]:
    section = readme.split("## Results on the sample", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| run ")]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows)}


# The README table's columns, in order: (protocol, metric) of the compare leaderboard.
RESULT_COLUMNS = [("paper", "bleu_1"), ("paper", "bleu_4"), ("paper", "rouge_l"), ("paper", "token_recall"),
                  ("standard", "sacrebleu"), ("standard", "rouge_l")]


def test_readme_quickstart_runs_and_its_results_table_is_what_it_wrote(vqa_folder: Path, tmp_path: Path) -> None:
    blocks = runnable_blocks(README)
    assert [b.language for b in blocks].count("bash") >= 4, "the quickstart lost its commands"
    work = _workdir(tmp_path / "work", vqa_folder)
    run_blocks(blocks, work)

    readme = README.read_text(encoding="utf-8")
    compared = json.loads((work / "results" / "compare" / "results.json").read_text())
    board = compared["leaderboard"]
    table = _results_table(readme)
    assert set(table) == set(board["paper"]["overall"]), "the table lists other runs than the comparison"
    for run, cells in table.items():
        expected = [f"{100 * board[protocol]['overall'][run][metric]:.2f}" for protocol, metric in RESULT_COLUMNS]
        assert cells == expected, f"README results row {run!r}: {cells} but the run wrote {expected}"
    diff = compared["differences"]["paper"]["fixed answer"]["rouge_l"]
    claim = f"+{100 * diff['delta']:.2f} [+{100 * diff['ci_low']:.2f}, +{100 * diff['ci_high']:.2f}]"
    assert claim in readme, f"README's ROUGE-L difference is not {claim}"
    assert diff["too_few"] and not diff["real"], "the README says 12 questions are too few to call a difference real"
    gain = json.loads((work / "results" / "image-gain" / "results.json").read_text())
    assert gain["image_gain"], "the README's blind run gives no image gain"
    assert (work / "out" / "lora" / "merged" / "config.json").is_file()


def test_model_card_snippet_runs_for_skinvl_tiny(vqa_folder: Path, tmp_path: Path) -> None:
    from skinvl.model_card import render_model_card
    from skinvl.presets import preset_config

    card = render_model_card(None, "skinvl-tiny", config=preset_config("skinvl-tiny").to_dict())
    blocks = [b for b in fenced_blocks(card, "cards/model_card.md.jinja (rendered)") if b.runnable]
    assert [b.language for b in blocks] == ["python"]
    assert "skinvl.answer_batch(" in blocks[0].code and 'skinvl.load("skinvl-tiny"' in blocks[0].code
    run_blocks(blocks, _workdir(tmp_path / "work", vqa_folder))


def test_a_failing_block_fails_naming_file_and_line(tmp_path: Path) -> None:
    text = "intro\n\n```bash run\ntrue\nfalse\necho never\n```\n"
    blocks = fenced_blocks(text, "page.md")
    assert [(b.line, b.language, b.runnable) for b in blocks] == [(3, "bash", True)]
    (tmp_path / "w").mkdir()
    with pytest.raises(AssertionError, match=r"page\.md:3: the bash block exited 1"):
        run_blocks(blocks, tmp_path / "w")  # -e: the failing line stops the block


def test_fences_are_recognised() -> None:
    text = "```python run\na = 1\n```\n\n```bash\nls\n```\n\n```\nplain\n```\n\n```python  run  \nb = 2\n```\n"
    blocks = fenced_blocks(text, "x.md")
    assert [(b.language, b.runnable, b.code) for b in blocks] == [
        ("python", True, "a = 1\n"), ("bash", False, "ls\n"), ("", False, "plain\n"), ("python", True, "b = 2\n")]


# --------------------------------------------------------------------------- what the docs promise
def test_readme_is_short_starts_with_the_two_commands_and_links_every_page() -> None:
    readme = README.read_text(encoding="utf-8")
    assert len(readme) <= README_LIMIT, f"README.md is {len(readme)} characters (limit {README_LIMIT})"
    first = fenced_blocks(readme, "README.md")[0]
    assert [line.split("#")[0].strip() for line in first.code.splitlines()] == ["make demo", "make test"]
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", (REPO / "Makefile").read_text(), re.M), f"make {target} is gone"
    for page in LINKED_PAGES:
        assert f"](docs/{page}.md)" in readme and (REPO / "docs" / f"{page}.md").is_file(), page
    for heading in ("### Dataset", "### Model", "### Evaluate", "### Compare", "### Train", "## Results on the sample"):
        assert f"\n{heading}\n" in readme, heading


def test_every_runnable_block_is_python_or_bash() -> None:
    for path in [README, *DOC_PAGES, *CARD_TEMPLATES]:
        for block in runnable_blocks(path):
            assert block.language in RUNNABLE_LANGUAGES, f"{block.source}:{block.line}: {block.language!r}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    headings = re.findall(r"^#+ (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_relative_links_resolve_inside_the_repository() -> None:
    for path in [README, *DOC_PAGES]:
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            assert resolved.is_relative_to(REPO) and resolved.exists(), f"{path.name}: link {target} -> {resolved}"
            assert not anchor or anchor in _anchors(resolved), f"{path.name}: no heading for {target}"


OUTSIDE_DOCUMENTS = re.compile(r"DESIGN\.md|shared/docs")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but the venv
        names = [p.relative_to(REPO).as_posix() for p in REPO.rglob("*")
                 if p.is_file() and not any(part.startswith(".") for part in p.relative_to(REPO).parts)]
    return [REPO / n for n in names]


def test_nothing_refers_to_documents_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    offenders = []
    for path in _tracked_files():
        if path.resolve() == this or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images and other binary files
        offenders += [f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group()}"
                      for m in OUTSIDE_DOCUMENTS.finditer(text)]
    assert not offenders, "files refer to documents outside the repository:\n" + "\n".join(offenders)
