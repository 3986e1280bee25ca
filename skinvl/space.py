"""``skinvl demo --export-space DIR``: the demo as a Hugging Face Space folder that installs only what it runs.

The folder holds app.py, README.md (the Spaces YAML: sdk and its version, ``suggested_hardware``,
``preload_from_hub`` and ``models``/``datasets`` links) and requirements.txt, plus the modules of
``skinvl``/``mm_skin`` that app.py reaches (:func:`vendored_modules`: a static walk of their
imports, lazy ones included), never the whole package. requirements.txt lists the distributions
those modules import, pinned to the versions installed here (the ones the tests ran); gradio is not
listed (the Space's ``sdk_version`` pins it). On CPU hardware torch is the CPU build from the
PyTorch index (about 0.2 GB instead of the CUDA build's ~3 GB of wheels).
"""

from __future__ import annotations

import ast
import dataclasses
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mm_skin.hub import is_hub_id

if TYPE_CHECKING:
    from skinvl.demo_options import DemoOptions

SPACE_PACKAGES = ("skinvl", "mm_skin")  # vendored into a Space: the code its app.py imports
SPACE_ENTRY = "skinvl.demo"  # what app.py imports
SDK_PACKAGES = {"gradio", "gradio_client"}  # installed by the Space from its sdk_version
# Loaded by transformers by name, never imported by our code: it converts the authors' sentencepiece
# tokenizer.model (their checkpoints have no tokenizer.json) with these two.
RUNTIME_PACKAGES = ("sentencepiece", "protobuf")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_MODELS = {"skinvl-tiny"}  # runs on a free CPU Space; anything else is a 7B model
GPU_HARDWARE = "l4x1"  # 24 GB: a 7B model in bfloat16 (~15 GB) and its activations

SPACE_APP = '''"""The SkinVL demo as a Hugging Face Space (written by `skinvl demo --export-space`).

skinvl/ and mm_skin/ beside this file are the mm-skin {version} modules the app imports.
"""

import os
import sys

from skinvl.demo import DemoOptions, serve

OPTIONS = DemoOptions(
{settings}
    # Spaces set GRADIO_SERVER_NAME=0.0.0.0; run locally, the app stays on this machine.
    host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
)

if __name__ == "__main__":
    sys.exit(serve(OPTIONS))
'''

SPACE_README_BODY = """
# SkinVL demo: `{model}`

Ask [SkinVL]({model_url}), the MM-Skin dermatology vision-language model (Zeng et al.,
[arXiv 2505.06152](https://arxiv.org/abs/2505.06152)), about a skin image; or ask the paper's
zero-shot question for a list of classes. The answer streams as it is generated; the app shows
the image as the model sees it.

{notice}

Suggested hardware: `{hardware}` ({torch_build}). Written by `skinvl demo --export-space`
(mm-skin {version}); run it locally with `pip install -r requirements.txt gradio=={gradio}`, then
`python app.py`.
"""


def _module_file(root: Path, name: str) -> Path | None:
    """The source file of module ``name`` under ``root`` (the folder holding its top package), or None."""
    path = root.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(file: Path, module: str) -> set[str]:
    """Every module (and ``module.attribute``) that ``file`` imports anywhere, relative ones resolved."""
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, or an attribute
    return names


def vendored_modules(entry: str = SPACE_ENTRY, packages: Iterable[str] = SPACE_PACKAGES) -> dict[str, Path]:
    """``{module: source file}`` of every module of ``packages`` that ``entry`` reaches by import.

    Static: each file's imports anywhere (functions included, since the app may call them), and
    each module's parent packages. Files are found beside the installed packages, not imported.
    """
    import importlib

    roots = {p: Path(importlib.import_module(p).__file__).parent.parent for p in packages}
    found: dict[str, Path] = {}
    todo = [entry]
    while todo:
        name = todo.pop()
        top = name.split(".")[0]
        if name in found or top not in roots:
            continue
        file = _module_file(roots[top], name)
        if file is None:
            continue  # an attribute (``from pkg import function``), not a module
        found[name] = file
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += _imported_names(file, name)
    return dict(sorted(found.items()))


def _optional(handlers: list[ast.ExceptHandler]) -> bool:
    """Whether a ``try`` block's handlers catch a failed import (the import is optional)."""
    caught = {"ImportError", "ModuleNotFoundError"}
    for handler in handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(k, ast.Name) and k.id in caught for k in kinds):
            return True
    return False


def required_imports(file: Path) -> set[str]:
    """Top-level names of the absolute imports in ``file`` that are not guarded by ``except ImportError``."""
    names: set[str] = set()

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Try):
            inner = guarded or _optional(node.handlers)
            for child in node.body:
                visit(child, inner)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded)
            return
        if not guarded and isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif not guarded and isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(file.read_text(encoding="utf-8"), str(file)), False)
    return names


def torch_requirement(version: str, hardware: str) -> list[str]:
    """requirements.txt lines for torch ``version`` on Space ``hardware``: the CPU build on CPU hardware."""
    public = version.split("+")[0]
    if hardware.startswith("cpu"):
        return [f"--extra-index-url {TORCH_CPU_INDEX}", f"torch=={public}+cpu"]
    return [f"torch=={public}"]  # PyPI's Linux wheel is the CUDA build


def space_requirements(files: Iterable[Path], hardware: str) -> str:
    """requirements.txt for the vendored ``files``: each imported distribution pinned to its installed version.

    Raises ValueError naming the file and the import when no installed distribution provides it.
    """
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    providers = packages_distributions()
    pins: dict[str, str] = {}
    torch_lines: list[str] = []
    for file in files:
        for name in sorted(required_imports(file) - set(sys.stdlib_module_names) - set(SPACE_PACKAGES) - SDK_PACKAGES):
            dists = providers.get(name)
            if not dists:
                raise ValueError(f"{file}: imports {name!r}, which no installed distribution provides; install it "
                                 "(the Space's requirements are pinned to what is installed), then export again.")
            if name == "torch":
                torch_lines = torch_requirement(version("torch"), hardware)
            else:
                pins[dists[0].lower()] = f"{dists[0]}=={version(dists[0])}"
    for dist in RUNTIME_PACKAGES:
        try:
            pins[dist] = f"{dist}=={version(dist)}"
        except PackageNotFoundError:
            raise ValueError(f"{dist} is not installed; transformers needs it to read the authors' tokenizer "
                             f"in the Space: pip install {dist}, then export again.") from None
    header = ["# What app.py and the modules beside it import, pinned to the versions `skinvl demo --export-space`",
              "# ran with; gradio comes from the README's sdk_version."]
    return "\n".join([*header, *torch_lines, *(pins[k] for k in sorted(pins))]) + "\n"


def suggested_hardware(options: DemoOptions) -> str:
    """``--space-hardware``, else a free CPU Space for the tiny preset and an L4 GPU for anything else.

    Raises ValueError for a flavor that huggingface_hub's ``SpaceHardware`` does not know.
    """
    from huggingface_hub import SpaceHardware

    known = [flavor.value for flavor in SpaceHardware]
    if options.space_hardware is not None and options.space_hardware not in known:
        raise ValueError(f"--space-hardware {options.space_hardware!r} is not a Spaces hardware flavor; "
                         f"choose one of {', '.join(known)}.")
    return options.space_hardware or ("cpu-basic" if options.model in CPU_MODELS else GPU_HARDWARE)


def space_readme(options: DemoOptions, version: str, hardware: str) -> str:
    """README.md: the Spaces YAML (huggingface_hub's ``SpaceCardData``) and what the Space is."""
    import gradio
    from huggingface_hub import SpaceCard, SpaceCardData

    from skinvl.demo_options import NOTICE

    models = [m for m in (options.model, options.vision_tower) if m and is_hub_id(m)]
    datasets = [options.data] if options.data and is_hub_id(options.data) else None
    card = SpaceCardData(
        title="SkinVL demo", emoji="🩺", colorFrom="pink", colorTo="indigo", sdk="gradio",
        sdk_version=gradio.__version__, python_version=f"{sys.version_info[0]}.{sys.version_info[1]}",
        app_file="app.py", pinned=False, license="apache-2.0", models=models or None, datasets=datasets,
        suggested_hardware=hardware, preload_from_hub=models or None,  # downloaded at build time, not at start
        short_description="SkinVL dermatology VLM: research demo, not medical advice",
        tags=["medical", "dermatology", "vision-language", "research-only"],
    )
    url = f"https://huggingface.co/{options.model}" if is_hub_id(options.model) else "https://arxiv.org/abs/2505.06152"
    build = "CPU build of torch" if hardware.startswith("cpu") else "CUDA build of torch; use `dtype` bfloat16"
    body = SPACE_README_BODY.format(model=options.model, model_url=url, notice=NOTICE, version=version,
                                    hardware=hardware, torch_build=build, gradio=gradio.__version__)
    return str(SpaceCard(f"---\n{card.to_yaml()}\n---\n{body}"))


def _space_sources(options: DemoOptions) -> str | None:
    """Why the model, data, vision tower or template cannot be read inside a Space, or None."""
    from skinvl.presets import PRESET_NAMES

    fixes = {
        "model": "push a local checkpoint with `skinvl push` first, or use a preset such as skinvl-tiny",
        "data": "push the dataset with `mm-skin push` first, or leave --data out",
        "vision_tower": "e.g. openai/clip-vit-large-patch14-336",
        "chat_template": "save the template as chat_template.jinja in the model repository instead",
    }
    for name, fix in fixes.items():
        value = getattr(options, name)
        if value is None or (name == "model" and value in PRESET_NAMES):
            continue
        if name == "chat_template" or Path(value).exists() or not is_hub_id(value):
            return (f"--{name.replace('_', '-')} {value!r}: a Space cannot read this machine's files; "
                    f"give a Hub id (OWNER/NAME): {fix}.")
    return None


def _space_settings(options: DemoOptions) -> str:
    """The ``DemoOptions(...)`` keyword lines of app.py: the model's options that differ from the
    defaults, the examples and the token cap (the server's own options stay the Space's)."""
    from skinvl.demo_options import DemoOptions

    server = {"host", "port", "share", "export_space", "overwrite", "space_hardware"}
    lines = []
    for f in dataclasses.fields(DemoOptions):
        value = getattr(options, f.name)
        if f.name not in server and (f.name == "model" or value != f.default):
            lines.append(f"    {f.name}={value!r},")
    return "\n".join(lines)


def write_sources(modules: dict[str, Path], folder: Path, packages: Iterable[str] = SPACE_PACKAGES) -> None:
    """Copy the ``modules`` and the packages' data files (presets, configs; no caches) into ``folder``."""
    import importlib

    for package in packages:
        target = folder / package
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise ValueError(f"{target} exists and is not a folder: move it away, then export again.")
        shutil.rmtree(target, ignore_errors=True)
        source = Path(importlib.import_module(package).__file__).parent
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts:
                (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.relative_to(source))
        for name, path in modules.items():
            if name.split(".")[0] == package:
                destination = folder / path.relative_to(source.parent)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)


def write_space(options: DemoOptions) -> str:
    """Write the Spaces-ready folder ``options.export_space``; return the line that says what was written.

    Raises ValueError (one line naming the option, the value and the fix) before writing anything
    when the folder, a source or the hardware cannot make a Space.
    """
    from importlib.metadata import version as installed

    folder = Path(options.export_space)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--export-space {folder} is a file; give a folder.")
    if folder.is_dir() and any(folder.iterdir()) and not options.overwrite:
        raise ValueError(f"--export-space {folder} is not empty; pass --overwrite to replace the "
                         "files the export writes there (other files are kept), or choose a new folder.")
    problem = _space_sources(options)
    if problem:
        raise ValueError(problem)
    try:
        import gradio  # noqa: F401  (its version is the Space's sdk_version)
    except ImportError:
        raise ValueError("--export-space needs Gradio installed (its version becomes the Space's "
                         "sdk_version): pip install 'mm-skin[demo]'.") from None
    version, hardware = installed("mm-skin"), suggested_hardware(options)
    modules = vendored_modules()
    requirements = space_requirements(modules.values(), hardware)
    folder.mkdir(parents=True, exist_ok=True)
    write_sources(modules, folder)
    (folder / "app.py").write_text(SPACE_APP.format(version=version, settings=_space_settings(options)),
                                   encoding="utf-8")
    (folder / "requirements.txt").write_text(requirements, encoding="utf-8")
    (folder / "README.md").write_text(space_readme(options, version, hardware), encoding="utf-8")
    sources = ", ".join(f"{package}/" for package in SPACE_PACKAGES)
    return (f"wrote the Space to {folder}/ (app.py, requirements.txt, README.md, {sources}: {len(modules)} "
            f"modules; suggested hardware {hardware}); publish it with: skinvl push {folder} OWNER/NAME --repo-type space")


__all__ = ["required_imports", "space_requirements", "torch_requirement", "vendored_modules", "write_space"]
