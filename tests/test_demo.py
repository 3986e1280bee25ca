"""``skinvl demo``: the Gradio app, served by the real CLI on 127.0.0.1 with ``skinvl-tiny``,
driven by ``gradio_client`` and by a real browser (Debian's chromium + chromedriver, Selenium);
plus the Spaces export.

The server runs in a subprocess whose sockets are guarded (a ``sitecustomize`` refuses and logs
any connection or DNS lookup that is not loopback), so the tests also check that the app never
tries to reach the internet. Screenshots go to $SKINVL_TEST_ARTIFACTS (default: the test's
tmp_path); the path is printed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytest.importorskip("gradio", reason="the demo needs gradio: pip install -e '.[demo]'")

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1500",
)
QUESTION = "What does the image show?"
MAX_NEW_TOKENS = 8
N_EXAMPLES = 3
WAIT_S = 60  # bound on every wait for the app (a loaded 2-core machine is slow, never this slow)
START_S = 180  # bound on the server's cold start (torch + transformers + gradio imports, model)

# Loaded into the server process via PYTHONPATH: any non-loopback DNS lookup or connection is
# refused and written to $SKINVL_TEST_NET_LOG, which the tests read back.
NET_GUARD = textwrap.dedent('''
    import os, socket
    _LOG = os.environ["SKINVL_TEST_NET_LOG"]
    open(_LOG, "a").close()  # the guard is on: the tests check that this file exists
    _LOCAL = {None, "", "127.0.0.1", "::1", "localhost", "0.0.0.0", "::"}
    def _refuse(what):
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(what + "\\n")
        raise OSError(f"test net guard: {what} refused")
    _getaddrinfo = socket.getaddrinfo
    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOCAL:
            _refuse(f"dns {name}")
        return _getaddrinfo(host, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo
    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    def _check(address):
        if isinstance(address, tuple) and address[0] not in _LOCAL:
            _refuse(f"connect {address}")
    def connect(self, address):
        _check(address)
        return _connect(self, address)
    def connect_ex(self, address):
        _check(address)
        return _connect_ex(self, address)
    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ``skinvl demo`` subprocess."""

    def __init__(self, url: str, data: Path, net_log: Path, log: Path, process: subprocess.Popen):
        self.url, self.data, self.net_log, self.log, self.process = url, data, net_log, log, process

    def outbound_attempts(self) -> list[str]:
        assert self.net_log.exists(), "the network guard was not loaded into the server"
        return self.net_log.read_text().splitlines()


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"skinvl demo exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "config", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"skinvl demo did not serve {url} within {START_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, vqa_folder) -> Server:
    """``skinvl demo --model skinvl-tiny --data <the built sample>`` on a free loopback port."""
    root = tmp_path_factory.mktemp("demo")
    data = vqa_folder  # read only: the demo never writes into --data
    (root / "guard").mkdir()
    (root / "guard" / "sitecustomize.py").write_text(NET_GUARD)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADIO_")}  # the demo sets its own
    env.update(PYTHONPATH=str(root / "guard"), SKINVL_TEST_NET_LOG=str(root / "net.log"),
               HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=str(root / "gradio-tmp"))
    log = root / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "skinvl", "demo", "--model", "skinvl-tiny", "--port", str(port),
             "--data", str(data), "--examples", str(N_EXAMPLES), "--max-new-tokens", str(MAX_NEW_TOKENS)],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_serving(url, process, log)
        yield Server(url, data, root / "net.log", log, process)
    finally:
        process.send_signal(signal.SIGTERM)  # the demo closes Gradio like on Ctrl-C
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert process.returncode == 0, f"skinvl demo did not stop cleanly:\n{log.read_text()[-3000:]}"


def _direct_answer(tiny, image_path: Path, question: str) -> str:
    """What the model answers without the app: greedy, the processor's default template."""
    from PIL import Image

    from skinvl.generate import answer_batch

    with Image.open(image_path) as image:
        return answer_batch(*tiny, [image.convert("RGB")], [question], max_new_tokens=MAX_NEW_TOKENS)[0]


def _drawn_image(path: Path) -> Path:
    """A non-square test picture (so the model view shows padding): a pink disc on skin tone."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 64), (224, 180, 150))
    ImageDraw.Draw(image).ellipse((30, 14, 66, 50), fill=(150, 60, 70))
    image.save(path)
    return path


def _artifact_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SKINVL_TEST_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --------------------------------------------------------------------------- no server


def test_class_names_and_parsed_class():
    from skinvl.demo import describe_parsed, parse_class_names
    from skinvl.evaluation.zeroshot import ParsedAnswer

    assert parse_class_names(" Nevus, melanoma\nNEVUS,, Basal Cell Carcinoma ") == [
        "Nevus", "melanoma", "Basal Cell Carcinoma"]
    assert describe_parsed(ParsedAnswer("Nevus", "ok")) == "Nevus"
    assert describe_parsed(ParsedAnswer("Nevus", "ambiguous")).startswith("Nevus (ambiguous")
    assert describe_parsed(ParsedAnswer(None, "unparseable")).startswith("unparseable")


def test_model_view_is_the_processors_pad_or_crop(tiny):
    from PIL import Image

    from skinvl.demo import model_view, view_caption

    _, processor = tiny
    side = processor.image_processor.crop_size["height"]
    wide = Image.new("RGB", (120, 40), (200, 20, 20))
    processor.set_image_aspect_ratio("pad")
    padded = model_view(processor, wide)
    mean = tuple(int(255 * m) for m in processor.image_processor.image_mean)
    assert padded.size == (side, side) and "padded" in view_caption(processor)
    assert all(abs(a - b) <= 1 for a, b in zip(padded.getpixel((side // 2, 0)), mean, strict=True))
    assert padded.getpixel((side // 2, side // 2)) == (200, 20, 20)
    processor.set_image_aspect_ratio("crop")
    try:
        cropped = model_view(processor, wide)
        assert cropped.size == (side, side) and "centre-cropped" in view_caption(processor)
        assert set(cropped.getdata()) == {(200, 20, 20)}
    finally:
        processor.set_image_aspect_ratio("pad")


def test_stream_answer_grows_to_the_direct_answer(tiny, tmp_path):
    from PIL import Image

    from skinvl.demo import stream_answer
    from skinvl.inference.loading import LoadedModel

    loaded = LoadedModel.wrap(*tiny, "skinvl-tiny")
    path = _drawn_image(tmp_path / "lesion.png")
    with Image.open(path) as image:
        image = image.convert("RGB")
    steps = list(stream_answer(loaded, image, QUESTION, max_new_tokens=MAX_NEW_TOKENS))
    final = _direct_answer(tiny, path, QUESTION)
    assert steps[-1] == final and len(steps) > 2
    assert all(final.startswith(step.strip()) for step in steps)
    # The paper's decoding is beam search, which cannot stream: one value, the whole answer.
    paper = list(stream_answer(loaded, image, QUESTION, decoding="paper", max_new_tokens=4))
    assert len(paper) == 1 and isinstance(paper[0], str)


# --------------------------------------------------------------------------- gradio_client


@pytest.mark.slow
def test_answer_endpoint_with_gradio_client(server, tiny, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from skinvl.evaluation.zeroshot import build_prompt

    image = _drawn_image(tmp_path / "lesion.png")
    client = Client(server.url, verbose=False)
    job = client.submit(image=handle_file(str(image)), question=QUESTION, template="mistral_instruct",
                        decoding="greedy", max_new_tokens=MAX_NEW_TOKENS, seed=0, api_name="/answer")
    final = job.result(timeout=WAIT_S)
    assert final == _direct_answer(tiny, image, QUESTION)
    streamed = job.outputs()
    assert len(streamed) > 2 and all(final.startswith(s.strip()) for s in streamed)

    classes = ["Melanoma", "Nevus"]
    answer, prompt, parsed = client.predict(
        image=handle_file(str(image)), classes="Melanoma, Nevus", protocol="robust",
        template="mistral_instruct", decoding="greedy", max_new_tokens=MAX_NEW_TOKENS, seed=0,
        api_name="/zeroshot",
    )
    assert prompt == build_prompt(classes)
    assert answer == _direct_answer(tiny, image, prompt)
    assert parsed in classes or parsed.startswith(("unparseable", "Melanoma (", "Nevus ("))

    with pytest.raises(AppError, match="Type a question first"):
        client.predict(image=handle_file(str(image)), question="  ", api_name="/answer")
    assert server.outbound_attempts() == []


# --------------------------------------------------------------------------- a real browser


@pytest.fixture
def browser(tmp_path):
    """Headless Debian chromium through its chromedriver; quit (both processes end) afterwards."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.exists()):
        pytest.skip("the browser test needs Debian's chromium and chromium-driver "
                    "(/usr/bin/chromium, /usr/bin/chromedriver): apt-get install -y chromium "
                    "chromium-driver (.ci/run does)")
    pytest.importorskip("selenium", reason="pip install selenium (in the dev extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")  # new and empty
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for_answer(driver, expected: str) -> str:
    """The answer box once it shows ``expected`` (or its last value after WAIT_S)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def value(d) -> str:
        return d.find_element(By.CSS_SELECTOR, "#answer textarea").get_property("value")

    try:
        WebDriverWait(driver, WAIT_S).until(lambda d: value(d) == expected)
    except TimeoutException:
        pass
    return value(driver)


def _requested_hosts(driver) -> set[str]:
    """Hosts of every network request the page made (Chrome's performance log)."""
    import json

    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = urlparse(message["params"]["request"]["url"])
            if url.scheme in ("http", "https", "ws", "wss"):
                hosts.add(url.hostname)
    return hosts


@pytest.mark.slow
def test_browser_example_upload_ask_and_read_answer(server, browser, tiny, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from skinvl.evaluation.vqa import load_vqa_split

    wait = WebDriverWait(browser, WAIT_S)
    browser.get(server.url)
    question = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#question textarea")))
    assert "not medical advice" in browser.find_element(By.ID, "notice").text

    # 1. An MM-Skin test example: one click fills image and question; Ask answers it.
    examples = browser.find_elements(By.XPATH, "//*[contains(text(), 'MM-Skin test examples')]")
    assert examples, "the --data examples are not shown"
    first = load_vqa_split(str(server.data), limit=1)[0]
    first["image"].convert("RGB").save(tmp_path / "example.png")
    wait.until(ec.element_to_be_clickable(
        (By.XPATH, "//*[contains(text(), 'MM-Skin test examples')]/following::img[1]"))).click()
    wait.until(lambda d: question.get_property("value") == first["question"])
    browser.find_element(By.ID, "ask").click()
    expected = _direct_answer(tiny, tmp_path / "example.png", first["question"])
    assert _wait_for_answer(browser, expected) == expected

    # 2. Upload a picture, type a question, submit, read the answer back.
    view_src = "const i = document.querySelector('#model-view img'); return i && i.complete && i.src;"
    shown = wait.until(lambda d: d.execute_script(view_src))  # the example, as the model sees it
    picture = _drawn_image(tmp_path / "lesion.png")
    browser.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(picture))
    wait.until(lambda d: d.execute_script(view_src) not in (None, False, shown))
    side = tiny[1].image_processor.crop_size["height"]
    width = browser.execute_script("return document.querySelector('#model-view img').naturalWidth")
    assert width % side == 0 and width >= side, "the model view is not the processor's square"
    question.clear()
    question.send_keys(QUESTION)
    browser.find_element(By.ID, "ask").click()
    expected = _direct_answer(tiny, picture, QUESTION)
    assert _wait_for_answer(browser, expected) == expected

    browser.execute_script("window.scrollTo(0, 0)")
    screenshot = _artifact_dir(tmp_path) / "skinvl-demo.png"
    assert browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")
    assert screenshot.read_bytes()[:4] == b"\x89PNG"
    assert _requested_hosts(browser) <= {"127.0.0.1"}, "the page reached beyond the app"
    assert server.outbound_attempts() == []


# --------------------------------------------------------------------------- Spaces export


def _export(capsys, space: Path, *args: str) -> tuple[int, str, str]:
    """``skinvl demo --export-space SPACE ARGS`` through the real CLI, in-process."""
    from skinvl.cli import main

    code = main(["demo", "--export-space", str(space), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_space_folder(tmp_path, capsys):
    import gradio
    from huggingface_hub import SpaceCard

    space = tmp_path / "space"
    code, out, err = _export(capsys, space, "--model", "owner/skinvl-pubmm", "--dtype", "bfloat16")
    assert code == 0, err
    assert "skinvl push" in out and "--repo-type space" in out
    card = SpaceCard.load(space / "README.md")
    assert card.data.sdk == "gradio" and card.data.sdk_version == gradio.__version__
    assert card.data.app_file == "app.py" and card.data.title and card.data.models == ["owner/skinvl-pubmm"]
    assert "not medical advice" in card.text
    requirements = (space / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("transformers") for r in requirements)
    assert not any(r.startswith("gradio") for r in requirements)  # sdk_version pins it
    app = (space / "app.py").read_text()
    compile(app, "app.py", "exec")
    assert "model='owner/skinvl-pubmm'" in app and "dtype='bfloat16'" in app
    assert (space / "skinvl" / "demo.py").read_text() == (REPO / "skinvl" / "demo.py").read_text()
    assert not list(space.rglob("__pycache__"))
    # What `skinvl push SPACE OWNER/NAME --repo-type space` checks before uploading.
    from mm_skin.hub import select_files
    from skinvl.hub import check_space_folder

    assert check_space_folder(select_files(space)) == "gradio"

    # A non-empty folder is never overwritten without --overwrite; with it, other files stay.
    (space / "notes.txt").write_text("mine")
    (space / "app.py").write_text("# edited")
    code, _, err = _export(capsys, space, "--model", "owner/other")
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (space / "app.py").read_text() == "# edited"
    code, _, err = _export(capsys, space, "--model", "owner/other", "--overwrite")
    assert code == 0, err
    assert "owner/other" in (space / "app.py").read_text() and (space / "notes.txt").read_text() == "mine"

    # A Space cannot read this machine's files.
    for args in (["--model", str(tmp_path)], ["--model", "owner/m", "--data", str(tmp_path)]):
        code, _, err = _export(capsys, tmp_path / "s2", *args)
        assert code == 2 and "Hub id" in err and not (tmp_path / "s2").exists()


@pytest.mark.slow
def test_exported_space_imports_its_own_sources(tmp_path, capsys):
    space = tmp_path / "space"
    assert _export(capsys, space, "--model", "skinvl-tiny")[0] == 0
    # The Space's app builds from the sources beside it (none of the installed package's modules).
    check = textwrap.dedent("""
        import sys
        from pathlib import Path
        import app
        from skinvl.demo import build_app
        from skinvl.inference.loading import load_model
        build_app(load_model(app.OPTIONS), app.OPTIONS)
        ours = {n: m for n, m in sys.modules.items() if n.split(".")[0].startswith(("skinvl", "mm_skin"))}
        outside = [n for n, m in ours.items() if not Path(m.__file__).is_relative_to(Path.cwd())]
        assert "skinvl.demo" in ours and not outside, outside
        print(app.OPTIONS.model, app.OPTIONS.host)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", check], cwd=space, capture_output=True, text=True,
                          timeout=120, env={**env, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["skinvl-tiny", "127.0.0.1"]
