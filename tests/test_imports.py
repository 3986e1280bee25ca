"""Import hygiene: no import circle inside skinvl/ and mm_skin/, torch only where it is needed,
and SkinVL in transformers' Auto classes after ``import skinvl`` whatever the import order."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("skinvl", "mm_skin")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks: those imports never run."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in it, functions included; relative resolved)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import sub` imports the module pkg.sub; `from mod import name` imports mod
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    found = cycles(import_graph(_modules()))
    assert not found, "import circles (break each by moving the shared piece down a layer): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_the_circle_finder_finds_circles(tmp_path):
    # A circle through a function-level relative import counts, as the real test requires.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    modules = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py", "pkg.c": pkg / "c.py"}
    graph = import_graph(modules)
    assert graph["pkg.c"] == set()  # TYPE_CHECKING imports never run
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_the_inference_core_imports_no_workflow():
    """generate, evaluation, demo, train and convert call the core; the core calls none of them."""
    graph = import_graph(_modules())
    workflows = ("skinvl.generate", "skinvl.evaluation", "skinvl.demo", "skinvl.train", "skinvl.convert",
                 "skinvl.training_data", "skinvl.training_record", "skinvl.hub", "skinvl.cli")
    for module, imported in graph.items():
        if module.startswith("skinvl.inference"):
            bad = sorted(t for t in imported if t.startswith(workflows))
            assert not bad, f"{module} imports {bad}"


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


_LOADED = ("print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules, "
           "'datasets': 'datasets' in sys.modules}))")


@pytest.mark.parametrize("argv", [["skinvl", "--help"], ["skinvl", "--version"], ["skinvl", "eval", "--help"],
                                  ["skinvl", "eval", "vqa", "--help"], ["skinvl", "generate", "--help"],
                                  ["mm-skin", "--help"]])
def test_help_and_version_load_no_torch(argv):
    main = "from skinvl.cli import main" if argv[0] == "skinvl" else "from mm_skin_dataset import main"
    got = _fresh(f"""import json, sys
{main}
try:
    main({argv[1:]!r})
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
{_LOADED}""")
    assert got["torch"] is False, f"{' '.join(argv)} imports torch"
    if argv in (["skinvl", "--help"], ["skinvl", "--version"], ["mm-skin", "--help"]):
        assert got["transformers"] is False  # the command list needs no options parser


@pytest.mark.parametrize("module", ["skinvl", "skinvl.evaluation.scoring", "skinvl.inference",
                                    "skinvl.inference.options", "skinvl.evaluation"])
def test_light_imports_load_no_torch(module):
    got = _fresh(f"import json, sys\nimport {module}\n{_LOADED}")
    assert got == {"torch": False, "transformers": False, "datasets": False}


def test_public_names_and_submodules_resolve_lazily():
    got = _fresh("""import json, sys
import skinvl
names = {n: callable(getattr(skinvl, n)) for n in ("load", "answer_batch", "SkinVLConfig", "SkinVLProcessor",
                                                      "SkinVLModel", "SkinVLForConditionalGeneration")}
from skinvl.inference.batching import answer_batch
print(json.dumps({"names": names, "generate": skinvl.generate.answer_batch is answer_batch,
                  "same": skinvl.answer_batch is answer_batch, "eval": hasattr(skinvl.evaluation, "register_cli"),
                  "core": skinvl.inference.family_of("paligemma").prompt}))""")
    assert all(got["names"].values()) and got["generate"] and got["same"] and got["eval"]
    assert got["core"] == "bare"
    got = _fresh("import json, skinvl\ntry:\n    skinvl.no_such_name\nexcept AttributeError as e:\n"
                 "    print(json.dumps({'error': str(e)}))")
    assert "no attribute 'no_such_name'" in got["error"]


_AUTO_CHECK = """
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
config = AutoConfig.for_model("skinvl")
original = AutoConfig.for_model("llava_mistral")
print(json.dumps({"config": type(config).__name__, "original": type(original).__name__,
                  "model": MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[type(config)].__name__,
                  "processor": PROCESSOR_MAPPING[type(config)].__name__,
                  "original_model": MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[type(original)].__name__}))
"""
_REGISTERED = {"config": "SkinVLConfig", "original": "LlavaMistralConfig", "model": "SkinVLForConditionalGeneration",
               "processor": "SkinVLProcessor", "original_model": "SkinVLFromOriginalForConditionalGeneration"}


@pytest.mark.parametrize("first", [
    "import skinvl",  # registered later, when transformers' Auto modules are imported
    "import transformers\nfrom transformers import AutoConfig\nimport skinvl",  # registered at once
    "from transformers import LlavaConfig\nimport skinvl",  # Auto imported by a half-initialised module
    "import skinvl\nfrom transformers import LlavaConfig",
    "import skinvl\nfrom skinvl import SkinVLConfig",  # skinvl's own module pulls transformers in
])
def test_import_skinvl_registers_with_the_auto_classes_in_any_order(first):
    assert _fresh(f"import json\n{first}\n{_AUTO_CHECK}") == _REGISTERED


def test_cli_help_lines_match_the_commands_own(capsys):
    """`skinvl --help` lists each command with the help its module registers (one text, checked)."""
    from skinvl.cli import COMMANDS, build_parser

    for name, (_, help_line) in COMMANDS.items():
        parser = build_parser([name])
        action = next(a for a in parser._subparsers._group_actions if a.dest == "command")
        registered = {choice.dest: choice.help for choice in action._choices_actions}
        assert registered[name] == help_line, name



def test_every_public_name_of_the_core_resolves():
    import skinvl.inference as core

    for name in core.__all__:
        assert getattr(core, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        core.nothing  # noqa: B018
