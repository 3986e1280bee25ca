"""A small Hugging Face Hub on loopback, for end-to-end tests of push and download.

It speaks the part of the Hub HTTP API that ``huggingface_hub`` (with ``HF_HUB_DISABLE_XET=1``),
``datasets`` and ``transformers`` use to create a repo, commit to it and read it back, with the
real status codes and ``X-Error-Code`` / ``X-Error-Message`` headers, so that the *real* clients
run unmodified against it (point them at it with ``HF_ENDPOINT``):

- ``GET  /api/whoami-v2``
- ``POST /api/repos/create``
- ``GET  /api/{models,datasets}/{repo_id}[/revision/{rev}]``   (``sha``, ``siblings``, ``cardData``)
- ``POST /api/validate-yaml``
- ``POST /api/{type}s/{repo_id}/preupload/{rev}``             (``uploadMode``, ``shouldIgnore``, ``oid``)
- ``POST /{prefix}{repo_id}.git/info/lfs/objects/batch``      (git-lfs batch API, basic + multipart)
- ``POST /{prefix}{repo_id}.git/info/lfs/objects/verify``
- ``POST /api/{type}s/{repo_id}/commit/{rev}``                (NDJSON; atomic; ``parentCommit``)
- ``POST /api/{type}s/{repo_id}/branch/{branch}``
- ``GET  /api/{type}s/{repo_id}/tree/{rev}[/{path}]``         (``recursive``, ``expand``, cursor pages)
- ``POST /api/{type}s/{repo_id}/paths-info/{rev}``
- ``HEAD|GET /{prefix}{repo_id}/resolve/{rev}/{path}``        (ETag, X-Repo-Commit, Range; LFS files
  answer 302 to a separate "storage" origin with X-Linked-Etag / X-Linked-Size, as the Hub's CDN)

Large files live on a second loopback server (another origin, like the Hub's S3/CDN): uploads are
PUT to pre-signed URLs (HMAC, expiring) handed out by the LFS batch endpoint, and downloads are
redirected there, so the client's "do not forward the Authorization header off the Hub" logic is
exercised for real.

Repositories are kept in memory as git-like objects: blobs (git SHA-1 of the content, or of the
LFS pointer for LFS files), trees and commits with parents; a commit either applies all of its
operations or none. Tests can inject failures (``HubServer.fail``) and inspect every request
(``HubServer.requests``) and every commit (``HubServer.commits``).

Use it as a context manager::

    with HubServer(tokens={"hf_xxx": HubUser("alice", orgs=("mm-skin",))}) as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "hf_xxx"}
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import yaml

# The Hub's default .gitattributes of a new repo (abridged to the patterns that matter here).
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z",
        "*.arrow",
        "*.bin",
        "*.bz2",
        "*.ckpt",
        "*.ftz",
        "*.gz",
        "*.h5",
        "*.joblib",
        "*.lfs.*",
        "*.mlmodel",
        "*.model",
        "*.msgpack",
        "*.npy",
        "*.npz",
        "*.onnx",
        "*.ot",
        "*.parquet",
        "*.pb",
        "*.pickle",
        "*.pkl",
        "*.pt",
        "*.pth",
        "*.rar",
        "*.safetensors",
        "saved_model/**/*",
        "*.tar.*",
        "*.tar",
        "*.tflite",
        "*.tgz",
        "*.wasm",
        "*.xz",
        "*.zip",
        "*.zst",
        "*tfevents*",
    )
)
DATASET_GITATTRIBUTES_EXTRA = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in ("*.mp3", "*.ogg", "*.wav", "*.jpg", "*.jpeg", "*.png", "*.webp", "*.mds")
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub stores any file >= 10 MB through LFS
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a file's ``oid`` / ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file committed in place of a large file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class HubUser:
    """A token's owner: user name, organisations it may write to, and the token's role."""

    name: str
    orgs: tuple[str, ...] = ()
    role: str = "write"  # "read" tokens cannot create repos or commit


@dataclasses.dataclass(frozen=True)
class RepoFileEntry:
    """One file of a commit's tree: inline content (regular) or an LFS object reference."""

    size: int
    content: bytes | None = None  # regular files
    lfs_sha256: str | None = None  # LFS files

    @property
    def blob_oid(self) -> str:
        if self.lfs_sha256 is not None:
            return git_blob_oid(lfs_pointer(self.lfs_sha256, self.size))
        assert self.content is not None
        return git_blob_oid(self.content)


@dataclasses.dataclass
class Commit:
    """A commit: its id, parents, title/description, date and the full file tree."""

    oid: str
    parents: tuple[str, ...]
    title: str
    description: str
    date: str
    files: dict[str, RepoFileEntry]


@dataclasses.dataclass
class Repo:
    """A repository: branches pointing at commits, and its LFS object storage."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = dataclasses.field(default_factory=dict)
    commits: dict[str, Commit] = dataclasses.field(default_factory=dict)
    lfs_objects: dict[str, bytes] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.repo_type}s/{self.repo_id}"

    def resolve(self, revision: str) -> Commit | None:
        """Commit for a branch name (optionally ``refs/heads/``-prefixed) or a full commit id."""
        revision = unquote(revision)
        if revision.startswith("refs/heads/"):
            revision = revision[len("refs/heads/") :]
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if _HEX40.match(revision) and revision in self.commits:
            return self.commits[revision]
        return None


@dataclasses.dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    message: str
    skip: int
    times: int


class HubError(Exception):
    """An HTTP error answer with the Hub's error headers."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def _tree_oid(files: dict[str, RepoFileEntry], prefix: str) -> str:
    """Git tree id of the folder ``prefix`` (``""`` = root), computed as git does."""
    entries: dict[str, tuple[str, str]] = {}
    for path, entry in files.items():
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        head, sep, _ = rest.partition("/")
        if sep:
            entries[head] = ("40000", _tree_oid(files, prefix + head + "/"))
        else:
            entries[head] = ("100644", entry.blob_oid)
    body = b"".join(
        f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid)
        for name, (mode, oid) in sorted(
            entries.items(), key=lambda kv: kv[0] + ("/" if kv[1][0] == "40000" else "")
        )
    )
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


def _folders(files: dict[str, RepoFileEntry]) -> set[str]:
    out: set[str] = set()
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


def _gitattributes_lfs_patterns(files: dict[str, RepoFileEntry]) -> list[str]:
    entry = files.get(".gitattributes")
    if entry is None or entry.content is None:
        return []
    patterns = []
    for line in entry.content.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def _matches(path: str, pattern: str) -> bool:
    """gitattributes/gitignore-style match: patterns without '/' match the basename."""
    pattern = pattern.lstrip("/")
    if "/" not in pattern.rstrip("/"):
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern) or any(
            fnmatch.fnmatchcase(part, pattern.rstrip("/")) for part in path.split("/")[:-1]
        )
    return fnmatch.fnmatchcase(path, pattern.replace("**/", "*").replace("/**", "/*"))


def _front_matter(text: str) -> tuple[str | None, str]:
    """Split a README into (YAML block or None, body), as the Hub does."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.DOTALL)
    if not match:
        return None, text
    return match.group(1), text[match.end() :]


def _validate_card_metadata(meta: Any, repo_type: str) -> list[str]:
    """Structural checks the Hub applies to README metadata; returns error messages."""
    errors: list[str] = []
    if not isinstance(meta, dict):
        return ["YAML metadata must be a mapping"]
    for key in ("tags", "datasets", "language", "task_categories", "base_model"):
        value = meta.get(key)
        if value is not None and not (
            isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors.append(f'"{key}" must be a string or an array of strings')
    lic = meta.get("license")
    if lic is not None and not (isinstance(lic, str) or isinstance(lic, list)):
        errors.append('"license" must be a string or an array of strings')
    if repo_type == "model" and "model-index" in meta:
        index = meta["model-index"]
        if not isinstance(index, list):
            errors.append('"model-index" must be an array')
        else:
            for i, model in enumerate(index):
                if not isinstance(model, dict) or not isinstance(model.get("name"), str):
                    errors.append(f'"model-index[{i}].name" is required')
                    continue
                for j, result in enumerate(model.get("results") or []):
                    where = f"model-index[{i}].results[{j}]"
                    if not isinstance(result, dict):
                        errors.append(f'"{where}" must be an object')
                        continue
                    if not isinstance((result.get("task") or {}).get("type"), str):
                        errors.append(f'"{where}.task.type" is required')
                    dataset = result.get("dataset")
                    if (
                        not isinstance(dataset, dict)
                        or not isinstance(dataset.get("type"), str)
                        or not isinstance(dataset.get("name"), str)
                    ):
                        errors.append(f'"{where}.dataset" needs "type" and "name"')
                    metrics = result.get("metrics")
                    if not isinstance(metrics, list) or not metrics:
                        errors.append(f'"{where}.metrics" must be a non-empty array')
                        continue
                    for k, metric in enumerate(metrics):
                        if (
                            not isinstance(metric, dict)
                            or not isinstance(metric.get("type"), str)
                            or "value" not in metric
                        ):
                            errors.append(f'"{where}.metrics[{k}]" needs "type" and "value"')
    if repo_type == "dataset" and "configs" in meta:
        configs = meta["configs"]
        if not isinstance(configs, list):
            errors.append('"configs" must be an array')
        else:
            names = [c.get("config_name") for c in configs if isinstance(c, dict)]
            if len(names) != len(configs) or not all(isinstance(n, str) for n in names):
                errors.append('every entry of "configs" needs a "config_name"')
            if len(set(names)) != len(names):
                errors.append('"configs" has duplicate config names')
            if sum(bool(c.get("default")) for c in configs if isinstance(c, dict)) > 1:
                errors.append('at most one config of "configs" may be "default: true"')
    return errors


class HubServer:
    """The in-memory Hub plus its two loopback HTTP servers (API and LFS storage)."""

    def __init__(
        self,
        tokens: dict[str, HubUser] | None = None,
        *,
        multipart_threshold: int | None = None,
        multipart_chunk_size: int = 5 * 1024 * 1024,
        page_size: int = 1000,
    ) -> None:
        self.tokens: dict[str, HubUser] = dict(tokens or {})
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status), in order
        self.commits: list[
            tuple[str, str, str]
        ] = []  # (repo key, branch, commit oid) of accepted commits
        self.multipart_threshold = multipart_threshold  # LFS objects >= this size use multipart
        self.multipart_chunk_size = multipart_chunk_size
        self.page_size = page_size
        self._failures: list[_Failure] = []
        self._multipart_parts: dict[tuple[str, str], dict[int, bytes]] = {}
        self._secret = secrets.token_bytes(32)
        self._lock = threading.RLock()
        self._api = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self, storage=False))
        self._storage = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self, storage=True))
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        """Value for ``HF_ENDPOINT``."""
        return f"http://127.0.0.1:{self._api.server_address[1]}"

    @property
    def storage_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._storage.server_address[1]}"

    def start(self) -> HubServer:
        for server in (self._api, self._storage):
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._api, self._storage):
            server.shutdown()
            server.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers
    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        message: str = "Injected failure",
        skip: int = 0,
        times: int = 1,
    ) -> None:
        """Answer ``status`` to the next ``times`` matching requests, after letting ``skip`` pass."""
        with self._lock:
            self._failures.append(
                _Failure(method.upper(), re.compile(path_regex), status, message, skip, times)
            )

    def head(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> str | None:
        """Current commit id of a branch (None if the repo or branch does not exist)."""
        with self._lock:
            repo = self.repos.get(f"{repo_type}s/{repo_id}")
            return None if repo is None else repo.branches.get(branch)

    def files(
        self, repo_id: str, repo_type: str = "model", revision: str = "main"
    ) -> dict[str, bytes]:
        """Path -> content of every file at a revision (LFS files resolved to their data)."""
        with self._lock:
            repo = self.repos[f"{repo_type}s/{repo_id}"]
            commit = repo.resolve(revision)
            assert commit is not None, revision
            return {
                path: (
                    entry.content
                    if entry.content is not None
                    else repo.lfs_objects[entry.lfs_sha256]
                )
                for path, entry in commit.files.items()
            }

    def lfs_paths(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> set[str]:
        """Paths stored through LFS at a revision."""
        with self._lock:
            commit = self.repos[f"{repo_type}s/{repo_id}"].resolve(revision)
            assert commit is not None
            return {p for p, e in commit.files.items() if e.lfs_sha256 is not None}

    def history(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> list[Commit]:
        """Commits reachable from a branch, newest first (first-parent chain)."""
        with self._lock:
            repo = self.repos[f"{repo_type}s/{repo_id}"]
            out, oid = [], repo.branches.get(branch)
            while oid:
                commit = repo.commits[oid]
                out.append(commit)
                oid = commit.parents[0] if commit.parents else None
            return out

    def requests_for(self, repo_id: str) -> list[tuple[str, str, int]]:
        """Logged requests whose path mentions ``repo_id``."""
        return [r for r in list(self.requests) if repo_id in unquote(r[1])]

    # ------------------------------------------------------------------ signing (pre-signed storage URLs)
    def _sign(self, method: str, path: str, expires: int) -> str:
        return hmac.new(
            self._secret, f"{method}\n{path}\n{expires}".encode(), hashlib.sha256
        ).hexdigest()

    def _signed_url(
        self, method: str, path: str, extra: dict[str, str] | None = None, ttl: int = 900
    ) -> str:
        expires = int(time.time()) + ttl
        query = {
            **(extra or {}),
            "X-Expires": str(expires),
            "X-Signature": self._sign(method, path, expires),
        }
        return f"{self.storage_endpoint}{path}?{urlencode(query)}"

    def _check_signature(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        try:
            expires = int(query["X-Expires"][0])
            signature = query["X-Signature"][0]
        except (KeyError, ValueError, IndexError):
            raise HubError(403, "AccessDenied: missing signature") from None
        if expires < time.time():
            raise HubError(403, "AccessDenied: request has expired")
        if not hmac.compare_digest(signature, self._sign(method, path, expires)):
            raise HubError(403, "SignatureDoesNotMatch")

    # ------------------------------------------------------------------ auth
    def user_for(self, authorization: str | None) -> HubUser | None:
        """Owner of the Bearer token; raises 401 for a token the Hub does not know."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _readable(
        self, repo: Repo | None, user: HubUser | None, repo_type: str, repo_id: str
    ) -> Repo:
        if repo is None or (repo.private and not self._may_write_namespace(user, repo.repo_id)):
            # The Hub answers 401 to anonymous callers and 404 to authenticated ones, both RepoNotFound.
            raise HubError(404 if user else 401, "Repository not found", "RepoNotFound")
        return repo

    @staticmethod
    def _may_write_namespace(user: HubUser | None, repo_id: str) -> bool:
        namespace = repo_id.split("/")[0]
        return user is not None and (namespace == user.name or namespace in user.orgs)

    def _writable(self, repo_type: str, repo_id: str, user: HubUser | None) -> Repo:
        repo = self._readable(self.repos.get(f"{repo_type}s/{repo_id}"), user, repo_type, repo_id)
        if not self._may_write_namespace(user, repo_id) or user is None or user.role != "write":
            raise HubError(403, f"You don't have the rights to write to {repo_type}s/{repo_id}")
        return repo

    # ------------------------------------------------------------------ repository operations
    def create_repo(
        self, repo_type: str, repo_id: str, private: bool, user: HubUser | None
    ) -> Repo:
        if user is None:
            raise HubError(401, "You must be authenticated to create a repository")
        namespace = repo_id.split("/")[0]
        if not self._may_write_namespace(user, repo_id) or user.role != "write":
            raise HubError(
                403,
                f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"',
            )
        key = f"{repo_type}s/{repo_id}"
        if key in self.repos:
            raise HubError(409, f"You already created this {repo_type} repo")
        repo = Repo(repo_type, repo_id, private, _now_iso())
        attributes = DEFAULT_GITATTRIBUTES + (
            DATASET_GITATTRIBUTES_EXTRA if repo_type == "dataset" else ""
        )
        files = {".gitattributes": RepoFileEntry(size=len(attributes), content=attributes.encode())}
        self._store_commit(repo, "main", None, "initial commit", "", files)
        self.repos[key] = repo
        return repo

    def _store_commit(
        self,
        repo: Repo,
        branch: str,
        parent: str | None,
        title: str,
        description: str,
        files: dict[str, RepoFileEntry],
    ) -> Commit:
        date = _now_iso()
        body = (
            f"tree {_tree_oid(files, '')}\n"
            + (f"parent {parent}\n" if parent else "")
            + f"author hub <hub@localhost> {time.time_ns()}\n\n{title}\n\n{description}"
        ).encode()
        oid = hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()
        commit = Commit(oid, (parent,) if parent else (), title, description, date, files)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        self.commits.append((repo.key, branch, oid))
        return commit

    def last_commit_for(self, repo: Repo, commit: Commit, path: str, is_dir: bool) -> Commit:
        """Newest commit (first-parent chain) that changed ``path`` (a file or a folder)."""

        def snapshot(c: Commit) -> Any:
            if is_dir:
                return {p: e.blob_oid for p, e in c.files.items() if p.startswith(path + "/")}
            entry = c.files.get(path)
            return entry.blob_oid if entry else None

        current, value = commit, snapshot(commit)
        while current.parents:
            parent = repo.commits[current.parents[0]]
            if snapshot(parent) != value:
                return current
            current = parent
        return current

    def path_info(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        entry = commit.files.get(path)
        if entry is not None:
            info: dict[str, Any] = {
                "type": "file",
                "oid": entry.blob_oid,
                "size": entry.size,
                "path": path,
            }
            if entry.lfs_sha256 is not None:
                info["lfs"] = {
                    "oid": entry.lfs_sha256,
                    "size": entry.size,
                    "pointerSize": len(lfs_pointer(entry.lfs_sha256, entry.size)),
                }
        else:
            info = {
                "type": "directory",
                "oid": _tree_oid(commit.files, path + "/"),
                "size": 0,
                "path": path,
            }
        if expand:
            last = self.last_commit_for(repo, commit, path, is_dir=entry is None)
            info["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
        return info

    def apply_commit(self, repo: Repo, branch: str, lines: list[dict[str, Any]]) -> Commit:
        """Apply an NDJSON commit atomically: all operations or none (under the server lock)."""
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of the commit payload must be its header")
        header = lines[0].get("value") or {}
        title = header.get("summary")
        if not isinstance(title, str) or not title.strip():
            raise HubError(400, "A commit summary (title) is required")
        head = repo.branches[branch]
        parent = header.get("parentCommit")
        if parent is not None and parent != head:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[head].files)
        for number, line in enumerate(lines[1:], start=2):
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path")
            if (
                not isinstance(path, str)
                or not path
                or path.startswith("/")
                or ".." in path.split("/")
                or path.split("/")[0] == ".git"
            ):
                raise HubError(400, f"line {number}: invalid path {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(
                        400, f"line {number}: unsupported encoding {value.get('encoding')!r}"
                    )
                try:
                    content = base64.b64decode(value.get("content", ""), validate=True)
                except binascii.Error:
                    raise HubError(
                        400, f"line {number}: content of {path} is not valid base64"
                    ) from None
                if path in _folders(files):
                    raise HubError(400, f"line {number}: {path} is a folder")
                files[path] = RepoFileEntry(size=len(content), content=content)
            elif key == "lfsFile":
                oid = value.get("oid")
                if (
                    value.get("algo", "sha256") != "sha256"
                    or not isinstance(oid, str)
                    or not _HEX64.match(oid)
                ):
                    raise HubError(400, f"line {number}: invalid LFS oid for {path}")
                data = repo.lfs_objects.get(oid)
                if data is None:
                    raise HubError(
                        400,
                        "Your push was rejected because an LFS pointer pointed to a file "
                        f"that does not exist. For instance: {path} ({oid})",
                    )
                if value.get("size") is not None and value["size"] != len(data):
                    raise HubError(400, f"line {number}: LFS size mismatch for {path}")
                files[path] = RepoFileEntry(size=len(data), lfs_sha256=oid)
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(
                        404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                    )
                del files[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                doomed = [p for p in files if p.startswith(prefix)]
                if not doomed:
                    raise HubError(
                        404, f"A folder with this name doesn't exist: {path}", "EntryNotFound"
                    )
                for p in doomed:
                    del files[p]
            else:
                raise HubError(400, f"line {number}: unknown operation key {key!r}")
        return self._store_commit(repo, branch, head, title, header.get("description") or "", files)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Request body, handling both Content-Length and chunked transfer encoding."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size_line = handler.rfile.readline().strip().split(b";")[0]
            size = int(size_line, 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _make_handler(hub: HubServer, *, storage: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
        server_version = "mm-skin-test-hub/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # requests are recorded in hub.requests instead of stderr

        # -------------------------------------------------------------- plumbing
        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            self._status = 500
            body = b""
            try:
                body = _read_body(self)
                with hub._lock:
                    failure = next(
                        (
                            f
                            for f in hub._failures
                            if f.times > 0
                            and f.method == self.command
                            and f.pattern.search(url.path)
                        ),
                        None,
                    )
                    if failure is not None:
                        if failure.skip > 0:
                            failure.skip -= 1
                        else:
                            failure.times -= 1
                            raise HubError(failure.status, failure.message)
                if storage:
                    self._storage_route(url.path, parse_qs(url.query), body)
                else:
                    self._api_route(url.path, parse_qs(url.query, keep_blank_values=True), body)
            except HubError as err:
                self._error(err)
            except Exception as exc:  # a bug in the test server must show up as a 500, not hang
                self._error(HubError(500, f"Internal error: {type(exc).__name__}: {exc}"))
            finally:
                with hub._lock:
                    hub.requests.append((self.command, self.path, self._status))

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

        def _send(
            self,
            status: int,
            body: bytes = b"",
            headers: dict[str, str] | None = None,
            content_type: str = "application/json; charset=utf-8",
        ) -> None:
            self._status = status
            self.send_response(status)
            headers = dict(headers or {})
            headers.setdefault("Content-Type", content_type)
            headers.setdefault("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _json(
            self,
            status: int,
            payload: Any,
            headers: dict[str, str] | None = None,
            content_type: str = "application/json; charset=utf-8",
        ) -> None:
            self._send(status, json.dumps(payload).encode(), headers, content_type)

        def _error(self, err: HubError) -> None:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._json(err.status, {"error": err.message}, headers)

        def _user(self) -> HubUser | None:
            return hub.user_for(self.headers.get("Authorization"))

        # -------------------------------------------------------------- API routes
        def _api_route(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
            segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
            method = self.command
            if segments == ["api", "whoami-v2"] and method == "GET":
                return self._whoami()
            if segments == ["api", "repos", "create"] and method == "POST":
                return self._create(body)
            if segments == ["api", "agent-harnesses"] and method == "GET":
                return self._json(200, {"standardEnvVars": [], "harnesses": {}})
            if segments == ["api", "validate-yaml"] and method == "POST":
                return self._validate_yaml(body)
            if len(segments) >= 4 and segments[0] == "api" and segments[1] in REPO_TYPES:
                repo_type, repo_id, rest = (
                    REPO_TYPES[segments[1]],
                    "/".join(segments[2:4]),
                    segments[4:],
                )
                if not rest and method == "GET":
                    return self._repo_info(repo_type, repo_id, None)
                if len(rest) == 2 and rest[0] == "revision" and method == "GET":
                    return self._repo_info(repo_type, repo_id, rest[1])
                if len(rest) == 2 and rest[0] == "preupload" and method == "POST":
                    return self._preupload(repo_type, repo_id, rest[1], body)
                if len(rest) == 2 and rest[0] == "commit" and method == "POST":
                    return self._commit(repo_type, repo_id, rest[1], body)
                if len(rest) == 2 and rest[0] == "branch" and method == "POST":
                    return self._create_branch(repo_type, repo_id, rest[1], body)
                if len(rest) >= 2 and rest[0] == "tree" and method == "GET":
                    return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]), query)
                if len(rest) == 2 and rest[0] == "paths-info" and method == "POST":
                    return self._paths_info(repo_type, repo_id, rest[1], body)
            # git-lfs endpoints: /{prefix}{ns}/{name}.git/info/lfs/objects/{batch,verify}
            lfs = re.match(
                r"^/(datasets/|spaces/)?([^/]+)/([^/]+)\.git/info/lfs/objects/(batch|verify)$", path
            )
            if lfs and method == "POST":
                repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(
                    lfs.group(1) or "", "model"
                )
                repo_id = f"{unquote(lfs.group(2))}/{unquote(lfs.group(3))}"
                if lfs.group(4) == "batch":
                    return self._lfs_batch(repo_type, repo_id, body)
                return self._lfs_verify(repo_type, repo_id, body)
            if segments[:2] == ["api", "complete_multipart"] and method == "POST":
                return self._complete_multipart(query, body)
            # /{prefix}{ns}/{name}/resolve/{rev}/{path}
            offset = 1 if segments and segments[0] in ("datasets", "spaces") else 0
            if (
                len(segments) >= offset + 5
                and segments[offset + 2] == "resolve"
                and method in ("GET", "HEAD")
            ):
                repo_type = (
                    {"datasets": "dataset", "spaces": "space"}.get(segments[0], "model")
                    if offset
                    else "model"
                )
                repo_id = "/".join(segments[offset : offset + 2])
                return self._resolve(
                    repo_type, repo_id, segments[offset + 3], "/".join(segments[offset + 4 :])
                )
            raise HubError(
                404, f"Sorry, we can't find the page you are looking for: {method} {path}"
            )

        def _whoami(self) -> None:
            user = self._user()
            if user is None:
                raise HubError(401, "Invalid username or password.")
            self._json(
                200,
                {
                    "type": "user",
                    "id": hashlib.md5(user.name.encode()).hexdigest()[:24],
                    "name": user.name,
                    "fullname": user.name,
                    "isPro": False,
                    "emailVerified": True,
                    "orgs": [
                        {"type": "org", "name": org, "roleInOrg": "write"} for org in user.orgs
                    ],
                    "auth": {
                        "type": "access_token",
                        "accessToken": {"displayName": "tests", "role": user.role},
                    },
                },
            )

        def _create(self, body: bytes) -> None:
            user = self._user()
            payload = json.loads(body or b"{}")
            name, org = payload.get("name"), payload.get("organization")
            repo_type = payload.get("type") or "model"
            if (
                repo_type not in URL_PREFIX
                or not isinstance(name, str)
                or not re.match(r"^[\w.-]+$", name)
            ):
                raise HubError(400, f"Invalid repo name or type: {name!r} ({repo_type!r})")
            namespace = org or (user.name if user else None)
            if namespace is None:
                raise HubError(401, "You must be authenticated to create a repository")
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo_id = f"{namespace}/{name}"
            url = f"{hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
            with hub._lock:
                try:
                    hub.create_repo(repo_type, repo_id, private, user)
                except HubError as err:
                    if err.status == 409:
                        return self._json(
                            409,
                            {"error": err.message, "url": url},
                            {"X-Error-Message": err.message},
                        )
                    raise
            self._json(
                200,
                {"url": url, "name": repo_id, "id": hashlib.md5(repo_id.encode()).hexdigest()[:24]},
            )

        def _validate_yaml(self, body: bytes) -> None:
            self._user()  # a bad token is still a 401 here
            payload = json.loads(body or b"{}")
            content, repo_type = payload.get("content", ""), payload.get("repoType", "model")
            block, _ = _front_matter(content)
            if block is None or not block.strip():
                return self._json(
                    200,
                    {
                        "errors": [],
                        "warnings": [{"message": "empty or missing yaml metadata in repo card"}],
                    },
                )
            try:
                meta = yaml.safe_load(block)
            except yaml.YAMLError as exc:
                return self._json(
                    400,
                    {
                        "errors": [{"message": f"Invalid YAML in README metadata: {exc}"}],
                        "warnings": [],
                    },
                    {"X-Error-Message": "Invalid metadata in README.md"},
                )
            errors = _validate_card_metadata(meta, repo_type)
            if errors:
                return self._json(
                    400,
                    {"errors": [{"message": e} for e in errors], "warnings": []},
                    {"X-Error-Message": "Invalid metadata in README.md"},
                )
            self._json(200, {"errors": [], "warnings": []})

        def _get_commit(self, repo_type: str, repo_id: str, revision: str) -> tuple[Repo, Commit]:
            repo = hub._readable(
                hub.repos.get(f"{repo_type}s/{repo_id}"), self._user(), repo_type, repo_id
            )
            commit = repo.resolve(revision)
            if commit is None:
                raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return repo, commit

        def _repo_info(self, repo_type: str, repo_id: str, revision: str | None) -> None:
            with hub._lock:
                repo, commit = self._get_commit(repo_type, repo_id, revision or "main")
                card_data: dict[str, Any] | None = None
                readme = commit.files.get("README.md")
                if readme is not None and readme.content is not None:
                    block, _ = _front_matter(readme.content.decode("utf-8", "replace"))
                    try:
                        loaded = yaml.safe_load(block) if block else None
                        card_data = loaded if isinstance(loaded, dict) else None
                    except yaml.YAMLError:
                        card_data = None
                blobs = query_flag(self.path, "blobs")
                siblings = []
                for path in sorted(commit.files):
                    entry = commit.files[path]
                    sibling: dict[str, Any] = {"rfilename": path}
                    if blobs:
                        sibling.update(size=entry.size, blobId=entry.blob_oid)
                        if entry.lfs_sha256 is not None:
                            sibling["lfs"] = {
                                "size": entry.size,
                                "sha256": entry.lfs_sha256,
                                "pointerSize": len(lfs_pointer(entry.lfs_sha256, entry.size)),
                            }
                    siblings.append(sibling)
                info: dict[str, Any] = {
                    "_id": hashlib.md5(repo.key.encode()).hexdigest()[:24],
                    "id": repo_id,
                    "author": repo_id.split("/")[0],
                    "sha": commit.oid,
                    "lastModified": commit.date,
                    "createdAt": repo.created_at,
                    "private": repo.private,
                    "gated": False,
                    "disabled": False,
                    "downloads": 0,
                    "likes": 0,
                    "tags": list((card_data or {}).get("tags") or []),
                    "siblings": siblings,
                }
                if card_data is not None:
                    info["cardData"] = card_data
                if repo_type == "model" and card_data:
                    info["library_name"] = card_data.get("library_name")
                    info["pipeline_tag"] = card_data.get("pipeline_tag")
                    if "model-index" in card_data:
                        info["model-index"] = card_data["model-index"]
            self._json(200, info)

        def _preupload(self, repo_type: str, repo_id: str, revision: str, body: bytes) -> None:
            payload = json.loads(body or b"{}")
            with hub._lock:
                user = self._user()
                repo = hub._writable(repo_type, repo_id, user)
                commit = repo.resolve(revision)
                if commit is None:
                    raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                lfs_patterns = _gitattributes_lfs_patterns(commit.files)
                gitignore = payload.get("gitIgnore")
                if (
                    gitignore is None
                    and ".gitignore" in commit.files
                    and commit.files[".gitignore"].content
                ):
                    gitignore = commit.files[".gitignore"].content.decode("utf-8", "replace")
                ignore_patterns = [
                    line.strip()
                    for line in (gitignore or "").splitlines()
                    if line.strip() and not line.startswith("#")
                ]
                out = []
                for item in payload.get("files") or []:
                    path, size = item.get("path"), item.get("size")
                    if not isinstance(path, str) or not isinstance(size, int):
                        raise HubError(400, f"Invalid preupload entry: {item!r}")
                    sample = base64.b64decode(item.get("sample") or "")
                    is_lfs = (
                        size >= LFS_SIZE_THRESHOLD
                        or b"\0" in sample
                        or any(_matches(path, p) for p in lfs_patterns)
                    )
                    existing = commit.files.get(path)
                    remote_oid = None
                    if existing is not None:
                        remote_oid = (
                            existing.lfs_sha256
                            if existing.lfs_sha256 is not None
                            else existing.blob_oid
                        )
                    out.append(
                        {
                            "path": path,
                            "uploadMode": "lfs" if is_lfs else "regular",
                            "shouldIgnore": any(_matches(path, p) for p in ignore_patterns),
                            "oid": remote_oid,
                        }
                    )
            self._json(200, {"files": out, "commitOid": commit.oid})

        def _lfs_batch(self, repo_type: str, repo_id: str, body: bytes) -> None:
            payload = json.loads(body or b"{}")
            with hub._lock:
                user = self._user()
                if payload.get("operation") == "upload":
                    repo = hub._writable(repo_type, repo_id, user)
                else:
                    repo = hub._readable(
                        hub.repos.get(f"{repo_type}s/{repo_id}"), user, repo_type, repo_id
                    )
                ref = (payload.get("ref") or {}).get("name")
                if ref is not None and repo.resolve(ref) is None:
                    raise HubError(404, f"Invalid rev id: {ref}", "RevisionNotFound")
                objects = []
                multipart_used = False
                for obj in payload.get("objects") or []:
                    oid, size = obj.get("oid"), obj.get("size")
                    if (
                        not isinstance(oid, str)
                        or not _HEX64.match(oid)
                        or not isinstance(size, int)
                        or size < 0
                    ):
                        objects.append(
                            {
                                "oid": str(oid),
                                "size": size if isinstance(size, int) else 0,
                                "error": {
                                    "code": 422,
                                    "message": "Invalid object: oid must be a sha256",
                                },
                            }
                        )
                        continue
                    answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                    if oid in repo.lfs_objects:
                        objects.append(answer)  # already stored: no actions
                        continue
                    storage_path = f"/upload/{quote(repo.key, safe='')}/{oid}"
                    if hub.multipart_threshold is not None and size >= hub.multipart_threshold:
                        multipart_used = True
                        chunk = hub.multipart_chunk_size
                        header = {"chunk_size": str(chunk)}
                        for part in range(1, max(1, -(-size // chunk)) + 1):
                            header[str(part)] = hub._signed_url(
                                "PUT", storage_path, {"partNumber": str(part)}
                            )
                        completion = f"/api/complete_multipart?repo={quote(repo.key, safe='')}&oid={oid}&size={size}"
                        expires = int(time.time()) + 900
                        completion += f"&X-Expires={expires}&X-Signature={hub._sign('POST', f'{repo.key}:{oid}', expires)}"
                        upload = {"href": hub.endpoint + completion, "header": header}
                    else:
                        upload = {"href": hub._signed_url("PUT", storage_path)}
                    verify = {
                        "href": f"{hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}.git/info/lfs/objects/verify"
                    }
                    answer["actions"] = {"upload": upload, "verify": verify}
                    objects.append(answer)
            self._json(
                200,
                {"transfer": "multipart" if multipart_used else "basic", "objects": objects},
                content_type="application/vnd.git-lfs+json",
            )

        def _lfs_verify(self, repo_type: str, repo_id: str, body: bytes) -> None:
            payload = json.loads(body or b"{}")
            with hub._lock:
                repo = hub._writable(repo_type, repo_id, self._user())
                data = repo.lfs_objects.get(payload.get("oid"))
                if data is None or len(data) != payload.get("size"):
                    raise HubError(
                        404, f"LFS object {payload.get('oid')} not found or of another size"
                    )
            self._json(200, {"success": True}, content_type="application/vnd.git-lfs+json")

        def _complete_multipart(self, query: dict[str, list[str]], body: bytes) -> None:
            try:
                key, oid, size = query["repo"][0], query["oid"][0], int(query["size"][0])
                expires, signature = int(query["X-Expires"][0]), query["X-Signature"][0]
            except (KeyError, ValueError, IndexError):
                raise HubError(400, "Malformed multipart completion URL") from None
            if expires < time.time() or not hmac.compare_digest(
                signature, hub._sign("POST", f"{key}:{oid}", expires)
            ):
                raise HubError(403, "SignatureDoesNotMatch")
            payload = json.loads(body or b"{}")
            with hub._lock:
                repo = hub.repos[key]
                stored = hub._multipart_parts.pop((key, oid), {})
                parts = payload.get("parts") or []
                expected = [
                    hashlib.md5(stored[n]).hexdigest() if n in stored else None
                    for n in range(1, len(parts) + 1)
                ]
                given = [
                    p.get("etag", "").strip('"')
                    for p in sorted(parts, key=lambda p: p.get("partNumber", 0))
                ]
                if payload.get("oid") != oid or given != expected:
                    raise HubError(400, "Multipart completion does not match the uploaded parts")
                data = b"".join(stored[n] for n in range(1, len(parts) + 1))
                if len(data) != size or hashlib.sha256(data).hexdigest() != oid:
                    raise HubError(400, "Uploaded data does not match its sha256/size")
                repo.lfs_objects[oid] = data
            self._json(200, {"success": True})

        def _commit(self, repo_type: str, repo_id: str, revision: str, body: bytes) -> None:
            if "ndjson" not in (self.headers.get("Content-Type") or ""):
                raise HubError(400, "Commit payload must be application/x-ndjson")
            try:
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise HubError(400, f"Malformed NDJSON commit payload: {exc}") from None
            with hub._lock:
                repo = hub._writable(repo_type, repo_id, self._user())
                commit = hub.apply_commit(repo, unquote(revision), lines)
            self._json(
                200,
                {
                    "success": True,
                    "commitOid": commit.oid,
                    "commitUrl": f"{hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}/commit/{commit.oid}",
                    "hookOutput": "",
                    "pullRequestUrl": None,
                },
            )

        def _create_branch(self, repo_type: str, repo_id: str, branch: str, body: bytes) -> None:
            payload = json.loads(body or b"{}") if body else {}
            with hub._lock:
                repo = hub._writable(repo_type, repo_id, self._user())
                if branch in repo.branches:
                    raise HubError(409, f"Reference already exists: refs/heads/{branch}")
                start = repo.resolve(payload.get("startingPoint") or "main")
                if start is None:
                    raise HubError(
                        404, f"Invalid rev id: {payload.get('startingPoint')}", "RevisionNotFound"
                    )
                repo.branches[branch] = start.oid
            self._json(200, {})

        def _tree(
            self,
            repo_type: str,
            repo_id: str,
            revision: str,
            path: str,
            query: dict[str, list[str]],
        ) -> None:
            recursive = (query.get("recursive") or ["false"])[0].lower() in ("1", "true")
            expand = (query.get("expand") or ["false"])[0].lower() in ("1", "true")
            start = int((query.get("cursor") or ["0"])[0] or 0)
            path = path.strip("/")
            with hub._lock:
                repo, commit = self._get_commit(repo_type, repo_id, revision)
                folders = _folders(commit.files)
                if path and path not in folders:
                    raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
                prefix = path + "/" if path else ""
                names = sorted(
                    p
                    for p in set(commit.files) | folders
                    if p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])
                )
                # folders first, as the Hub lists them
                names.sort(key=lambda p: (p not in folders, p))
                page_size = 50 if expand else hub.page_size
                page = names[start : start + page_size]
                entries = [hub.path_info(repo, commit, p, expand) for p in page]
            headers = {}
            if start + page_size < len(names):
                url = urlsplit(self.path)
                rest = {k: v[0] for k, v in query.items() if k != "cursor"}
                rest["cursor"] = str(start + page_size)
                headers["Link"] = f'<{hub.endpoint}{url.path}?{urlencode(rest)}>; rel="next"'
            self._json(200, entries, headers)

        def _paths_info(self, repo_type: str, repo_id: str, revision: str, body: bytes) -> None:
            content_type = self.headers.get("Content-Type") or ""
            if "json" in content_type:
                payload = json.loads(body or b"{}")
                paths, expand = payload.get("paths") or [], bool(payload.get("expand"))
            else:
                form = parse_qs(body.decode(), keep_blank_values=True)
                paths = form.get("paths", [])
                expand = (form.get("expand") or ["false"])[0].lower() in ("1", "true")
            with hub._lock:
                repo, commit = self._get_commit(repo_type, repo_id, revision)
                folders = _folders(commit.files)
                out = [
                    hub.path_info(repo, commit, p.strip("/"), expand)
                    for p in paths
                    if p.strip("/") in commit.files or p.strip("/") in folders
                ]
            self._json(200, out)

        def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
            with hub._lock:
                repo, commit = self._get_commit(repo_type, repo_id, revision)
                entry = commit.files.get(path)
                if entry is None:
                    raise HubError(404, "Entry not found", "EntryNotFound")
                headers = {
                    "X-Repo-Commit": commit.oid,
                    "ETag": f'"{entry.blob_oid}"',
                    "Accept-Ranges": "bytes",
                }
                if entry.lfs_sha256 is not None:
                    # LFS: redirect to the storage origin, with the metadata of the linked object.
                    headers.update(
                        {
                            "X-Linked-Etag": f'"{entry.lfs_sha256}"',
                            "X-Linked-Size": str(entry.size),
                            "Location": hub._signed_url(
                                "GET",
                                f"/objects/{quote(repo.key, safe='')}/{entry.lfs_sha256}",
                                {"filename": path.rsplit("/", 1)[-1]},
                            ),
                        }
                    )
                    return self._send(302, b"", headers)
                data = entry.content or b""
            self._send_ranged(data, headers)

        def _send_ranged(self, data: bytes, headers: dict[str, str]) -> None:
            range_header = self.headers.get("Range")
            if range_header:
                match = re.match(r"^bytes=(\d*)-(\d*)$", range_header.strip())
                if not match or (not match.group(1) and not match.group(2)):
                    raise HubError(416, f"Invalid range {range_header}")
                if match.group(1):
                    first = int(match.group(1))
                    last = int(match.group(2)) if match.group(2) else len(data) - 1
                else:  # suffix range
                    first, last = max(0, len(data) - int(match.group(2))), len(data) - 1
                last = min(last, len(data) - 1)
                if first >= len(data) or first > last:
                    self._send(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
                    return
                headers = {**headers, "Content-Range": f"bytes {first}-{last}/{len(data)}"}
                return self._send(206, data[first : last + 1], headers, "application/octet-stream")
            self._send(200, data, headers, "application/octet-stream")

        # -------------------------------------------------------------- storage routes
        def _storage_route(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
            match = re.match(r"^/(upload|objects)/([^/]+)/([0-9a-f]{64})$", path)
            if not match:
                raise HubError(404, "NoSuchKey")
            kind, key, oid = match.group(1), unquote(match.group(2)), match.group(3)
            if kind == "upload" and self.command == "PUT":
                hub._check_signature("PUT", path, query)
                with hub._lock:
                    repo = hub.repos.get(key)
                    if repo is None:
                        raise HubError(404, "NoSuchBucket")
                    if "partNumber" in query:
                        part = int(query["partNumber"][0])
                        hub._multipart_parts.setdefault((key, oid), {})[part] = body
                        return self._send(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
                    if hashlib.sha256(body).hexdigest() != oid:
                        raise HubError(
                            400, "BadDigest: the uploaded content does not match its sha256"
                        )
                    repo.lfs_objects[oid] = body
                return self._send(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
            if kind == "objects" and self.command in ("GET", "HEAD"):
                hub._check_signature("GET", path, query)
                with hub._lock:
                    repo = hub.repos.get(key)
                    data = None if repo is None else repo.lfs_objects.get(oid)
                if data is None:
                    raise HubError(404, "NoSuchKey")
                return self._send_ranged(data, {"ETag": f'"{oid}"', "Accept-Ranges": "bytes"})
            raise HubError(405, "MethodNotAllowed")

    return Handler


def query_flag(raw_path: str, name: str) -> bool:
    """Whether a boolean query parameter is set in a raw request path."""
    values = parse_qs(urlsplit(raw_path).query).get(name) or []
    return bool(values) and values[0].lower() in ("1", "true")


# ---------------------------------------------------------------------------- helpers for tests
# huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE / HF_HUB_DISABLE_XET when it is imported, and
# tests/conftest.py sets the suite offline: the real clients therefore run in child processes.
_CLIENT_ENV_DROP = ("HF_", "HUGGING_FACE_", "TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE")


def client_env(hub: HubServer, home: str | os.PathLike[str], token: str | None) -> dict[str, str]:
    """Environment for a child process whose Hub clients talk to ``hub`` (classic LFS, online)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_ENV_DROP)}
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_OFFLINE="0",
        HF_DATASETS_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        HF_HUB_ETAG_TIMEOUT="5",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_python(
    code: str, *args: str, env: dict[str, str], cwd: str | os.PathLike[str], timeout: float = 300
) -> tuple[dict[str, Any], str]:
    """Run ``python -c code args...``; return (the JSON printed on its last stdout line, all output).

    Fails the calling test with the child's output when it exits non-zero.
    """
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"child process failed ({proc.returncode}):\n{output[-6000:]}")
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(last), output


def dataset_digest(ds: Any) -> dict[str, Any]:
    """Features and a per-row SHA-256 of the Arrow storage (image bytes included) of a Dataset."""
    rows = []
    for row in ds.data.table.to_pylist():
        rows.append(hashlib.sha256(repr(_canonical(row)).encode()).hexdigest())
    return {"features": ds.features.to_dict(), "rows": rows}


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted((k, _canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    return value
