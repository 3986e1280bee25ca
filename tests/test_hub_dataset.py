"""``mm-skin push`` (mm_skin.hub): what is checked before any upload, and real HTTP pushes.

The end-to-end test builds the sample release, pushes it with the ``mm-skin push`` sub-command in a
child process (the real huggingface_hub client, online, pointed at tests/hub_server.py), and reads
every config back with ``datasets.load_dataset`` in a second, fresh child.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import (
    HubServer,
    HubUser,
    assert_hostile_entries_left_out,
    client_env,
    dataset_digest,
    run_python,
)

from mm_skin.cli import ExitCode
from mm_skin.hub import (
    PushError,
    Skipped,
    push_dataset_folder,
    scrub,
    select_files,
    validate_folder,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_datasetTESTwrite0123456789abcdef"
ORG = "mm-skin-org"


@pytest.fixture(scope="module")
def sample_out(vqa_folder: Path) -> Path:
    """The sample built once per session (conftest); these tests only read it (copies are edited)."""
    return vqa_folder


# --------------------------------------------------------------------------- before any upload
def test_validate_folder_accepts_a_build_and_refuses_broken_folders(sample_out: Path, tmp_path: Path) -> None:
    counts = validate_folder(sample_out)
    assert counts == json.loads((sample_out / "build_report.json").read_text())["written"]
    broken = tmp_path / "broken"
    shutil.copytree(sample_out, broken)
    shard = next((broken / "vqa").glob("test-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(PushError, match="not a readable Parquet file") as err:
        validate_folder(broken)
    assert err.value.exit_code == ExitCode.BAD_INPUT
    shard.unlink()
    with pytest.raises(PushError, match="not in"):
        validate_folder(broken)
    (broken / "README.md").write_text("---\nconfigs: [\n---\n")
    with pytest.raises(PushError, match="does not parse"):
        validate_folder(broken)


def test_an_undecodable_image_after_the_first_row_is_refused(sample_out: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "bad-image"
    shutil.copytree(sample_out, folder)
    shard = next((folder / "clinical").glob("train-*.parquet"))
    table = pq.read_table(shard)
    images = table.column("image").to_pylist()
    assert len(images) > 2
    images[2] = {**images[2], "bytes": images[2]["bytes"][:60]}  # a truncated PNG in row 2
    index = table.schema.get_field_index("image")
    table = table.set_column(index, table.schema.field(index), pa.array(images, table.schema.field(index).type))
    pq.write_table(table, shard)
    with pytest.raises(PushError, match=r"row 2 .*truncated PNG.* rebuild the folder") as err:
        validate_folder(folder)
    assert err.value.exit_code == ExitCode.BAD_INPUT


def test_a_shard_behind_a_symlink_leaving_the_folder_is_refused(sample_out: Path, tmp_path: Path) -> None:
    folder = tmp_path / "linked"
    shutil.copytree(sample_out, folder)
    shard = next((folder / "vqa").glob("train-*.parquet"))
    outside = tmp_path / "elsewhere.parquet"
    shard.rename(outside)
    shard.symlink_to(outside)
    with pytest.raises(PushError, match="would not be uploaded .* copy the file into the folder"):
        validate_folder(folder)


def test_select_files_skips_dot_entries_caches_and_what_leaves_the_folder(tmp_path: Path) -> None:
    root, outside = tmp_path / "folder", tmp_path / "outside"
    (root / "data" / "__pycache__").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".cache" / "huggingface").mkdir(parents=True)
    outside.mkdir()
    for rel in ("README.md", "data/a.parquet", ".env", "data/.DS_Store", ".git/config",
                ".cache/huggingface/x.lock", "data/__pycache__/m.pyc", "data/b.lock"):
        (root / rel).write_text("x")
    (outside / "secret.txt").write_text("secret")
    (root / "data" / "secret.txt").symlink_to(outside / "secret.txt")
    (root / "data" / "outside-folder").symlink_to(outside, target_is_directory=True)
    (root / "alias.md").symlink_to("README.md")  # inside: uploaded
    (root / "env-alias").symlink_to(".env")
    (root / "dangling").symlink_to(tmp_path / "missing")
    os.mkfifo(root / "data" / "pipe")
    selection = select_files(root)
    assert selection.files == ["README.md", "alias.md", "data/a.parquet"]
    assert sorted(selection.skipped, key=lambda s: s.path) == [
        Skipped(".cache/", "dot-folder"), Skipped(".env", "dot-file"), Skipped(".git/", "dot-folder"),
        Skipped("dangling", "symlink leaving the folder"), Skipped("data/.DS_Store", "dot-file"),
        Skipped("data/__pycache__/", "cache"), Skipped("data/b.lock", "cache"),
        Skipped("data/outside-folder/", "symlink leaving the folder"),
        Skipped("data/pipe", "not a regular file"), Skipped("data/secret.txt", "symlink leaving the folder"),
        Skipped("env-alias", "symlink to a dot-file"),
    ]
    with pytest.raises(PushError, match="not a folder") as err:
        select_files(root / "README.md")
    assert err.value.exit_code == ExitCode.BAD_INPUT


def test_scrub_removes_tokens_and_presigned_urls_and_keeps_one_line() -> None:
    message = ("403 Forbidden for url https://s3.example/bucket/obj?X-Amz-Signature=abc&X-Amz-Credential=k\n"
               "Authorization: Bearer my-secret-value; your token hf_AbCdEf0123456789 was echoed")
    text = scrub(message, "my-secret-value")
    assert "\n" not in text and "abc" not in text and "X-Amz" not in text
    assert "my-secret-value" not in text and "AbCdEf0123456789" not in text
    assert "https://s3.example/bucket/obj?<redacted>" in text and "hf_***" in text


def test_push_refuses_offline_mode_before_any_request(sample_out: Path) -> None:
    # conftest sets HF_HUB_OFFLINE=1 for the suite
    with pytest.raises(PushError, match="HF_HUB_OFFLINE=1") as err:
        push_dataset_folder(sample_out, "me/mm-skin", token="hf_dummy_secret")
    assert err.value.exit_code == ExitCode.PUSH


def test_push_fails_fast_without_token_or_network(sample_out: Path, tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from mm_skin.hub import PushError, push_dataset_folder\n"
        "for token in (None, 'hf_dummy_secret'):\n"
        "    t = time.time()\n"
        "    try:\n"
        "        push_dataset_folder(sys.argv[1], 'me/mm-skin', token=token)\n"
        "    except PushError as e:\n"
        "        print('ERROR', round(time.time() - t, 1), e)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    env["HF_HOME"] = str(tmp_path / "home")  # no cached login
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there
    proc = subprocess.run([sys.executable, "-c", code, str(sample_out)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 2, (proc.stdout, proc.stderr[-2000:])
    assert "no Hugging Face token" in lines[0] and "cannot reach the Hub" in lines[1]
    assert "hf_dummy_secret" not in proc.stdout + proc.stderr
    # whoami fails at once, no retry loop (validation comes after the token and endpoint checks)
    assert all(float(line.split()[1]) < 15 for line in lines), lines


# --------------------------------------------------------------------------- real HTTP, end to end
PUSHER = r"""
import contextlib, io, json, os, sys
from mm_skin.cli import add_subcommands, make_parser
from mm_skin import hub
cfg = json.loads(sys.argv[1])

def cli(*argv):
    parser = make_parser("mm-skin", "", "0")
    hub.register_cli(add_subcommands(parser))  # `mm-skin push` as the mm-skin CLI registers it
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        args = parser.parse_args(list(argv))
        rc = args.func(args)
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}

r = {}
r["first"] = cli("push", cfg["folder"], cfg["repo"], "--private")
r["second"] = cli("push", cfg["folder"], cfg["repo"], "--private")
r["hostile"] = cli("push", cfg["hostile"], cfg["repo"] + "-hostile")
r["echo"] = cli("push", cfg["folder"], cfg["repo"] + "-echo")
r["bad_repo_id"] = cli("push", cfg["folder"], "mm-skin")
os.environ["HF_TOKEN"] = "hf_\u00e9" + cfg["token"][4:]
r["non_ascii_token"] = cli("push", cfg["folder"], cfg["repo"])
print(json.dumps(r))
"""

LOADER = r"""
import json, sys
import datasets
from hub_server import dataset_digest
cfg = json.loads(sys.argv[1])
out = {}
for name in cfg["configs"]:
    loaded = datasets.load_dataset(cfg["repo"], name)
    out[name] = {split: dataset_digest(loaded[split]) for split in loaded}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hub():
    with HubServer({TOKEN: HubUser("alice", orgs=(ORG,))}) as server:
        yield server


@pytest.fixture(scope="module")
def pushed(hub: HubServer, sample_out: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("push")
    hostile = root / "hostile"
    shutil.copytree(sample_out, hostile)
    (hostile / ".env").write_text(f"HF_TOKEN={TOKEN}\n")
    (hostile / ".git" / "objects").mkdir(parents=True)  # this crashed the old push with a ValueError
    (hostile / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (hostile / ".cache").mkdir()
    (hostile / ".cache" / "x").write_text("")
    (root / "private.png").write_bytes(b"\x89PNG private scan")
    (hostile / "scan.png").symlink_to(root / "private.png")
    hub.fail("POST", rf"^/api/datasets/{ORG}/mm-skin-echo/commit/", 500,
             message=f"token {TOKEN} is not allowed; retry at https://cdn.example/o?X-Amz-Signature=f00d")
    cfg = {"folder": str(sample_out), "hostile": str(hostile), "repo": f"{ORG}/mm-skin", "token": TOKEN}
    report, output = run_python(PUSHER, json.dumps(cfg), env=client_env(hub, root / "home", TOKEN), cwd=REPO_ROOT)
    return report, output, root


@pytest.mark.slow
def test_sample_push_is_one_commit_and_loads_back_identically(hub: HubServer, sample_out: Path, pushed) -> None:
    import datasets
    import yaml

    report, output, root = pushed
    repo = f"{ORG}/mm-skin"
    assert report["first"]["rc"] == 0 and "in one commit" in report["first"]["out"], report["first"]
    assert report["second"]["rc"] == 0 and "no new commit" in report["second"]["out"], report["second"]
    assert len(hub.history(repo, "dataset")) == 2  # initial commit + ONE upload commit
    assert hub.repos[f"datasets/{repo}"].private
    assert TOKEN not in output
    on_hub = hub.files(repo, "dataset")
    for path in sample_out.rglob("*"):
        if path.is_file():
            assert on_hub[path.relative_to(sample_out).as_posix()] == path.read_bytes()
    assert all(p.endswith((".parquet", ".png")) for p in hub.lfs_paths(repo, "dataset"))

    meta = yaml.safe_load((sample_out / "README.md").read_text().split("---")[1])
    configs = [c["config_name"] for c in meta["configs"]]
    local = {}
    for name in configs:
        loaded = datasets.load_dataset(str(sample_out), name, cache_dir=str(root / "local-cache"))
        local[name] = {split: dataset_digest(loaded[split]) for split in loaded}
    # a fresh process, with its own empty cache, reads every config back from the Hub
    cfg = {"repo": repo, "configs": configs}
    env = {**client_env(hub, root / "home-load", TOKEN), "PYTHONPATH": str(Path(__file__).parent)}
    loaded, _ = run_python(LOADER, json.dumps(cfg), env=env, cwd=root)
    assert loaded == local


@pytest.mark.slow
def test_dot_files_and_escaping_symlinks_are_not_uploaded_and_listed(hub: HubServer, pushed) -> None:
    report, output, _ = pushed
    assert_hostile_entries_left_out(hub, report["hostile"], f"{ORG}/mm-skin-hostile", "dataset", "scan.png",
                                    b"private scan")


@pytest.mark.slow
def test_server_error_echoing_the_token_is_scrubbed(hub: HubServer, pushed) -> None:
    report, output, _ = pushed
    result = report["echo"]
    assert result["rc"] == ExitCode.PUSH, result
    lines = result["err"].strip().splitlines()
    assert len(lines) == 1 and "(500)" in lines[0] and "token *** is not allowed" in lines[0], lines
    assert TOKEN not in output and "f00d" not in output and "X-Amz-Signature" not in output
    assert len(hub.history(f"{ORG}/mm-skin-echo", "dataset")) == 1  # the initial commit only


@pytest.mark.slow
def test_bad_token_and_repo_id_are_one_line_with_an_exit_code(pushed) -> None:
    report, output, _ = pushed
    for name, expected in (("bad_repo_id", "repo id 'mm-skin' must look like NAMESPACE/NAME"),
                           ("non_ascii_token", "the token from HF_TOKEN has non-ASCII")):
        result = report[name]
        assert result["rc"] == ExitCode.BAD_INPUT, result
        lines = result["err"].strip().splitlines()
        assert len(lines) == 1 and "refused, nothing uploaded" in lines[0] and expected in lines[0], lines
    assert "hf_\u00e9" not in output
