"""Issue 10, dataset side: the builder under hostile or careless input (one test per item)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage
from PIL import features as pil_features
from test_dataset import SAMPLE, _noise_png, _png, make_release, report_of, write_csv

import mm_skin_dataset as mm
from mm_skin.build import _move_into_place
from mm_skin.cli import ExitCode
from mm_skin.images import _PNG_COLOUR_TYPES, _png_rows, check_image_bytes, check_parquet_images
from mm_skin.paths import UnsafePathError, resolve_inside
from mm_skin.schema import SYNTHETIC_MARKER

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _cli(args: list[str], *, timeout: float = 120, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    """`mm-skin ARGS` in a fresh interpreter (what a user runs; a hang becomes a timeout)."""
    return subprocess.run([sys.executable, "-m", "mm_skin_dataset", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env or ENV, **kw)


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """`mm-skin ARGS` in this process (faster than a fresh interpreter), as a CompletedProcess."""
    capsys.readouterr()
    rc = mm.main(args)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, captured.out, captured.err)


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The build failed with BAD_INPUT and said why in ONE line, no traceback."""
    assert proc.returncode == ExitCode.BAD_INPUT, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


def _image_bytes_in(out: Path) -> list[bytes]:
    found = []
    for shard in out.glob("*/*.parquet"):
        table = pq.read_table(shard)
        col = "image" if "image" in table.column_names else "images"
        for v in table.column(col).to_pylist():
            found += [i["bytes"] for i in (v if isinstance(v, list) else [v])]
    return found


def _png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _handmade_png(width: int, height: int, idat: bytes, *, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG with valid chunk CRCs around whatever image data ``idat`` is."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


# --------------------------------------------------------------------------------------------
# 1. Image paths stay inside the release
# --------------------------------------------------------------------------------------------


def test_resolve_inside_refuses_every_way_out(tmp_path: Path) -> None:
    root = tmp_path / "release"
    (root / "dataset").mkdir(parents=True)
    (root / "dataset/a.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"s")
    (root / "dataset/out.png").symlink_to(tmp_path / "secret.png")
    (root / "dataset/in.png").symlink_to(root / "dataset/a.png")
    (root / "escape").symlink_to(tmp_path)
    assert resolve_inside(root, "dataset/a.png") == (root / "dataset/a.png").resolve()
    assert resolve_inside(root, "dataset\\a.png") == (root / "dataset/a.png").resolve()
    assert resolve_inside(root, "dataset/in.png") == (root / "dataset/a.png").resolve()  # a link inside is fine
    refused = {
        "/etc/passwd": "absolute path", str(tmp_path / "secret.png"): "absolute path", "C:/x.png": "absolute path",
        "\\\\server\\share\\x.png": "absolute path", "../secret.png": "'..'", "dataset/../../secret.png": "'..'",
        "dataset/out.png": "symlink leads outside", "escape/secret.png": "symlink leads outside",
        "": "empty path", "a\x00b": "NUL byte",
    }
    for value, reason in refused.items():
        with pytest.raises(UnsafePathError, match=reason):
            resolve_inside(root, value)


@pytest.mark.parametrize("source", ["caption.csv", "VQA.csv", "test CSV", "instruct JSON"])
def test_image_paths_outside_the_release_are_refused_and_reported(tmp_path: Path, source: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    secret = _png((1, 2, 3))
    (tmp_path / "private").mkdir()
    (tmp_path / "private/scan.png").write_bytes(secret)
    src = make_release(tmp_path / "rel", test=[["dataset/bk1_1_1.png", "Q?", "A."]])
    (src / "MM-SkinQA/dataset/bk9_link.png").symlink_to(tmp_path / "private/scan.png")
    bad = [str(tmp_path / "private/scan.png"), "../../private/scan.png", "dataset/../../../private/scan.png",
           "dataset/bk9_link.png", "/etc/passwd"]
    args = []
    if source == "caption.csv":
        write_csv(src / "MM-SkinQA/caption.csv", ["image", "cleaned_caption", "modality"],
                  [["dataset/bk1_1_1.png", "ok", "skin"]] + [[b, f"c{i}", "skin"] for i, b in enumerate(bad)])
    elif source == "VQA.csv":
        write_csv(src / "MM-SkinQA/VQA.csv", ["image", "question", "answer"], [[b, f"q{i}", "a"] for i, b in enumerate(bad)])
    elif source == "test CSV":
        write_csv(src / "Dataframe/test/vqa/MM-Skin_test.csv", ["image", "question", "answer"],
                  [["dataset/bk1_1_1.png", "Q?", "A."]] + [[b, f"q{i}", "a"] for i, b in enumerate(bad)])
    else:
        conv = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}]
        path = tmp_path / "vqa_MM.json"
        path.write_text(json.dumps([{"image": b, "conversations": conv} for b in bad]))
        args = ["--instruct-json", str(path)]
    out = tmp_path / "out"
    proc = _main(["build", str(src), "--out", str(out), *args], capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    unsafe = [i for i in report_of(out)["skipped"] if i["reason"].startswith("unsafe image path")]
    assert sorted(i["value"] for i in unsafe) == sorted(bad)
    assert all(i["file"] and i["row"] is not None and i["column"] == "image" for i in unsafe)
    assert secret not in _image_bytes_in(out)
    strict = _main(["build", str(src), "--out", str(tmp_path / "strict"), "--strict", *args], capsys)
    assert strict.returncode == ExitCode.STRICT and "unsafe image path" in strict.stderr
    assert not (tmp_path / "strict").exists()


# --------------------------------------------------------------------------------------------
# 4. --overwrite replaces only what is ours; 5. the swap checks again; 6. no leftovers
# --------------------------------------------------------------------------------------------


def test_out_may_not_overlap_the_release_or_be_a_symlink(tmp_path: Path) -> None:
    src = make_release(tmp_path / "rel")
    (src / "my-notes.txt").write_text("mine")
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    elsewhere = tmp_path / "unrelated"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (tmp_path / "link").symlink_to(elsewhere)
    for out in (src, tmp_path, src / "MM-SkinQA", src / "built", tmp_path / "link"):
        with pytest.raises(mm.ReleaseError, match="overlaps|symlink"):
            mm.build(src, out, overwrite=True, force=True)
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before
    assert (elsewhere / "keep.txt").read_text() == "keep"


def test_overwrite_refuses_a_folder_that_is_not_an_earlier_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_release(tmp_path / "rel")
    out = tmp_path / "someones-folder"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    proc = _main(["build", str(src), "--out", str(out), "--overwrite"], capsys)
    assert "not an earlier mm-skin build" in _one_line_error(proc)
    assert (out / "thesis.tex").is_file()
    assert mm.main(["build", str(src), "--out", str(out), "--overwrite", "--force"]) == 0
    assert not (out / "thesis.tex").exists() and (out / "build_report.json").is_file()
    assert mm.main(["build", str(src), "--out", str(out), "--overwrite"]) == 0  # now ours


def test_the_swap_checks_out_again(tmp_path: Path) -> None:
    # A folder that appeared at OUT while the build ran is not replaced without --overwrite
    tmp = tmp_path / ".out.tmp-1-ab"
    tmp.mkdir()
    (tmp / "build_report.json").write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "theirs.txt").write_text("theirs")
    with pytest.raises(mm.ReleaseError, match="appeared while this build ran.*--overwrite"):
        _move_into_place(tmp, out, overwrite=False, force=False)
    with pytest.raises(mm.ReleaseError, match="not an earlier mm-skin build"):
        _move_into_place(tmp, out, overwrite=True, force=False)
    assert (out / "theirs.txt").read_text() == "theirs" and tmp.is_dir()


def test_concurrent_builds_to_one_new_out_cannot_both_succeed(tmp_path: Path) -> None:
    captions = [[f"dataset/bk1_{i}.png", f"c{i}", "skin"] for i in range(40)]
    src = make_release(tmp_path / "rel", captions=captions, vqa=[],
                       images={c[0]: _noise_png(i) for i, c in enumerate(captions)})
    out = tmp_path / "out"
    barrier = threading.Barrier(2)
    results: list[object] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(mm.build(src, out, card=False))
        except mm.ReleaseError as e:
            results.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if isinstance(r, mm.ReleaseError)]
    assert len(errors) == 1 and str(out) in str(errors[0]), results
    assert report_of(out)["written"]["clinical"] == {"train": 40}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "rel"]


@pytest.mark.slow
def test_sigterm_removes_the_temporary_folder(tmp_path: Path) -> None:
    captions = [[f"dataset/bk1_{i}.png", f"c{i}", "skin"] for i in range(150)]
    big = _noise_png(1)
    src = make_release(tmp_path / "rel", captions=captions, vqa=[], images={c[0]: big for c in captions})
    work = tmp_path / "w"
    work.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mm_skin_dataset", "build", str(src), "--out", str(work / "out"),
                             "--num-proc", "1"], cwd=REPO, env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(work.glob(".out.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the build finished before SIGTERM arrived")
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert list(work.iterdir()) == [] and "terminated (SIGTERM); removed" in err


def test_stale_temporary_folders_of_dead_builds_are_removed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_release(tmp_path / "rel")
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not _alive(pid))
    stale = tmp_path / f".out.tmp-{dead}"  # as left by a kill -9 (older builds had no suffix)
    (stale / "vqa").mkdir(parents=True)
    (stale / "vqa/train-00000.parquet.partial").write_bytes(b"x" * 1000)
    stale2 = tmp_path / f".out.tmp-{dead}-0a1b2c3d"
    (stale2 / "assets").mkdir(parents=True)
    running = tmp_path / f".out.tmp-{os.getpid()}-00ff00ff"  # a live process: maybe building right now
    running.mkdir()
    foreign = tmp_path / f".out.tmp-{dead}-deadbeef"  # not laid out like our output: not ours to delete
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with caplog.at_level("WARNING", logger="mm_skin.build"):
        mm.build(src, tmp_path / "out")
    assert not stale.exists() and not stale2.exists() and running.is_dir() and (foreign / "notes.txt").is_file()
    assert sum("left by an interrupted build" in r.getMessage() for r in caplog.records) == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# --------------------------------------------------------------------------------------------
# 8. Every written image decodes; 9. valid formats are kept; 10. only regular files are read
# --------------------------------------------------------------------------------------------


def _bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of any size, compressed row by row (never held as pixels)."""
    comp = zlib.compressobj(9)
    row = b"\x00" + bytes(-(-width // 8))
    idat = b"".join(comp.compress(row * 1000) for _ in range(height // 1000)) + comp.compress(row * (height % 1000)) + comp.flush()
    return _handmade_png(width, height, idat, depth=1, colour=0)


def test_undecodable_images_are_refused_and_what_is_written_decodes(tmp_path: Path) -> None:
    raw_rows = b"".join(b"\x00" + bytes(8 * 3) for _ in range(8))
    images = {
        "dataset/bk1_1.png": _png(),
        "dataset/bk1_2.png": _handmade_png(60000, 60000, zlib.compress(b"\x00" * 10000)),  # claims 3.6 Gpixel
        "dataset/bk1_3.png": _bilevel_png(20000, 20000),  # valid, but 400 Mpixel: a decompression bomb to PIL
        "dataset/bk1_4.png": _handmade_png(8, 8, b"\x78\x9c" + os.urandom(64)),  # good CRCs, garbage zlib
        "dataset/bk1_5.png": _handmade_png(8, 8, zlib.compress(raw_rows)[:-12]),  # stream cut short
        "dataset/bk1_6.png": _handmade_png(8, 8, zlib.compress(raw_rows.replace(b"\x00" * 25, b"\x07" + b"\x00" * 24, 1))),
    }
    assert len(images["dataset/bk1_2.png"]) < 12_000
    captions = [[k, f"c{i}", "skin"] for i, k in enumerate(images)]
    src = make_release(tmp_path / "rel", captions=captions, vqa=[], images=images)
    res = mm.build(src, tmp_path / "out")
    reasons = {i.value: i.reason for i in res.report.skipped}
    assert set(reasons) == set(images) - {"dataset/bk1_1.png"}
    assert "MAX_IMAGE_PIXELS" in reasons["dataset/bk1_2.png"] and "MAX_IMAGE_PIXELS" in reasons["dataset/bk1_3.png"]
    assert "broken image data stream" in reasons["dataset/bk1_4.png"]
    assert "truncated or broken stream" in reasons["dataset/bk1_5.png"]
    assert "filter type" in reasons["dataset/bk1_6.png"]
    ds = datasets.load_dataset(str(tmp_path / "out"), "clinical", split="train", cache_dir=str(tmp_path / "c"))
    for row in ds:
        row["image"].load()
    assert len(ds) == 1


def test_png_check_agrees_with_pil_on_every_colour_type_depth_and_interlace() -> None:
    # the inflated size the check expects (Adam7 passes included) is exactly what PIL needs:
    # a stream one byte short is refused by both, a complete one accepted by both
    for colour, (samples, depths) in _PNG_COLOUR_TYPES.items():
        for depth in depths:
            for interlace in (0, 1):
                for width, height in ((1, 1), (3, 5), (13, 7), (9, 17)):
                    size = _png_rows(width, height, samples * depth, bool(interlace))[-1][1]
                    for short in (0, 1):
                        ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
                        png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                               + (_png_chunk(b"PLTE", bytes(768)) if colour == 3 else b"")
                               + _png_chunk(b"IDAT", zlib.compress(bytes(size - short))) + _png_chunk(b"IEND", b""))
                        try:
                            with PILImage.open(io.BytesIO(png)) as img:
                                img.load()
                            pil_ok = True
                        except OSError:
                            pil_ok = False
                        assert (check_image_bytes(png) is None) == pil_ok == (short == 0), (colour, depth, interlace, width, height)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_limit_is_read_when_checking(monkeypatch: pytest.MonkeyPatch) -> None:
    png = _png(size=(40, 30))
    assert check_image_bytes(png) is None
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)
    assert "40x30 = 1,200 pixels" in check_image_bytes(png)
    buf = io.BytesIO()
    PILImage.new("RGB", (40, 30)).save(buf, "GIF")
    assert "MAX_IMAGE_PIXELS" in check_image_bytes(buf.getvalue())


def test_check_parquet_images_checks_every_row(tmp_path: Path) -> None:
    good, bad = _png(), _handmade_png(8, 8, b"\x78\x9c" + b"\xff" * 40)
    features = datasets.Features({"image": datasets.Image(), "n": datasets.Value("int32")})
    rows = [{"bytes": good, "path": "a.png"}] * 5 + [{"bytes": bad, "path": "b.png"}, {"bytes": None, "path": "c.png"}]
    table = pa.table({"image": rows, "n": list(range(7))}, schema=features.arrow_schema)
    pq.write_table(table, tmp_path / "t.parquet")
    problems = check_parquet_images(tmp_path / "t.parquet", batch_rows=2)
    assert [(p.row, p.name) for p in problems] == [(5, "b.png"), (6, "c.png")]
    assert "broken" in problems[0].reason and "without its bytes" in problems[1].reason
    # instruct-style list column, and the built sample: nothing to report
    images = pa.table({"images": [[{"bytes": good, "path": "a"}, {"bytes": bad, "path": "b"}]]},
                      schema=datasets.Features({"images": datasets.List(datasets.Image())}).arrow_schema)
    pq.write_table(images, tmp_path / "l.parquet")
    assert [(p.row, p.name) for p in check_parquet_images(tmp_path / "l.parquet")] == [(0, "b")]


def _encoded(fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (16, 16), (200, 30, 60)).save(buf, fmt, **kw)
    return buf.getvalue()


def test_valid_images_of_other_formats_are_kept_and_non_images_named(tmp_path: Path) -> None:
    images = {"dataset/bk1_1.tif": _encoded("TIFF"), "dataset/bk1_2.jpg": _encoded("JPEG"), "dataset/bk1_3.gif": _encoded("GIF"),
              "dataset/bk1_4.txt": b"just some notes, not an image\n",
              "dataset/bk1_5.svg": b"<svg xmlns='http://www.w3.org/2000/svg' width='4' height='4'/>"}
    if pil_features.check("webp"):
        images["dataset/bk1_6.webp"] = _encoded("WEBP", lossless=True)
    captions = [[k, f"c{i}", "skin"] for i, k in enumerate(images)]
    src = make_release(tmp_path / "rel", captions=captions, vqa=[], images=images)
    res = mm.build(src, tmp_path / "out")
    reasons = {i.value: i.reason for i in res.report.skipped}
    assert reasons == {"dataset/bk1_4.txt": "undecodable image: not a recognised image format",
                       "dataset/bk1_5.svg": "undecodable image: not a recognised image format"}
    written = _image_bytes_in(tmp_path / "out")
    assert sorted(written) == sorted(v for k, v in images.items() if k not in reasons)  # original bytes


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    captions = [["dataset/bk1_1.png", "ok", "skin"], ["dataset/bk1_2.png", "fifo", "skin"], ["dataset/bk1_3.png", "dir", "skin"]]
    src = make_release(tmp_path / "rel", captions=captions, vqa=[], images={"dataset/bk1_1.png": _png()})
    os.mkfifo(src / "MM-SkinQA/dataset/bk1_2.png")
    (src / "MM-SkinQA/dataset/bk1_3.png").mkdir()
    out = tmp_path / "out"
    proc = _cli(["build", str(src), "--out", str(out)], timeout=120)  # before: blocked forever on the FIFO
    assert proc.returncode == 0, proc.stderr[-2000:]
    reasons = {i["value"]: i["reason"] for i in report_of(out)["skipped"]}
    assert reasons == {"dataset/bk1_2.png": "not a regular file (a named pipe (FIFO))",
                       "dataset/bk1_3.png": "not a regular file (a directory)"}
    assert str(tmp_path) not in (out / "build_report.json").read_text()  # 12: no local paths in the report


# --------------------------------------------------------------------------------------------
# 11. One line naming file / row / value / fix, exit BAD_INPUT, instead of a traceback
# --------------------------------------------------------------------------------------------


def _without_root_override() -> list[str]:
    """A command prefix under which permission bits apply: root ignores them, so as root the
    build runs without the capabilities that override them (CAP_DAC_OVERRIDE/READ_SEARCH)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without `setpriv`: permission bits cannot be made to apply")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_unreadable_csv_and_unwritable_out_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_release(tmp_path / "rel")
    prefix = _without_root_override()

    def build(out: Path) -> str:
        proc = subprocess.run([*prefix, sys.executable, "-m", "mm_skin_dataset", "build", str(src), "--out", str(out)],
                              capture_output=True, text=True, timeout=120, cwd=REPO, env=ENV)
        return _one_line_error(proc)

    (src / "MM-SkinQA/VQA.csv").chmod(0)
    line = build(tmp_path / "out")
    assert "MM-SkinQA/VQA.csv: cannot read the file (Permission denied)" in line and "chmod" in line
    (src / "MM-SkinQA/VQA.csv").chmod(0o644)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = build(locked / "sub/out")
    finally:
        locked.chmod(0o755)
    assert "cannot create it (Permission denied)" in line and "--out" in line
    (tmp_path / "a-file").write_text("x")
    proc = _main(["build", str(src), "--out", str(tmp_path / "a-file/out")], capsys)
    assert "cannot create it (File exists)" in _one_line_error(proc)


@pytest.mark.slow
def test_full_disk_is_one_line(tmp_path: Path) -> None:
    if not shutil.which("unshare") or subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("needs `unshare` (user + mount namespaces) to mount a tiny tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    # the sample: several outputs are open when the disk fills (each must be closed quietly)
    script = f"mount -t tmpfs -o size=64k tmpfs {disk} && exec {sys.executable} -m mm_skin_dataset build {SAMPLE} --out {disk}/out"
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env=ENV)
    line = _one_line_error(proc)
    assert "no space left on the device" in line and "choose an --out on another disk" in line


def test_deeply_nested_json_and_huge_fields_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_release(tmp_path / "rel")
    deep = tmp_path / "vqa_deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    line = _one_line_error(_main(["build", str(src), "--out", str(tmp_path / "o1"), "--instruct-json", str(deep)], capsys))
    assert "vqa_deep.json: JSON nested too deeply" in line
    rows = [["dataset/bk1_1_1.png", "Fine.", "skin"], ["dataset/bk3_2_1.png", "x" * 140_000, "skin"]]
    write_csv(src / "MM-SkinQA/caption.csv", ["image", "cleaned_caption", "modality"], rows)
    line = _one_line_error(_main(["build", str(src), "--out", str(tmp_path / "o2")], capsys))
    assert "MM-SkinQA/caption.csv row 3" in line and "field larger than field limit" in line
    assert "dataset/bk3_2_1.png" in line and "unbalanced double quote" in line


# --------------------------------------------------------------------------------------------
# 12. Quiet inconsistencies
# --------------------------------------------------------------------------------------------


def test_warnings_count_only_rows_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    captions = [["dataset/fig_1.png", "a", "skin"], ["dataset/fig_2.png", "b", "skin"], ["dataset/fig_3.png", "c", "skin"]]
    images = {"dataset/fig_1.png": _png(), "dataset/fig_2.png": b"broken", "dataset/fig_3.png": b""}
    src = make_release(tmp_path / "rel", captions=captions, vqa=[], images=images)
    assert mm.main(["build", str(src), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "1 warnings (rows written)" in err and "2 warnings on rows NOT written" in err
    warnings = report_of(tmp_path / "out")["warnings"]
    assert sorted(w["row_written"] for w in warnings) == [False, False, True]


def test_duplicate_header_columns_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_release(tmp_path / "rel", vqa_header=["image", "question", "answer", "Answer"],
                       vqa=[["dataset/bk1_1_1.png", "Q?", "first", "second"]])
    assert mm.main(["build", str(src), "--out", str(tmp_path / "out")]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "MM-SkinQA/VQA.csv row 1: duplicate header column(s) 'Answer', 'answer'" in err and len(err.splitlines()) == 1


def test_report_paths_are_release_relative(tmp_path: Path) -> None:
    src = make_release(tmp_path / "rel")
    test_csv = tmp_path / "elsewhere/my_test.csv"
    write_csv(test_csv, ["image", "question", "answer"], [["dataset/bk3_2_1.png", "Where?", "The arm."]])
    conv = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}]
    instruct = tmp_path / "elsewhere/vqa_MM.json"
    instruct.write_text(json.dumps([{"image": "dataset/bk1_1_1.png", "conversations": conv},
                                    {"image": "dataset/gone.png", "conversations": conv}]))
    (src / "MM-SkinQA/dataset/bk15_4.png").unlink()
    (src / "MM-SkinQA/dataset/bk15_4.png").mkdir()
    res = mm.build(src, tmp_path / "out", test_csv=test_csv, instruct_json=[instruct])
    text = (tmp_path / "out/build_report.json").read_text() + (tmp_path / "out/README.md").read_text()
    assert str(tmp_path) not in text and res.report.skipped


# --------------------------------------------------------------------------------------------
# 19. The synthetic sample's card and report say what it is
# --------------------------------------------------------------------------------------------


def test_synthetic_sample_card_and_report_say_so(tmp_path: Path) -> None:
    assert json.loads((SAMPLE / SYNTHETIC_MARKER).read_text())["synthetic"] is True
    res = mm.build(SAMPLE, tmp_path / "sample")
    card = (tmp_path / "sample/README.md").read_text()
    report = report_of(tmp_path / "sample")
    assert "cut from" not in card and "Synthetic data, not MM-Skin" in card and report["synthetic"]
    assert "official" not in report["files"][report["test_file"]]["role"]
    assert not any("official test CSV" in n for n in report["notes"])
    assert not any("official" in w["reason"] for w in report["warnings"]) and res.report.synthetic
    # a real release (no marker) keeps the real wording
    real = mm.build(make_release(tmp_path / "rel", test=[["dataset/bk1_1_1.png", "Q?", "A."]]), tmp_path / "real")
    card = (tmp_path / "real/README.md").read_text()
    assert "images cut from **15 dermatology textbooks**" in card and "Synthetic" not in card
    assert real.report.files["Dataframe/test/vqa/MM-Skin_test.csv"].role == "official VQA test split"
