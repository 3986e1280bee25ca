"""The exported Space installs what it runs and runs from its folder alone.

Static: every import of every .py in the exported folder is the standard library, a module of the
folder itself, gradio (the Space's sdk_version) or a distribution pinned in requirements.txt;
torch is the CPU build on CPU hardware. Dynamic (slow): ``python app.py`` in a folder holding only
the export, with the installed skinvl hidden, serves the app on 127.0.0.1 and answers over HTTP.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the Space export needs gradio: pip install -e '.[demo]'")

from skinvl.cli import main  # noqa: E402

START_S = 180  # a cold start imports torch, transformers and gradio on a loaded 2-core machine
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;]+)$")


def _export(capsys, space: Path, *args: str) -> str:
    code = main(["demo", "--export-space", str(space), *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _requirements(space: Path) -> tuple[dict[str, str], list[str]]:
    """``{normalised distribution: pinned version}`` and the pip option lines of requirements.txt."""
    pins, options = {}, []
    for line in (space / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--"):
            options.append(line)
            continue
        match = PIN.match(line)
        assert match, f"requirements.txt line {line!r} is not pinned with =="
        pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins, options


def _imports(file: Path) -> set[str]:
    """Top-level names of every absolute import in ``file`` (functions included), bar the guarded ones."""
    tree = ast.parse(file.read_text(encoding="utf-8"))
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                "ImportError" in ast.unparse(h.type or ast.Name("")) for h in node.handlers):
            guarded |= {id(n) for statement in node.body for n in ast.walk(statement)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_requirements_cover_every_import_of_the_folder(tmp_path, capsys):
    space = tmp_path / "space"
    out = _export(capsys, space, "--model", "skinvl-tiny")
    assert "suggested hardware cpu-basic" in out
    pins, options = _requirements(space)
    providers = {k: [re.sub(r"[-_.]+", "-", d).lower() for d in v] for k, v in packages_distributions().items()}
    own = {p.name for p in space.iterdir() if p.is_dir()} | {p.stem for p in space.glob("*.py")}
    files = sorted(space.rglob("*.py"))
    assert len(files) > 10
    missing = {}
    for file in files:
        for name in _imports(file) - set(sys.stdlib_module_names) - own - {"gradio"}:
            if not set(providers.get(name, [name])) & set(pins):
                missing.setdefault(name, str(file.relative_to(space)))
    assert not missing, f"imported but not in requirements.txt: {missing}"
    # Pinned to what ran here; gradio is the sdk_version; transformers' tokenizer converters are there.
    for dist, pinned in pins.items():
        assert pinned.split("+")[0] == version(dist).split("+")[0], dist
    assert "gradio" not in pins and {"sentencepiece", "protobuf", "transformers"} <= set(pins)
    # Only what the app reaches is vendored: training and conversion code stay out.
    assert (space / "skinvl" / "demo.py").is_file() and (space / "skinvl" / "presets" / "skinvl-tiny.json").is_file()
    assert not (space / "skinvl" / "train.py").exists() and not (space / "skinvl" / "convert.py").exists()
    assert "trl" not in pins and "peft" not in pins
    # CPU hardware gets the CPU build of torch, from the PyTorch index.
    assert pins["torch"].endswith("+cpu") and "--extra-index-url https://download.pytorch.org/whl/cpu" in options


def test_space_card_yaml_links_and_hardware(tmp_path, capsys):
    from huggingface_hub import SpaceCard

    space = tmp_path / "space"
    _export(capsys, space, "--model", "owner/skinvl-pubmm", "--data", "owner/mm-skin",
            "--vision-tower", "openai/clip-vit-large-patch14-336", "--dtype", "bfloat16")
    data = SpaceCard.load(space / "README.md").data
    assert data.models == ["owner/skinvl-pubmm", "openai/clip-vit-large-patch14-336"]
    assert data.datasets == ["owner/mm-skin"]
    assert data.preload_from_hub == data.models  # downloaded when the Space is built
    assert data.suggested_hardware == "l4x1"
    pins, options = _requirements(space)
    assert "+" not in pins["torch"] and not options  # a GPU Space: PyPI's CUDA build

    cpu = tmp_path / "cpu"
    _export(capsys, cpu, "--model", "owner/skinvl-pubmm", "--space-hardware", "cpu-upgrade")
    assert SpaceCard.load(cpu / "README.md").data.suggested_hardware == "cpu-upgrade"
    assert "space_hardware" not in (cpu / "app.py").read_text()  # the Space's own, not the app's
    assert _requirements(cpu)[0]["torch"].endswith("+cpu")
    assert main(["demo", "--export-space", str(tmp_path / "bad"), "--model", "owner/m",
                 "--space-hardware", "quantum-1"]) == 2
    err = capsys.readouterr().err
    assert "quantum-1" in err and "cpu-basic" in err and not (tmp_path / "bad").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_app_starts_from_the_exported_folder_alone(tmp_path, capsys):
    """``python app.py`` where only the export is, the installed skinvl/mm_skin hidden, answers over HTTP."""
    import httpx
    from gradio_client import Client, handle_file
    from PIL import Image

    space = tmp_path / "space"
    _export(capsys, space, "--model", "skinvl-tiny", "--max-new-tokens", "4")
    # A sitecustomize that makes the installed packages unimportable: only the folder's copies load.
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "PYTHON"))}
    env.update(PYTHONPATH=str(tmp_path / "hide"), HF_HUB_OFFLINE="1", GRADIO_SERVER_PORT=str(port),
               GRADIO_TEMP_DIR=str(tmp_path / "gradio-tmp"))
    log = tmp_path / "app.log"
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert process.poll() is None, f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"app.py did not serve within {START_S} s:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(url + "config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        Image.new("RGB", (40, 30), (200, 150, 120)).save(tmp_path / "skin.png")
        client = Client(url, verbose=False)
        answer = client.predict(image=handle_file(str(tmp_path / "skin.png")), question="What does the image show?",
                                decoding="greedy", max_new_tokens=4, seed=0, api_name="/answer")
        assert isinstance(answer, str)
        check = subprocess.run(  # the app ran the folder's code: the installed package was hidden
            [sys.executable, "-c", "import skinvl, mm_skin; print(skinvl.__file__, mm_skin.__file__)"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert check.returncode != 0 and "ModuleNotFoundError" in check.stderr, check.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
