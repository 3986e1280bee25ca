"""The one Hub push of mm-skin, used by ``mm-skin push`` (datasets) and ``skinvl push`` (models, Spaces).

:func:`push_folder` does, in order, and stops at the first problem with ONE line that says what to do:

1. checks the repo id and type (exit 2);
2. selects the files that belong in the repo (:func:`select_files`): dot-files and dot-folders
   (``.env``, ``.git/``, ``.cache/``), caches and symlinks that leave the folder are not uploaded,
   and are listed;
3. checks offline mode, the token (``HF_TOKEN`` or ``hf auth login``, huggingface_hub's own
   lookup) and the endpoint in about a second, instead of huggingface_hub's retry loop (exit 4);
4. runs the caller's validation of the folder (a dataset that loads, a model that loads; exit 2);
5. makes ONE ``create_commit`` whose ``parent_commit`` is the branch head read before uploading,
   so a concurrent push fails instead of interleaving. huggingface_hub drops files whose hash
   matches the remote's and makes no commit when nothing changed.

The token, and the signatures of pre-signed upload URLs, are scrubbed from every message
(:func:`scrub`). Nothing here imports torch, skinvl or mm_skin_dataset.

>>> push_folder("mm-skin", "me/mm-skin", repo_type="dataset", private=True)  # doctest: +SKIP
PushResult(repo_id='me/mm-skin', ..., commit_url='https://huggingface.co/datasets/me/mm-skin/commit/...')
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import stat
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mm_skin import __version__
from mm_skin.cli import ExitCode
from mm_skin.paths import UnsafePathError, is_inside, relative_parts
from mm_skin.untrusted import printable, redact

REPO_TYPES = ("dataset", "model", "space")
# Not dot-entries, but never part of a dataset / model / Space either.
_CACHE_NAMES = {"__pycache__"}
_CACHE_SUFFIXES = (".pyc", ".lock")
_TOKEN_RE = re.compile(r"\b(hf|api_org)_[A-Za-z0-9]{8,}")
_BEARER_RE = re.compile(r"(?i)\b(bearer\s+|token=)[^\s,;&'\"]+")
# The query of any URL: pre-signed upload/download URLs carry their signature there.
_URL_QUERY_RE = re.compile(r"(https?://[^\s?#'\"<>]+)\?[^\s'\"<>]*")
# user:password@ in a URL (an endpoint given with its credentials).
_URL_USERINFO_RE = re.compile(r"(?i)\b(https?://)[^\s/@'\"<>]+@")
_HTTP_HINTS = {
    401: "the token was rejected",
    403: "the token cannot write to this namespace",
    409: "the repository is in a conflicting state",
    412: "someone pushed to the branch meanwhile; run the push again",
}


class PushError(RuntimeError):
    """A push that was refused (``exit_code`` 2: bad input) or failed (4); nothing was committed."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.PUSH) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def scrub(text: str, token: str | None = None) -> str:
    """``text`` as one printable line without the token (or a piece of it), any ``hf_...`` token, a
    Bearer value, or URL query strings (:mod:`mm_skin.untrusted` for the line and the pieces).

    >>> scrub("PUT https://s3/x?X-Amz-Signature=abc failed, token hf_abcdefgh1234\\nretry s3cret", "s3cret")
    'PUT https://s3/x?<redacted> failed, token hf_*** retry ***'
    >>> scrub("cannot reach http://me:pa55@10.0.0.2:8000/v1")
    'cannot reach http://***@10.0.0.2:8000/v1'
    """
    text = redact(text, token)  # also a piece of it, as a server may echo the token cut short
    text = _TOKEN_RE.sub(lambda m: f"{m.group(1)}_***", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)}***", text)
    text = _URL_QUERY_RE.sub(r"\1?<redacted>", text)
    text = _URL_USERINFO_RE.sub(r"\1***@", text)
    return printable(text)


# --------------------------------------------------------------------------- what is uploaded
@dataclasses.dataclass(frozen=True)
class Skipped:
    """A path of the folder that is not uploaded, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


@dataclasses.dataclass
class FolderFiles:
    """The files of a folder that belong in its repo (relative POSIX paths) and what was left out."""

    root: Path
    files: list[str]
    skipped: list[Skipped]


def _left_out(root: Path, path: Path, name: str, is_dir: bool) -> str | None:
    """Why ``path`` is not uploaded, or None when it is."""
    if name.startswith("."):
        return "dot-folder" if is_dir else "dot-file"
    if name in _CACHE_NAMES or (not is_dir and name.endswith(_CACHE_SUFFIXES)):
        return "cache"
    if path.is_symlink():
        if not is_inside(path, root):
            return "symlink leaving the folder"
        if is_dir:
            return "symlinked folder, not followed"
        if any(part.startswith(".") for part in path.resolve().relative_to(root).parts):
            return "symlink to a dot-file"
    if not is_dir:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return "broken symlink"
        if not stat.S_ISREG(mode):
            return "not a regular file"
    return None


def select_files(folder: str | os.PathLike[str]) -> FolderFiles:
    """The files of ``folder`` to upload; dot-entries, caches and escaping symlinks are skipped.

    Symlinks are followed only when they point at a regular file inside the folder. Raises
    :class:`PushError` (exit 2) when ``folder`` is not a folder or holds nothing to upload.
    """
    root = Path(folder)
    if not root.is_dir():
        raise PushError(f"{root}: not a folder (give the folder to publish)", ExitCode.BAD_INPUT)
    root = root.resolve()
    files: list[str] = []
    skipped: list[Skipped] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        for name in sorted(dirnames):
            reason = _left_out(root, here / name, name, is_dir=True)
            if reason:
                skipped.append(Skipped((rel_dir / name).as_posix() + "/", reason))
                dirnames.remove(name)  # os.walk does not descend into removed names
        for name in sorted(filenames):
            rel = (rel_dir / name).as_posix()
            reason = _left_out(root, here / name, name, is_dir=False)
            if reason:
                skipped.append(Skipped(rel, reason))
            else:
                files.append(rel)
    if not files:
        raise PushError(f"{root}: nothing to upload (every file was skipped)", ExitCode.BAD_INPUT)
    return FolderFiles(root=root, files=sorted(files), skipped=skipped)


# --------------------------------------------------------------------------- repo, token, endpoint
def is_hub_id(value: str) -> bool:
    """Whether ``value`` is a Hub repo id NAMESPACE/NAME by huggingface_hub's own rule (``validate_repo_id``).

    >>> is_hub_id("me/mm-skin"), is_hub_id("mm-skin"), is_hub_id("../labels"), is_hub_id("a/b.git")
    (True, False, False, False)
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if value.count("/") != 1:
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def check_repo_id(repo_id: str, repo_type: str) -> None:
    """Refuse (exit 2) a repo type other than dataset/model/space and an id that is not NAMESPACE/NAME."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo_type not in REPO_TYPES:
        raise PushError(f"repo type {repo_type!r} is not one of {', '.join(REPO_TYPES)}", ExitCode.BAD_INPUT)
    example = "my-org/mm-skin" if repo_type == "dataset" else "my-org/skinvl-pubmm"
    if repo_id.count("/") != 1:
        raise PushError(f"repo id {repo_id!r} must look like NAMESPACE/NAME (e.g. {example})", ExitCode.BAD_INPUT)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PushError(f"repo id {repo_id!r} is not valid: {scrub(str(exc))} (e.g. {example})",
                        ExitCode.BAD_INPUT) from None


def _token_source(token: str | None) -> tuple[str | None, str]:
    """The token to use and where it came from (for messages; never the token itself)."""
    from huggingface_hub import constants, get_token

    if token:
        return token, "the token argument"
    found = get_token()
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return found, "HF_TOKEN"
    return found, f"the cached login ({constants.HF_TOKEN_PATH})" if found else "nowhere"


def connect(token: str | None = None, endpoint: str | None = None) -> tuple[Any, str]:
    """Check offline mode, the token and the endpoint; return ``(HfApi, token)``.

    Fails in about a second with a :class:`PushError` that says what to do: ``HF_HUB_OFFLINE``,
    no token, a token with non-ASCII characters, unreachable endpoint, rejected or read-only token.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    if constants.is_offline_mode():
        raise PushError("offline mode is on (HF_HUB_OFFLINE=1): set HF_HUB_OFFLINE=0 in the environment to push")
    resolved, source = _token_source(token)
    if not resolved:
        raise PushError("no Hugging Face token found: set HF_TOKEN to a token with write access "
                        f"({endpoint}/settings/tokens) or run `hf auth login`")
    if not resolved.isascii() or not resolved.isprintable() or any(c.isspace() for c in resolved):
        raise PushError(f"the token from {source} has non-ASCII, blank or control characters: copy it "
                        f"again from {endpoint}/settings/tokens", ExitCode.BAD_INPUT)
    api = HfApi(endpoint=endpoint, token=resolved)
    try:
        who = api.whoami(token=resolved, cache=False)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise PushError(f"the Hub at {endpoint} rejected the token from {source} (401 Unauthorized): "
                            f"create a token with write access at {endpoint}/settings/tokens and set "
                            "HF_TOKEN or run `hf auth login --force`") from None
        raise PushError(scrub(f"the Hub at {endpoint} answered {status} to whoami: {exc}", resolved)) from None
    except Exception as exc:  # connection reset, TLS, DNS: no network or a wrong HF_ENDPOINT
        raise PushError(scrub(f"cannot reach the Hub at {endpoint} ({type(exc).__name__}: {exc}); "
                              "check the network connection and HF_ENDPOINT", resolved)) from None
    if ((who.get("auth") or {}).get("accessToken") or {}).get("role") == "read":
        raise PushError(f"the token from {source} is read-only: pushing needs a token with write access")
    return api, resolved


@contextlib.contextmanager
def _scrubbed(repo_id: str, token: str | None) -> Iterator[None]:
    """Turn every failure inside into a one-line, scrubbed :class:`PushError`."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except PushError as exc:
        raise PushError(scrub(str(exc), token), exc.exit_code) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = _HTTP_HINTS.get(status or 0, "nothing was committed")
        raise PushError(scrub(f"push to {repo_id} failed ({status}): {hint}; the repository is at its "
                              f"previous commit. {exc}", token)) from None
    except Exception as exc:  # network errors, a file that vanished, huggingface_hub's ValueErrors
        raise PushError(scrub(f"push to {repo_id} failed ({type(exc).__name__}: {exc}); nothing was "
                              "committed, the repository is at its previous commit", token)) from None


# --------------------------------------------------------------------------- the push
@dataclasses.dataclass
class PushResult:
    """What a push did: the commit URL (None when the repo already held these files), what was skipped."""

    repo_id: str
    repo_type: str
    files: list[str]
    skipped: list[Skipped]
    commit_url: str | None


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    repo_type: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    validate: Callable[[FolderFiles], None] | None = None,
    replace: Mapping[str, bytes] | None = None,
    prune: Callable[[str], bool] | None = None,
    space_sdk: str | None = None,
) -> PushResult:
    """Upload the files of ``folder`` that belong in the repo to ``repo_id`` in ONE commit.

    ``validate(files)`` runs after the token and endpoint checks and before anything is uploaded;
    it raises :class:`PushError` to refuse. ``replace`` maps repo paths to bytes uploaded instead of
    (or beside) the folder's files, e.g. a rendered README.md. Remote files absent from the folder
    are deleted in the same commit when ``prune(path)`` is true. ``revision`` is a branch, created
    from main when missing. Raises :class:`PushError`; the repo then stays at its previous commit.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    check_repo_id(repo_id, repo_type)
    selection = select_files(folder)
    api, resolved = connect(token, endpoint)
    with _scrubbed(repo_id, resolved):
        if validate is not None:
            validate(selection)
        branch = revision or "main"
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        if branch != "main":
            api.create_branch(repo_id, repo_type=repo_type, branch=branch, exist_ok=True)
        head = api.repo_info(repo_id, repo_type=repo_type, revision=branch).sha
        replace = dict(replace or {})
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(selection.root / rel))
            for rel in selection.files if rel not in replace
        ]
        operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=b) for p, b in sorted(replace.items())]
        if prune is not None:
            local = set(selection.files) | set(replace)
            stale = sorted(p for p in _remote_files(api, repo_id, repo_type, branch) - local if prune(p))
            operations += [CommitOperationDelete(path_in_repo=p, is_folder=False) for p in stale]
        # create_commit, not upload_folder: with hf_xet installed upload_folder may split a large
        # folder into several commits, and a push must be ONE commit.
        info = api.create_commit(
            repo_id, operations=operations, repo_type=repo_type, revision=branch, parent_commit=head,
            commit_message=commit_message or f"Upload {repo_id.split('/')[1]} (mm-skin {__version__})",
        )
    files = sorted(set(selection.files) | set(replace))
    return PushResult(repo_id, repo_type, files, selection.skipped, None if info.oid == head else info.commit_url)


def _remote_files(api: Any, repo_id: str, repo_type: str, revision: str) -> set[str]:
    from huggingface_hub.errors import RemoteEntryNotFoundError, RevisionNotFoundError

    try:
        return set(api.list_repo_files(repo_id, repo_type=repo_type, revision=revision))
    except (RemoteEntryNotFoundError, RevisionNotFoundError):
        return set()


def run_push(prog: str, folder: str | os.PathLike[str], push: Callable[[], PushResult]) -> int:
    """Run ``push()`` for a CLI: scrubbed one-line errors and warnings on stderr, the outcome on stdout.

    Returns the exit code: 0 pushed (or nothing to do), 2 refused (bad input), 4 push failed.
    """
    from huggingface_hub import get_token

    started = time.monotonic()
    token = get_token()  # HF_TOKEN or the cached login: scrubbed from every line printed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            result = push()
        except PushError as exc:
            what = "refused, nothing uploaded" if exc.exit_code == ExitCode.BAD_INPUT else "push failed"
            print(f"{prog}: {what}: {scrub(str(exc), token)}", file=sys.stderr)
            return int(exc.exit_code)
        finally:
            for warning in caught:
                print(f"{prog}: warning: {scrub(str(warning.message), token)}", file=sys.stderr)
    if result.skipped:
        listed = ", ".join(map(str, result.skipped))
        print(f"{prog}: not uploaded ({len(result.skipped)}): {listed}", file=sys.stderr)
    elapsed = time.monotonic() - started
    if result.commit_url is None:
        print(f"{result.repo_id} already holds these files: no new commit ({elapsed:.1f} s)")
    else:
        print(f"pushed {folder} to {result.repo_id} in one commit: {result.commit_url} ({elapsed:.1f} s)")
    return int(ExitCode.OK)


# --------------------------------------------------------------------------- datasets: mm-skin push
def validate_folder(
    folder: str | os.PathLike[str], files: FolderFiles | None = None
) -> dict[str, dict[str, int]]:
    """Check a built dataset folder before it is pushed; return config -> split -> rows.

    The card must parse with huggingface_hub's ``DatasetCard`` and list ``configs`` (exactly one
    ``default``); every shard must be an uploaded file (not skipped), readable Parquet whose row
    counts match the card's ``dataset_info`` and whose every image decodes with PIL's default
    limits; every config must load with ``datasets.load_dataset(folder, config, streaming=True)``.
    Raises :class:`PushError` (exit 2).
    """
    from huggingface_hub import DatasetCard

    root = Path(folder)
    uploaded = set((files or select_files(root)).files)
    readme = root / "README.md"
    if "README.md" not in uploaded:
        raise PushError(f"{root}: no README.md (build the folder with `mm-skin build`)", ExitCode.BAD_INPUT)
    try:
        data = DatasetCard.load(readme).data.to_dict()
    except Exception as exc:
        raise PushError(f"{readme}: the dataset card does not parse: {exc}", ExitCode.BAD_INPUT) from None
    configs = data.get("configs")
    if not isinstance(configs, list) or not configs:
        raise PushError(f"{readme}: no `configs:` in the YAML header", ExitCode.BAD_INPUT)
    defaults = [c.get("config_name") for c in configs if c.get("default")]
    if len(defaults) != 1:
        raise PushError(f"{readme}: expected exactly one config with `default: true`, found {defaults}",
                        ExitCode.BAD_INPUT)
    if any(p.endswith(".py") and "/" not in p for p in uploaded):
        raise PushError(f"{root}: contains a .py file; datasets refuses to load script folders", ExitCode.BAD_INPUT)
    infos = {i.get("config_name"): i for i in data.get("dataset_info") or []}
    shards: set[Path] = set()
    counts = {c["config_name"]: _count_rows(root, readme, c, infos.get(c["config_name"]), uploaded, shards)
              for c in configs}
    for shard in sorted(shards):  # configs may share files: each is checked once
        _check_images(shard)
    for name in counts:
        _check_loads(root, name)
    return counts


def _check_images(shard: Path) -> None:
    """Every image of the shard decodes with PIL's default limits (not only the first row)."""
    from mm_skin.images import check_parquet_images

    problems = check_parquet_images(shard)
    if problems:
        first = problems[0]
        raise PushError(f"{shard}: row {first.row} (image {first.name!r}): {first.reason}; {len(problems)} image(s) "
                        "of this file would not decode: rebuild the folder with `mm-skin build`", ExitCode.BAD_INPUT)


def _count_rows(
    root: Path, readme: Path, config: dict[str, Any], info: dict[str, Any] | None, uploaded: set[str],
    shards: set[Path],
) -> dict[str, int]:
    """Rows per split of one config, from the Parquet footers (checked against ``dataset_info``);
    adds the config's files to ``shards``."""
    import pyarrow.parquet as pq

    name = config["config_name"]
    expected = {s["name"]: s["num_examples"] for s in ((info or {}).get("splits") or [])}
    counts: dict[str, int] = {}
    for data_files in config.get("data_files", []):
        split = data_files["split"]
        patterns = data_files["path"] if isinstance(data_files["path"], list) else [data_files["path"]]
        rows = 0
        for pattern in patterns:
            try:  # a pattern from the card: absolute or "../" would glob outside the folder (a
                # symlink leaving it is found below: it is not among the uploaded files)
                relative_parts(pattern, what="data file paths", where="the folder")
            except UnsafePathError as reason:
                raise PushError(f"{readme}: config {name!r} split {split!r} names {pattern!r}: {reason}; "
                                "rebuild the folder with `mm-skin build`", ExitCode.BAD_INPUT) from None
            matches = sorted(root.glob(pattern))
            if not matches:
                raise PushError(f"{readme}: config {name!r} split {split!r} names {pattern!r}, which is not in {root}",
                                ExitCode.BAD_INPUT)
            for match in matches:
                if match.relative_to(root).as_posix() not in uploaded:
                    raise PushError(f"{match}: a data file of config {name!r} that would not be uploaded (a "
                                    "dot-file or a symlink leaving the folder): copy the file into the folder",
                                    ExitCode.BAD_INPUT)
                shards.add(match)
                try:
                    rows += pq.read_metadata(match).num_rows
                except Exception as exc:
                    raise PushError(f"{match}: not a readable Parquet file: {exc}", ExitCode.BAD_INPUT) from None
        counts[split] = rows
        if split in expected and expected[split] != rows:
            raise PushError(f"{readme}: dataset_info says {name}/{split} has {expected[split]} rows, the files "
                            f"hold {rows}; rebuild the folder with `mm-skin build`", ExitCode.BAD_INPUT)
    return counts


def _check_loads(root: Path, name: str) -> None:
    """The config loads with ``datasets.load_dataset`` (its first row, decoded)."""
    import datasets

    try:
        for split in datasets.load_dataset(str(root), name, streaming=True).values():
            # closed at once: a half-read stream left open until exit can abort the process there
            with contextlib.closing(iter(split)) as rows:
                row = next(rows)
            image = row.get("image") if "image" in row else (row.get("images") or [None])[0]
            if image is not None:
                image.load()
    except Exception as exc:
        raise PushError(f"{root}: config {name!r} does not load with datasets.load_dataset: "
                        f"{type(exc).__name__}: {exc}", ExitCode.BAD_INPUT) from None


def push_dataset_folder(folder: str | os.PathLike[str], repo_id: str, **push_options: Any) -> PushResult:
    """Validate a folder built by ``mm-skin build`` and upload it to the dataset repo ``repo_id``.

    ``push_options`` are those of :func:`push_folder` (private, revision, commit_message, token,
    endpoint). ONE commit; shards of an earlier build (``*.parquet`` no longer in the folder) are
    deleted in it; an unchanged folder makes no commit (``commit_url`` None).

    >>> push_dataset_folder("mm-skin", "me/mm-skin", private=True).commit_url  # doctest: +SKIP
    'https://huggingface.co/datasets/me/mm-skin/commit/...'
    """
    push_options.setdefault("commit_message", f"Upload MM-Skin (mm-skin {__version__})")
    return push_folder(folder, repo_id, repo_type="dataset", validate=lambda files: validate_folder(folder, files),
                       prune=lambda path: path.endswith(".parquet"), **push_options)


@dataclasses.dataclass(kw_only=True)
class DatasetPushOptions:
    """Options of ``mm-skin push``."""

    folder: str = dataclasses.field(metadata={"positional": True, "help": "the folder written by `mm-skin build`"})
    repo_id: str = dataclasses.field(metadata={"positional": True, "help": "dataset repo, e.g. your-name/mm-skin"})
    private: bool = dataclasses.field(
        default=False, metadata={"help": "create the repo private (recommended: research-only data)"})
    revision: str | None = dataclasses.field(
        default=None, metadata={"help": "branch to commit to (created from main if missing)"})
    commit_message: str | None = dataclasses.field(default=None, metadata={"help": "commit title"})


DATASET_PUSH_HELP = "validate a built folder and upload it to a Hub dataset repo in one commit"
DATASET_PUSH_DESCRIPTION = (
    "Validate FOLDER (card parses, shards match it, every config loads) and upload it to REPO_ID in "
    "ONE commit. Dot-files, dot-folders and symlinks leaving FOLDER are not uploaded (listed). The "
    "token comes from HF_TOKEN or `hf auth login` and is never printed. Pushing an unchanged folder "
    "makes no commit; a failed push leaves the repo at its previous commit."
)


def run_dataset_push(options: DatasetPushOptions) -> int:
    """``mm-skin push``: returns the exit code (0 ok, 2 folder/repo id refused, 4 push failed)."""
    return run_push("mm-skin push", options.folder, lambda: push_dataset_folder(
        options.folder, options.repo_id, private=options.private, revision=options.revision,
        commit_message=options.commit_message,
    ))


def register_cli(subparsers: Any) -> None:
    """Add ``mm-skin push`` to the sub-commands of the ``mm-skin`` CLI."""
    from mm_skin.cli import add_command

    add_command(subparsers, "push", DatasetPushOptions, run_dataset_push, DATASET_PUSH_HELP, DATASET_PUSH_DESCRIPTION)
