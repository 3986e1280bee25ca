"""The loopback Hub (tests/hub_server.py): its protocol, and datasets pushed and read through it.

Raw-HTTP checks pin the status codes and error headers the real clients rely on. The round trips
run the unmodified clients (huggingface_hub upload/download, ``datasets.load_dataset``, and the
MM-Skin builder's ``mm-skin push``) in child processes pointed at the server with ``HF_ENDPOINT``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import HubServer, HubUser, client_env, dataset_digest, run_python  # noqa: E402

TOKEN = "hf_serverTESTwrite0123456789abcdef"
READ_TOKEN = "hf_serverTESTread0123456789abcdef"
ORG = "mm-skin-org"
REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RELEASE = REPO_ROOT / "examples" / "mm-skin-sample"


@pytest.fixture(scope="module")
def hub():
    users = {
        TOKEN: HubUser("alice", orgs=(ORG,)),
        READ_TOKEN: HubUser("bob", orgs=(ORG,), role="read"),
    }
    # Small tree pages (clients must follow Link headers) and multipart LFS above 8 KB (the MM-Skin
    # shards take the multipart path, the stand-in's small files the basic one).
    with HubServer(
        users, page_size=3, multipart_threshold=8192, multipart_chunk_size=16384
    ) as server:
        yield server


def _call(
    hub: HubServer,
    method: str,
    path: str,
    *,
    token: str | None = TOKEN,
    body: bytes | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
):
    """(status, headers, body) of one request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(
        hub.endpoint + path, data=body, method=method, headers=dict(headers or {})
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def _ndjson(*lines: dict) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _create(hub: HubServer, name: str, repo_type: str = "model") -> str:
    status, _, body = _call(
        hub,
        "POST",
        "/api/repos/create",
        body=json.dumps({"name": name, "organization": ORG, "type": repo_type}).encode(),
    )
    assert status == 200, body
    return f"{ORG}/{name}"


def test_auth_and_error_headers(hub):
    repo_id = _create(hub, "proto")
    status, headers, _ = _call(hub, "GET", "/api/whoami-v2", token="hf_not_a_token")
    assert (
        status == 401
        and headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    )
    status, _, body = _call(hub, "GET", "/api/whoami-v2")
    assert status == 200 and json.loads(body)["name"] == "alice"
    status, _, _ = _call(
        hub,
        "POST",
        "/api/repos/create",
        body=json.dumps({"name": "proto", "organization": ORG}).encode(),
    )
    assert status == 409
    status, _, _ = _call(
        hub,
        "POST",
        "/api/repos/create",
        token=READ_TOKEN,
        body=json.dumps({"name": "x", "organization": ORG}).encode(),
    )
    assert status == 403
    status, _, _ = _call(
        hub,
        "POST",
        "/api/repos/create",
        body=json.dumps({"name": "x", "organization": "someone-else"}).encode(),
    )
    assert status == 403
    status, headers, _ = _call(hub, "GET", f"/api/models/{ORG}/missing", token=None)
    assert (status, headers["X-Error-Code"]) == (401, "RepoNotFound")
    status, headers, _ = _call(hub, "GET", f"/api/models/{ORG}/missing")
    assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")
    status, headers, _ = _call(hub, "GET", f"/api/models/{repo_id}/revision/nope")
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    status, headers, _ = _call(hub, "GET", f"/api/models/{repo_id}/tree/main/no/such/folder")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
    status, headers, _ = _call(hub, "HEAD", f"/{repo_id}/resolve/main/nothing.txt")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
    status, headers, _ = _call(hub, "HEAD", f"/{repo_id}/resolve/main/.gitattributes")
    assert status == 200 and len(headers["X-Repo-Commit"]) == 40 and headers["ETag"].startswith('"')
    status, _, body = _call(
        hub,
        "POST",
        "/api/validate-yaml",
        body=json.dumps({"content": "---\nlicense: [x\n---\n", "repoType": "model"}).encode(),
    )
    assert status == 400 and json.loads(body)["errors"]
    index = "---\nmodel-index:\n- name: m\n  results:\n  - task: {type: t}\n    metrics: []\n---\n"
    status, _, body = _call(
        hub,
        "POST",
        "/api/validate-yaml",
        body=json.dumps({"content": index, "repoType": "model"}).encode(),
    )
    assert status == 400 and any("dataset" in e["message"] for e in json.loads(body)["errors"])


def test_commit_is_atomic_and_checks_its_parent(hub):
    repo_id = _create(hub, "atomic")
    head = hub.head(repo_id)
    good = {
        "key": "file",
        "value": {
            "path": "a.txt",
            "content": base64.b64encode(b"hello").decode(),
            "encoding": "base64",
        },
    }
    missing_lfs = {
        "key": "lfsFile",
        "value": {"path": "w.bin", "algo": "sha256", "oid": "0" * 64, "size": 3},
    }
    status, _, body = _call(
        hub,
        "POST",
        f"/api/models/{repo_id}/commit/main",
        body=_ndjson({"key": "header", "value": {"summary": "x"}}, good, missing_lfs),
        content_type="application/x-ndjson",
    )
    assert status == 400 and b"LFS pointer" in body
    assert hub.head(repo_id) == head and "a.txt" not in hub.files(
        repo_id
    )  # nothing of it was applied
    status, _, body = _call(
        hub,
        "POST",
        f"/api/models/{repo_id}/commit/main",
        body=_ndjson({"key": "header", "value": {"summary": "x", "parentCommit": "f" * 40}}, good),
        content_type="application/x-ndjson",
    )
    assert status == 412 and hub.head(repo_id) == head
    status, headers, _ = _call(
        hub,
        "POST",
        f"/api/models/{repo_id}/commit/main",
        body=_ndjson(
            {"key": "header", "value": {"summary": "x"}},
            {"key": "deletedFile", "value": {"path": "nope"}},
        ),
        content_type="application/x-ndjson",
    )
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
    status, _, _ = _call(
        hub,
        "POST",
        f"/api/models/{repo_id}/commit/main",
        token=READ_TOKEN,
        body=_ndjson({"key": "header", "value": {"summary": "x"}}, good),
        content_type="application/x-ndjson",
    )
    assert status == 403
    status, headers, _ = _call(
        hub,
        "POST",
        f"/api/models/{repo_id}/commit/no-branch",
        body=_ndjson({"key": "header", "value": {"summary": "x"}}, good),
        content_type="application/x-ndjson",
    )
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    status, _, body = _call(
        hub,
        "POST",
        f"/api/models/{repo_id}/commit/main",
        body=_ndjson({"key": "header", "value": {"summary": "add a", "parentCommit": head}}, good),
        content_type="application/x-ndjson",
    )
    assert status == 200 and json.loads(body)["commitOid"] == hub.head(repo_id) != head
    assert hub.files(repo_id)["a.txt"] == b"hello"


def test_lfs_upload_checks_content_and_signature(hub):
    repo_id = _create(hub, "lfs")
    data = b"\0binary" * 100
    oid = hashlib.sha256(data).hexdigest()
    batch = {
        "operation": "upload",
        "transfers": ["basic"],
        "objects": [{"oid": oid, "size": len(data)}, {"oid": "xyz", "size": 1}],
        "hash_algo": "sha256",
    }
    status, _, body = _call(
        hub,
        "POST",
        f"/{repo_id}.git/info/lfs/objects/batch",
        body=json.dumps(batch).encode(),
        content_type="application/vnd.git-lfs+json",
    )
    objects = json.loads(body)["objects"]
    assert status == 200 and objects[1]["error"]["code"] == 422
    href = objects[0]["actions"]["upload"]["href"]
    assert href.startswith(hub.storage_endpoint)  # another origin, like the Hub's S3
    for url, payload, expected in (
        (href.replace("X-Signature=", "X-Signature=0"), data, 403),
        (href, data[:-1], 400),
        (href, data, 200),
    ):
        request = urllib.request.Request(url, data=payload, method="PUT")
        try:
            with urllib.request.urlopen(request) as response:
                status = response.status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status == expected
    status, _, body = _call(
        hub,
        "POST",
        f"/{repo_id}.git/info/lfs/objects/batch",
        body=json.dumps(batch).encode(),
        content_type="application/vnd.git-lfs+json",
    )
    assert "actions" not in json.loads(body)["objects"][0]  # stored: nothing to upload again


def _image_bytes(seed: int) -> bytes:
    import io

    from PIL import Image

    image = Image.new("RGB", (8 + seed, 6), (seed * 40 % 256, 90, 200 - seed))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


STANDIN_CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[2])
from hub_server import dataset_digest
from huggingface_hub import HfApi, snapshot_download
import datasets
cfg = json.loads(sys.argv[1])
api = HfApi()
repo = cfg["repo"]
api.create_repo(repo, repo_type="dataset", private=True)
first = api.upload_folder(folder_path=cfg["folder"], repo_id=repo, repo_type="dataset", commit_message="data")
second = api.upload_folder(folder_path=cfg["folder"], repo_id=repo, repo_type="dataset")
local = snapshot_download(repo, repo_type="dataset", cache_dir=cfg["cache"])
files = sorted(os.path.relpath(os.path.join(d, f), local) for d, _, fs in os.walk(local) for f in fs)
tree = sorted(f.path for f in api.list_repo_tree(repo, repo_type="dataset", recursive=True, expand=True))
digests = {}
for name in cfg["configs"]:
    loaded = datasets.load_dataset(repo, name, cache_dir=cfg["cache"] + "-ds")
    digests[name] = {split: dataset_digest(loaded[split]) for split in loaded}
print(json.dumps({"first": first.oid, "second": second.oid, "files": files, "tree": tree, "digests": digests}))
"""


def test_standin_dataset_roundtrip_with_plain_clients(hub, tmp_path):
    """upload_folder / snapshot_download / load_dataset on a small image dataset of two configs."""
    import datasets

    folder = tmp_path / "standin"
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["a", "b"]),
        }
    )
    local = {}
    for name, count in (("captions", 7), ("other", 4)):
        (folder / name).mkdir(parents=True)
        rows = {
            "image": [{"bytes": _image_bytes(i), "path": f"img{i}.png"} for i in range(count)],
            "caption": [f"c{i}" for i in range(count)],
            "label": [i % 2 for i in range(count)],
        }
        ds = datasets.Dataset.from_dict(rows, features=features)
        ds.to_parquet(str(folder / name / "train-00000-of-00001.parquet"))
        local[name] = {
            "train": dataset_digest(
                datasets.load_dataset(
                    "parquet",
                    data_files=str(folder / name / "*.parquet"),
                    split="train",
                    cache_dir=str(tmp_path / "local-cache"),
                )
            )
        }
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: captions\n  default: true\n  data_files:\n  - split: train\n    path: captions/*.parquet\n"
        "- config_name: other\n  data_files:\n  - split: train\n    path: other/*.parquet\n---\n# stand-in\n"
    )
    cfg = {
        "repo": f"{ORG}/standin",
        "folder": str(folder),
        "cache": str(tmp_path / "cache"),
        "configs": ["captions", "other"],
    }
    report, _ = run_python(
        STANDIN_CHILD,
        json.dumps(cfg),
        str(Path(__file__).parent),
        env=client_env(hub, tmp_path / "home", TOKEN),
        cwd=tmp_path,
    )
    assert (
        report["second"] == report["first"] == hub.head(cfg["repo"], "dataset")
    )  # no empty commit
    assert [c.title for c in hub.history(cfg["repo"], "dataset")] == ["data", "initial commit"]
    expected = sorted(
        [
            "README.md",
            ".gitattributes",
            "captions/train-00000-of-00001.parquet",
            "other/train-00000-of-00001.parquet",
        ]
    )
    assert report["files"] == expected and report["tree"] == sorted(
        expected + ["captions", "other"]
    )
    assert hub.lfs_paths(cfg["repo"], "dataset") == {p for p in expected if p.endswith(".parquet")}
    for name in cfg["configs"]:
        assert report["digests"][name]["train"]["rows"] == local[name]["train"]["rows"]
        assert report["digests"][name]["train"]["features"]["image"] == {"_type": "Image"}
    # the repo is private: anonymous readers get 401 RepoNotFound
    status, headers, _ = _call(hub, "GET", f"/api/datasets/{cfg['repo']}", token=None)
    assert (status, headers["X-Error-Code"]) == (401, "RepoNotFound")


MM_SKIN_PUSH_CHILD = r"""
import json, sys
import mm_skin_dataset
cfg = json.loads(sys.argv[1])
first = mm_skin_dataset.push_folder(cfg["folder"], cfg["repo"], private=True)
second = mm_skin_dataset.push_folder(cfg["folder"], cfg["repo"], private=True)
print(json.dumps({"first": first, "second": second}))
"""

MM_SKIN_LOAD_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
from hub_server import dataset_digest
import datasets
cfg = json.loads(sys.argv[1])
out = {}
for name in cfg["configs"]:
    loaded = datasets.load_dataset(cfg["repo"], name)
    out[name] = {split: dataset_digest(loaded[split]) for split in loaded}
print(json.dumps(out))
"""


def test_mm_skin_sample_push_then_load_every_config(hub, tmp_path):
    """The built sample release, pushed with mm-skin's push_folder, loads identically from the Hub."""
    import datasets
    import yaml

    if not SAMPLE_RELEASE.is_dir():
        pytest.skip("examples/mm-skin-sample is not there yet (DATASET engineer)")
    mm_skin_dataset = pytest.importorskip("mm_skin_dataset")
    if not hasattr(mm_skin_dataset, "push_folder") or not hasattr(mm_skin_dataset, "build"):
        pytest.skip("mm_skin_dataset.build / push_folder not there yet")
    folder = tmp_path / "mm-skin"
    mm_skin_dataset.build(SAMPLE_RELEASE, folder)
    meta = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
    configs = [c["config_name"] for c in meta["configs"]]
    local = {}
    for name in configs:
        loaded = datasets.load_dataset(str(folder), name, cache_dir=str(tmp_path / "local-cache"))
        local[name] = {split: dataset_digest(loaded[split]) for split in loaded}

    repo = f"{ORG}/mm-skin"
    cfg = {"folder": str(folder), "repo": repo, "configs": configs}
    pushed, output = run_python(
        MM_SKIN_PUSH_CHILD,
        json.dumps(cfg),
        env=client_env(hub, tmp_path / "home-push", TOKEN),
        cwd=REPO_ROOT,
    )
    assert pushed["first"] and pushed["second"] is None, pushed
    assert len(hub.history(repo, "dataset")) == 2  # initial commit + ONE upload commit
    assert TOKEN not in output
    on_hub = hub.files(repo, "dataset")
    for path in folder.rglob("*"):
        if path.is_file():
            assert on_hub[path.relative_to(folder).as_posix()] == path.read_bytes()
    assert all(p.endswith(".parquet") or p.endswith(".png") for p in hub.lfs_paths(repo, "dataset"))
    multipart = [r for r in hub.requests_for(f"datasets/{ORG}/mm-skin") if "partNumber=" in r[1]]
    assert multipart and all(status == 200 for _, _, status in multipart)

    # a fresh process, with its own empty cache, reads every config back from the Hub
    loaded, _ = run_python(
        MM_SKIN_LOAD_CHILD,
        json.dumps(cfg),
        str(Path(__file__).parent),
        env=client_env(hub, tmp_path / "home-load", TOKEN),
        cwd=tmp_path,
    )
    assert sorted(loaded) == sorted(configs)
    for name in configs:
        assert sorted(loaded[name]) == sorted(local[name]), name
        for split in local[name]:
            assert loaded[name][split]["features"] == local[name][split]["features"], (name, split)
            assert loaded[name][split]["rows"] == local[name][split]["rows"], (name, split)
