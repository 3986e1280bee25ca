"""A small Hugging Face Hub on loopback: the part of the HTTP API our push and load paths touch.

``huggingface_hub`` (with ``HF_HUB_DISABLE_XET=1``: the classic LFS protocol), ``datasets`` and
``transformers`` run unmodified against it when ``HF_ENDPOINT`` points here:

- ``GET  /api/whoami-v2``, ``POST /api/repos/create``, ``POST /api/validate-yaml``
- ``GET  /api/{type}s/{repo_id}[/revision/{rev}]``           (``sha``, ``siblings``, ``private``)
- ``POST /api/{type}s/{repo_id}/preupload/{rev}``            (``uploadMode``, remote ``oid``)
- ``POST /{prefix}{repo_id}.git/info/lfs/objects/batch``     -> ``PUT`` to a pre-signed URL (HMAC)
- ``POST /api/{type}s/{repo_id}/commit/{rev}``               (NDJSON; atomic; ``parentCommit``)
- ``POST /api/{type}s/{repo_id}/branch/{branch}``
- ``GET  /api/{type}s/{repo_id}/tree/{rev}[/{path}]``, ``POST .../paths-info/{rev}``
- ``HEAD|GET /{prefix}{repo_id}/resolve/{rev}/{path}``       (ETag, X-Repo-Commit, X-Linked-*)

Errors carry the Hub's ``X-Error-Code`` / ``X-Error-Message`` headers. Repositories live in
memory; a commit applies all of its operations or none. Tests inject failures with
:meth:`HubServer.fail` and read :attr:`HubServer.requests` and :attr:`HubServer.commits`::

    with HubServer({"hf_xxx": HubUser("alice", orgs=("mm-skin",))}) as hub:
        env = client_env(hub, tmp_path / "home", "hf_xxx")
"""

from __future__ import annotations

import base64
import dataclasses
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# The Hub stores binary files, files >= 10 MB and these types through LFS (its default .gitattributes).
LFS_SUFFIXES = (".safetensors", ".parquet", ".bin", ".png", ".jpg", ".jpeg", ".webp", ".model", ".arrow", ".pt")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a file's ``oid`` / ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file committed in place of a large file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclasses.dataclass(frozen=True)
class HubUser:
    """A token's owner: user name, organisations it may write to, and the token's role."""

    name: str
    orgs: tuple[str, ...] = ()
    role: str = "write"  # "read" tokens cannot create repos or commit


@dataclasses.dataclass(frozen=True)
class Entry:
    """One file of a commit: inline content, or an LFS object (its sha256)."""

    size: int
    content: bytes | None = None
    lfs_sha256: str | None = None

    @property
    def blob_oid(self) -> str:
        if self.lfs_sha256 is not None:
            return git_blob_oid(lfs_pointer(self.lfs_sha256, self.size))
        return git_blob_oid(self.content or b"")


@dataclasses.dataclass
class Commit:
    oid: str
    parents: tuple[str, ...]
    title: str
    files: dict[str, Entry]


@dataclasses.dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = dataclasses.field(default_factory=dict)
    commits: dict[str, Commit] = dataclasses.field(default_factory=dict)
    lfs_objects: dict[str, bytes] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.repo_type}s/{self.repo_id}"

    def resolve(self, revision: str) -> Commit | None:
        """Commit for a branch name (optionally ``refs/heads/``-prefixed) or a commit id."""
        revision = unquote(revision).removeprefix("refs/heads/")
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


class HubError(Exception):
    """An HTTP error answer with the Hub's error headers."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclasses.dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    message: str
    skip: int
    times: int


def _folders(files: dict[str, Entry]) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}


class HubServer:
    """The in-memory Hub behind one loopback HTTP server (API, LFS uploads and downloads)."""

    def __init__(self, tokens: dict[str, HubUser] | None = None) -> None:
        self.tokens: dict[str, HubUser] = dict(tokens or {})
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path with query, status), in order
        self.commits: list[tuple[str, str, str]] = []  # (repo key, branch, oid) of accepted commits
        self._failures: list[_Failure] = []
        self._secret = secrets.token_bytes(32)
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.hub = self  # type: ignore[attr-defined]

    @property
    def endpoint(self) -> str:
        """Value for ``HF_ENDPOINT``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HubServer:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ for tests
    def fail(self, method: str, path_regex: str, status: int, *, message: str = "Injected failure",
             skip: int = 0, times: int = 1) -> None:
        """Answer ``status`` to the next ``times`` matching requests, after letting ``skip`` pass."""
        with self._lock:
            self._failures.append(_Failure(method.upper(), re.compile(path_regex), status, message, skip, times))

    def head(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> str | None:
        """Current commit id of a branch (None if the repo or branch does not exist)."""
        repo = self.repos.get(f"{repo_type}s/{repo_id}")
        return None if repo is None else repo.branches.get(branch)

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """Path -> content of every file at a revision (LFS files resolved to their data)."""
        with self._lock:
            repo = self.repos[f"{repo_type}s/{repo_id}"]
            commit = repo.resolve(revision)
            assert commit is not None, revision
            return {p: e.content if e.lfs_sha256 is None else repo.lfs_objects[e.lfs_sha256]
                    for p, e in commit.files.items()}

    def lfs_paths(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> set[str]:
        """Paths stored through LFS at a revision."""
        commit = self.repos[f"{repo_type}s/{repo_id}"].resolve(revision)
        assert commit is not None
        return {p for p, e in commit.files.items() if e.lfs_sha256 is not None}

    def history(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> list[Commit]:
        """Commits reachable from a branch, newest first."""
        repo = self.repos[f"{repo_type}s/{repo_id}"]
        out, oid = [], repo.branches.get(branch)
        while oid:
            out.append(repo.commits[oid])
            oid = (repo.commits[oid].parents or (None,))[0]
        return out

    def requests_for(self, repo_id: str) -> list[tuple[str, str, int]]:
        """Logged requests whose path mentions ``repo_id``."""
        return [r for r in list(self.requests) if repo_id in unquote(r[1])]

    # ------------------------------------------------------------------ auth and signing
    def user_for(self, authorization: str | None) -> HubUser | None:
        """Owner of the Bearer token; a token the Hub does not know is a 401."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def readable(self, key: str, user: HubUser | None) -> Repo:
        repo = self.repos.get(key)
        if repo is None or (repo.private and not _may_write(user, repo.repo_id)):
            # The Hub answers 401 to anonymous callers and 404 to authenticated ones.
            raise HubError(404 if user else 401, "Repository not found", "RepoNotFound")
        return repo

    def writable(self, key: str, user: HubUser | None) -> Repo:
        repo = self.readable(key, user)
        if user is None or user.role != "write" or not _may_write(user, repo.repo_id):
            raise HubError(403, f"You don't have the rights to write to {key}")
        return repo

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ repositories
    def create_repo(self, repo_type: str, repo_id: str, private: bool, user: HubUser | None) -> Repo:
        if user is None or user.role != "write" or not _may_write(user, repo_id):
            raise HubError(403 if user else 401, f"You don't have the rights to create a {repo_type} under "
                           f"the namespace {repo_id.split('/')[0]!r}")
        if f"{repo_type}s/{repo_id}" in self.repos:
            raise HubError(409, f"You already created this {repo_type} repo")
        repo = Repo(repo_type, repo_id, private)
        self._store(repo, "main", None, "initial commit", {".gitattributes": Entry(len(GITATTRIBUTES), GITATTRIBUTES)})
        self.repos[repo.key] = repo
        return repo

    def _store(self, repo: Repo, branch: str, parent: str | None, title: str, files: dict[str, Entry]) -> Commit:
        listing = json.dumps([parent, title, time.time_ns(), sorted((p, e.blob_oid) for p, e in files.items())])
        oid = hashlib.sha1(listing.encode()).hexdigest()
        repo.commits[oid] = Commit(oid, (parent,) if parent else (), title, files)
        repo.branches[branch] = oid
        self.commits.append((repo.key, branch, oid))
        return repo.commits[oid]

    def apply_commit(self, repo: Repo, branch: str, lines: list[dict[str, Any]]) -> Commit:
        """Apply an NDJSON commit atomically: all operations or none (under the server lock)."""
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        header = lines[0].get("value", {}) if lines and lines[0].get("key") == "header" else None
        if not header or not str(header.get("summary") or "").strip():
            raise HubError(400, "The first line of the commit payload must be a header with a summary")
        head = repo.branches[branch]
        if header.get("parentCommit") not in (None, head):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[head].files)
        for number, line in enumerate(lines[1:], start=2):
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path")
            if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/") \
                    or path.split("/")[0] == ".git":
                raise HubError(400, f"line {number}: invalid path {path!r}")
            if key == "file":
                content = base64.b64decode(value.get("content", ""), validate=True)
                files[path] = Entry(len(content), content)
            elif key == "lfsFile":
                data = repo.lfs_objects.get(value.get("oid"))
                if data is None:
                    raise HubError(400, f"Your push was rejected because an LFS pointer pointed to a file that "
                                   f"does not exist: {path}")
                files[path] = Entry(len(data), lfs_sha256=value["oid"])
            elif key == "deletedFile" and path in files:
                del files[path]
            else:
                raise HubError(400 if key != "deletedFile" else 404, f"line {number}: cannot apply {key} {path}")
        return self._store(repo, branch, head, header["summary"], files)

    def path_info(self, commit: Commit, path: str) -> dict[str, Any]:
        entry = commit.files.get(path)
        if entry is None:  # a folder: its oid only has to be stable
            listing = sorted((p, e.blob_oid) for p, e in commit.files.items() if p.startswith(path + "/"))
            return {"type": "directory", "oid": hashlib.sha1(repr(listing).encode()).hexdigest(), "size": 0,
                    "path": path}
        info: dict[str, Any] = {"type": "file", "oid": entry.blob_oid, "size": entry.size, "path": path}
        if entry.lfs_sha256 is not None:
            info["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size,
                           "pointerSize": len(lfs_pointer(entry.lfs_sha256, entry.size))}
        return info


def _may_write(user: HubUser | None, repo_id: str) -> bool:
    namespace = repo_id.split("/")[0]
    return user is not None and (namespace == user.name or namespace in user.orgs)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Request body, with Content-Length or chunked transfer encoding."""
    if handler.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    chunks = []
    while size := int(handler.rfile.readline().split(b";")[0].strip(), 16):
        chunks.append(handler.rfile.read(size))
        handler.rfile.readline()
    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
        pass
    return b"".join(chunks)


class _Handler(BaseHTTPRequestHandler):
    """One request to the loopback Hub (``self.server.hub`` holds its state)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # requests are recorded in self.hub.requests instead

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self._status = 500
        try:
            body = _read_body(self)
            with self.hub._lock:
                failure = next((f for f in self.hub._failures if f.times > 0 and f.method == self.command
                                and f.pattern.search(url.path)), None)
                if failure is not None and failure.skip > 0:
                    failure.skip -= 1
                elif failure is not None:
                    failure.times -= 1
                    raise HubError(failure.status, failure.message)
            self._route([unquote(s) for s in url.path.strip("/").split("/")], url, body)
        except HubError as err:
            headers = {"X-Error-Message": err.message, **({"X-Error-Code": err.code} if err.code else {})}
            self._json(err.status, {"error": err.message}, headers)
        except Exception as exc:  # a bug in the test server must show up as a 500, not a hang
            self._json(500, {"error": f"Internal error: {type(exc).__name__}: {exc}"})
        finally:
            self.hub.requests.append((self.command, self.path, self._status))

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._status = status
        self.send_response(status)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _user(self) -> HubUser | None:
        return self.hub.user_for(self.headers.get("Authorization"))

    def _route(self, seg: list[str], url: Any, body: bytes) -> None:
        method, content_type = self.command, self.headers.get("Content-Type") or ""
        is_json = "json" in content_type and "ndjson" not in content_type
        payload = json.loads(body) if is_json and body else {}
        with self.hub._lock:
            if seg == ["api", "whoami-v2"]:
                return self._whoami()
            if seg == ["api", "agent-harnesses"]:  # huggingface_hub's user-agent lookup
                return self._json(200, {"standardEnvVars": [], "harnesses": {}})
            if seg == ["api", "repos", "create"] and method == "POST":
                return self._create(payload)
            if seg == ["api", "validate-yaml"] and method == "POST":
                return self._validate_yaml(payload)
            if len(seg) >= 4 and seg[0] == "api" and seg[1] in REPO_TYPES:
                return self._repo_api(f"{seg[1]}/{seg[2]}/{seg[3]}", seg[4:], body, payload)
            if seg[0] == "lfs-upload" and method == "PUT":
                return self._lfs_put(url, body)
            if len(seg) == 7 and seg[2].endswith(".git") or len(seg) == 6 and seg[1].endswith(".git"):
                prefix = seg[0] + "/" if seg[0] in ("datasets", "spaces") else ""
                name = f"{seg[-6]}/{seg[-5].removesuffix('.git')}"
                return self._lfs_batch(f"{prefix or 'models/'}{name}", payload)
            offset = 1 if seg[0] in ("datasets", "spaces") else 0
            if len(seg) >= offset + 5 and seg[offset + 2] == "resolve":
                key = f"{seg[0] if offset else 'models'}/{seg[offset]}/{seg[offset + 1]}"
                return self._resolve(key, seg[offset + 3], "/".join(seg[offset + 4:]))
        raise HubError(404, f"Sorry, we can't find the page you are looking for: {method} {url.path}")

    def _repo_api(self, key: str, rest: list[str], body: bytes, payload: dict[str, Any]) -> None:
        action = rest[0] if rest else "info"
        if action in ("info", "revision") and self.command == "GET":
            return self._repo_info(key, rest[1] if rest else "main")
        if action == "preupload":
            return self._preupload(key, rest[1], payload)
        if action == "commit":
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            commit = self.hub.apply_commit(self.hub.writable(key, self._user()), unquote(rest[1]), lines)
            repo_type, repo_id = REPO_TYPES[key.split("/")[0]], key.split("/", 1)[1]
            url = f"{self.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}/commit/{commit.oid}"
            return self._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url})
        if action == "branch":
            repo = self.hub.writable(key, self._user())
            if rest[1] in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{rest[1]}")
            repo.branches[rest[1]] = repo.branches[payload.get("startingPoint") or "main"]
            return self._json(200, {})
        if action == "tree":
            return self._tree(key, rest[1], "/".join(rest[2:]).strip("/"))
        if action == "paths-info":
            form = parse_qs(body.decode()) if not payload else {"paths": payload.get("paths", [])}
            commit = self._commit(key, rest[1])
            known = set(commit.files) | _folders(commit.files)
            return self._json(200, [self.hub.path_info(commit, p.strip("/")) for p in form.get("paths", [])
                                    if p.strip("/") in known])
        raise HubError(404, f"unknown repo action {action!r}")

    def _commit(self, key: str, revision: str) -> Commit:
        commit = self.hub.readable(key, self._user()).resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _whoami(self) -> None:
        user = self._user()
        if user is None:
            raise HubError(401, "Invalid username or password.")
        self._json(200, {"type": "user", "name": user.name, "orgs": [{"name": o} for o in user.orgs],
                         "auth": {"type": "access_token", "accessToken": {"role": user.role}}})

    def _create(self, payload: dict[str, Any]) -> None:
        user, name, repo_type = self._user(), payload.get("name"), payload.get("type") or "model"
        if repo_type not in URL_PREFIX or not re.match(r"^[\w.-]+$", str(name)):
            raise HubError(400, f"Invalid repo name or type: {name!r} ({repo_type!r})")
        repo_id = f"{payload.get('organization') or (user.name if user else '')}/{name}"
        url = f"{self.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        try:
            self.hub.create_repo(repo_type, repo_id, private, user)
        except HubError as err:
            if err.status != 409:
                raise
            return self._json(409, {"error": err.message, "url": url}, {"X-Error-Message": err.message})
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self, payload: dict[str, Any]) -> None:
        self._user()  # a bad token is still a 401 here
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", payload.get("content", ""), flags=re.DOTALL)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as exc:
            meta = f"Invalid YAML in README metadata: {exc}"
        if not isinstance(meta, dict | None):
            error = meta if isinstance(meta, str) else "YAML metadata must be a mapping"
            return self._json(400, {"errors": [{"message": error}], "warnings": []},
                              {"X-Error-Message": "Invalid metadata in README.md"})
        self._json(200, {"errors": [], "warnings": []})

    def _repo_info(self, key: str, revision: str) -> None:
        repo, commit = self.hub.readable(key, self._user()), self._commit(key, revision)
        self._json(200, {"id": repo.repo_id, "sha": commit.oid, "private": repo.private,
                         "siblings": [{"rfilename": p} for p in sorted(commit.files)]})

    def _preupload(self, key: str, revision: str, payload: dict[str, Any]) -> None:
        self.hub.writable(key, self._user())
        commit = self._commit(key, revision)
        out = []
        for item in payload.get("files") or []:
            path, size = item["path"], item["size"]
            lfs = (size >= LFS_SIZE_THRESHOLD or path.endswith(LFS_SUFFIXES)
                   or b"\0" in base64.b64decode(item.get("sample") or ""))
            existing = commit.files.get(path)
            oid = None if existing is None else (existing.lfs_sha256 or existing.blob_oid)
            out.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": out, "commitOid": commit.oid})

    def _lfs_batch(self, key: str, payload: dict[str, Any]) -> None:
        repo = self.hub.writable(key, self._user())
        objects = []
        for obj in payload.get("objects") or []:
            answer: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in repo.lfs_objects:  # a pre-signed URL, as the Hub's storage hands out
                path, expires = f"/lfs-upload/{quote(repo.key, safe='')}/{obj['oid']}", int(time.time()) + 900
                query = urlencode({"X-Expires": expires, "X-Signature": self.hub.sign(path, expires)})
                answer["actions"] = {"upload": {"href": f"{self.hub.endpoint}{path}?{query}"}}
            objects.append(answer)
        self._json(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_put(self, url: Any, body: bytes) -> None:
        query = parse_qs(url.query)
        expires = int((query.get("X-Expires") or ["0"])[0])
        if expires < time.time() or not hmac.compare_digest((query.get("X-Signature") or [""])[0],
                                                           self.hub.sign(url.path, expires)):
            raise HubError(403, "SignatureDoesNotMatch")
        key, oid = unquote(url.path.split("/")[2]), url.path.split("/")[3]
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "BadDigest: the uploaded content does not match its sha256")
        self.hub.repos[key].lfs_objects[oid] = body
        self._send(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def _tree(self, key: str, revision: str, path: str) -> None:
        commit = self._commit(key, revision)
        folders = _folders(commit.files)
        if path and path not in folders:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        recursive = (parse_qs(urlsplit(self.path).query).get("recursive") or ["false"])[0].lower() == "true"
        prefix = path + "/" if path else ""
        names = sorted(p for p in set(commit.files) | folders
                       if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):]))
        self._json(200, [self.hub.path_info(commit, p) for p in sorted(names, key=lambda p: (p not in folders, p))])

    def _resolve(self, key: str, revision: str, path: str) -> None:
        repo, commit = self.hub.readable(key, self._user()), self._commit(key, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.blob_oid}"',
                   "Content-Type": "application/octet-stream"}
        if entry.lfs_sha256 is not None:
            headers.update({"X-Linked-Etag": f'"{entry.lfs_sha256}"', "X-Linked-Size": str(entry.size)})
        data = entry.content if entry.lfs_sha256 is None else repo.lfs_objects[entry.lfs_sha256]
        self._send(200, data or b"", headers)



# ---------------------------------------------------------------------------- helpers for tests
# huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE / HF_HUB_DISABLE_XET when it is imported, and
# tests/conftest.py sets the suite offline: the real clients therefore run in child processes.
_CLIENT_ENV_DROP = ("HF_", "HUGGING_FACE_", "TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE")


def client_env(hub: HubServer, home: str | os.PathLike[str], token: str | None) -> dict[str, str]:
    """Environment for a child process whose Hub clients talk to ``hub`` (classic LFS, online)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_ENV_DROP)}
    env.update(
        HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0", HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1", HF_HUB_ETAG_TIMEOUT="5",
        TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_python(code: str, *args: str, env: dict[str, str], cwd: str | os.PathLike[str],
               timeout: float = 300) -> tuple[dict[str, Any], str]:
    """Run ``python -c code args...``; return (the JSON on its last ``{`` stdout line, all output)."""
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=str(cwd), capture_output=True,
                          text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"child process failed ({proc.returncode}):\n{output[-6000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1]), output


def assert_hostile_entries_left_out(hub: HubServer, result: dict[str, Any], repo_id: str, repo_type: str,
                                    escaping: str, secret: bytes) -> dict[str, bytes]:
    """The push of a hostile folder succeeded without its dot-entries and the symlink ``escaping`` (whose
    target holds ``secret``), each listed on stderr; returns the repo's files."""
    assert result["rc"] == 0, result
    files = hub.files(repo_id, repo_type)
    assert not [p for p in files if p.startswith((".env", ".git/", ".cache/")) or p == escaping]
    assert secret not in b"".join(files.values())
    listed = [line for line in result["err"].splitlines() if "not uploaded (4)" in line]
    assert listed, result["err"]
    for item in (".env (dot-file)", ".git/ (dot-folder)", ".cache/ (dot-folder)",
                 f"{escaping} (symlink leaving the folder)"):
        assert item in listed[0]
    return files


def dataset_digest(ds: Any) -> dict[str, Any]:
    """Features and a per-row SHA-256 of the Arrow storage (image bytes included) of a Dataset."""
    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return sorted((k, canonical(v)) for k, v in value.items())
        if isinstance(value, list):
            return [canonical(v) for v in value]
        return hashlib.sha256(value).hexdigest() if isinstance(value, bytes) else value

    rows = [hashlib.sha256(repr(canonical(row)).encode()).hexdigest() for row in ds.data.table.to_pylist()]
    return {"features": ds.features.to_dict(), "rows": rows}
