"""``skinvl push``: publish a SkinVL checkpoint folder (or a Space) to the Hub through :mod:`mm_skin.hub`.

What is the model's own lives here; the push itself (file selection, token and endpoint checks,
ONE commit with ``parent_commit``, no commit when nothing changed, scrubbed messages, exit codes)
is :func:`mm_skin.hub.push_folder`, the same as ``mm-skin push``. In order:

1. cheap checks of the folder (:func:`inspect_model_folder`: config, safetensors weights,
   processor/tokenizer files, the remote-code files that ``trust_remote_code`` loading needs,
   README.md metadata); the card is rendered (:mod:`skinvl.model_card`) when the folder has none
   or ``--results`` are given;
2. offline/token/endpoint checks (in :mod:`mm_skin.hub`);
3. a full load with ``AutoModelForImageTextToText`` and ``AutoProcessor`` (after ``import skinvl``),
   refusing missing/unexpected/mis-shaped weights (:func:`check_model_loads`);
4. ONE commit. Files on the branch that are not in the folder are deleted in it
   (``.gitattributes`` excepted) unless ``--keep-remote-files``.

``skinvl card FOLDER`` prints (or writes) the card step 1 would render, offline, without pushing.

``--repo-type space`` publishes a Space folder (such as ``skinvl demo --export-space`` writes)
instead: its README.md must name an ``sdk`` and, for gradio/streamlit, the app file must be there.

>>> push_model_folder("out/merged", "me/skinvl-ft", private=True).commit_url  # doctest: +SKIP
'https://huggingface.co/me/skinvl-ft/commit/...'
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mm_skin.cli import ExitCode, add_command
from mm_skin.hub import (
    FolderFiles,
    PushError,
    PushResult,
    check_repo_id,
    push_folder,
    run_push,
    select_files,
)
from skinvl.model_card import check_model_card, check_results_model, load_results, render_model_card

_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def _refuse(message: str) -> PushError:
    return PushError(message, ExitCode.BAD_INPUT)


# --------------------------------------------------------------------------- folder checks
@dataclasses.dataclass
class ModelFolder:
    """What the cheap checks learnt about a checkpoint folder."""

    path: Path
    files: list[str]  # relative POSIX paths that will be uploaded
    config: dict[str, Any]
    card_text: str | None  # README.md to upload when rendered (None = the folder's own)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(f"{path}: not valid UTF-8 JSON ({exc})") from None


def _read_config(folder: Path) -> dict[str, Any]:
    """``folder/config.json`` as a JSON object; a one-line :class:`PushError` otherwise."""
    config = _read_json(folder / "config.json")
    if not isinstance(config, dict):
        raise _refuse(f"{folder / 'config.json'}: expected a JSON object, found {type(config).__name__}")
    return config


def _check_weights(path: Path, names: set[str], skipped: dict[str, str]) -> None:
    """safetensors weights, every shard of the index present, no pickles."""
    if names & set(_PICKLE_WEIGHTS) or any(n.startswith("pytorch_model-") for n in names):
        raise _refuse(f"{path}: weights are pickled (pytorch_model*.bin); re-save with model.save_pretrained(folder) "
                      "to get safetensors, which the Hub and transformers prefer")
    if "model.safetensors.index.json" in names:
        index = _read_json(path / "model.safetensors.index.json")
        shards = sorted(set(((index if isinstance(index, dict) else {}).get("weight_map") or {}).values()))
        missing = [s for s in shards if s not in names]
        if not shards or missing:
            reasons = "; ".join(f"{s}: {skipped[s]}" for s in missing if s in skipped)
            raise _refuse(f"{path}/model.safetensors.index.json lists shard(s) that would not be uploaded: "
                          f"{missing or '(empty weight_map)'}" + (f" ({reasons})" if reasons else ""))
    elif "model.safetensors" not in names:
        reason = f" (model.safetensors: {skipped['model.safetensors']})" if "model.safetensors" in skipped else ""
        raise _refuse(f"{path}: no model.safetensors (or sharded index) to upload{reason}; save the weights with "
                      "save_pretrained")


def _check_remote_code(path: Path, config: dict[str, Any], names: set[str]) -> None:
    """Loading without our package needs auto_map + the module files next to the weights."""
    auto_map = config.get("auto_map") or {}
    for auto_class in ("AutoConfig", "AutoModelForImageTextToText"):
        if auto_class not in auto_map:
            raise _refuse(f"{path / 'config.json'}: auto_map has no {auto_class}, so the Hub copy could not be loaded "
                          "with trust_remote_code=True; save it with skinvl's save_pretrained (which registers the "
                          "auto classes)")
    for reference in auto_map.values():
        reference = reference[0] if isinstance(reference, list) else reference
        if reference and "--" not in reference and reference.split(".")[0] + ".py" not in names:
            raise _refuse(f"{path / 'config.json'}: auto_map refers to {reference.split('.')[0]}.py, which is not "
                          "in the folder")
    processor_file = path / "processor_config.json"
    if processor_file.is_file() and "AutoProcessor" not in (_read_json(processor_file).get("auto_map") or {}):
        warnings.warn(f"{processor_file} has no auto_map.AutoProcessor: without the skinvl package, "
                      "AutoProcessor.from_pretrained(..., trust_remote_code=True) on the Hub copy will not build "
                      "SkinVLProcessor (it falls back to the tokenizer alone)", UserWarning, stacklevel=3)


def inspect_model_folder(
    folder: str | Path,
    *,
    results: Sequence[str | Path] | None = None,
    repo_id: str = "user/model",
    base_model: str | None = None,
    datasets: str | list[str] | None = None,
    force: bool = False,
) -> ModelFolder:
    """Cheap structural checks of a checkpoint folder (no model load); raises :class:`PushError` (exit 2)."""
    path = Path(folder)
    selection = select_files(path)
    names = set(selection.files)
    skipped = {s.path: s.reason for s in selection.skipped}
    if "config.json" not in names:
        raise _refuse(f"{path}: config.json is missing; save the model with model.save_pretrained({str(path)!r})")
    config = _read_config(path)
    _check_weights(path, names, skipped)
    if not ({"processor_config.json", "preprocessor_config.json"} & names):
        raise _refuse(f"{path}: no processor_config.json / preprocessor_config.json; save the processor too: "
                      "processor.save_pretrained(folder)")
    if not ({"tokenizer.json", "tokenizer.model"} & names):
        raise _refuse(f"{path}: no tokenizer (tokenizer.json or tokenizer.model); save the processor too")
    if config.get("model_type") == "skinvl":
        _check_remote_code(path, config, names)
    card_text = None
    if results or "README.md" not in names:
        docs = load_results(results or [])
        check_results_model(docs, path, repo_id, force=force)  # another model's results: refused unless --force
        card_text = render_model_card(path, repo_id, config=config, results=docs,
                                      base_model=base_model, datasets=datasets)
        check_model_card(card_text, "rendered model card")
    else:
        check_model_card((path / "README.md").read_text(encoding="utf-8"), str(path / "README.md"))
    return ModelFolder(path=path, files=selection.files, config=config, card_text=card_text)


def check_model_loads(folder: str | Path) -> None:
    """Load the model and processor as a user would (after ``import skinvl``); refuse on any problem."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import skinvl  # noqa: F401 - registers SkinVL with the Auto classes

    path = Path(folder)
    try:
        # ignore_mismatched_sizes: report mis-shaped tensors by name instead of a bare RuntimeError
        model, info = AutoModelForImageTextToText.from_pretrained(
            str(path), output_loading_info=True, ignore_mismatched_sizes=True)
    except Exception as exc:
        raise _refuse(f"{path}: AutoModelForImageTextToText.from_pretrained failed: {type(exc).__name__}: {exc}") from None
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or ())
        if keys:
            problems.append(f"{kind.replace('_', ' ')}: {', '.join(keys[:5])}" + (" ..." if len(keys) > 5 else ""))
    if info.get("error_msgs"):
        problems.append("errors: " + "; ".join(map(str, info["error_msgs"]))[:500])
    if problems:
        raise _refuse(f"{path}: the weights do not match the configuration ({'; '.join(problems)})")
    del model
    try:
        AutoProcessor.from_pretrained(str(path))
    except Exception as exc:
        raise _refuse(f"{path}: AutoProcessor.from_pretrained failed: {type(exc).__name__}: {exc}") from None


def check_space_folder(files: FolderFiles) -> str:
    """A Space folder's README.md names its ``sdk`` (and the app file is there); returns the sdk."""
    from huggingface_hub import SpaceCard

    readme = files.root / "README.md"
    if "README.md" not in files.files:
        raise _refuse(f"{files.root}: no README.md; a Space needs one whose YAML header names its sdk "
                      "(e.g. `skinvl demo --export-space` writes it)")
    try:
        data = SpaceCard.load(readme, ignore_metadata_errors=False).data.to_dict()
    except Exception as exc:
        raise _refuse(f"{readme}: the Space card does not parse: {exc}") from None
    sdk = data.get("sdk")
    if sdk not in ("gradio", "streamlit", "docker", "static"):
        raise _refuse(f"{readme}: `sdk` is {sdk!r}; set it to gradio, streamlit, docker or static in the YAML header")
    app_file = data.get("app_file") or ("index.html" if sdk == "static" else "app.py")
    if sdk != "docker" and app_file not in files.files:
        raise _refuse(f"{readme}: app_file {app_file!r} is not in {files.root}")
    return sdk


# --------------------------------------------------------------------------- the push
def push_model_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    results: Sequence[str | Path] | None = None,
    base_model: str | None = None,
    datasets: str | list[str] | None = None,
    endpoint: str | None = None,
    delete_missing: bool = True,
    force: bool = False,
) -> PushResult:
    """Validate a SkinVL checkpoint folder and publish it to the model repo ``repo_id`` in ONE commit.

    ``results`` are ``results.json`` files from ``skinvl eval``; given, or when the folder has no
    README.md, the card is rendered (:func:`skinvl.model_card.render_model_card`). Raises
    :class:`mm_skin.hub.PushError` (``exit_code`` 2 when the folder is refused, 4 when the push
    failed; the repo then stays at its previous commit). ``commit_url`` is None when the repo
    already held exactly these files.
    """
    check_repo_id(repo_id, "model")  # before the card is rendered with it (push_folder checks again, cheaply)
    model_folder = inspect_model_folder(folder, results=results, repo_id=repo_id, base_model=base_model,
                                        datasets=datasets, force=force)
    return push_folder(
        folder, repo_id, repo_type="model", private=private, revision=revision, token=token, endpoint=endpoint,
        commit_message=commit_message or f"Upload {repo_id.split('/')[1]} with skinvl push",
        validate=lambda files: check_model_loads(model_folder.path),
        replace={"README.md": model_folder.card_text.encode()} if model_folder.card_text else None,
        prune=(lambda p: p != ".gitattributes") if delete_missing else None,
    )


def push_space_folder(
    folder: str | Path, repo_id: str, *, delete_missing: bool = True, **push_options: Any
) -> PushResult:
    """Publish a Space folder (README.md naming its ``sdk``, the app) to the Space ``repo_id`` in ONE commit.

    ``push_options`` are those of :func:`mm_skin.hub.push_folder` (private, revision, commit_message,
    token, endpoint).
    """
    sdk = check_space_folder(select_files(folder))
    push_options.setdefault("commit_message", f"Upload {repo_id.split('/')[-1]} with skinvl push")
    return push_folder(folder, repo_id, repo_type="space", space_sdk=sdk,
                       prune=(lambda p: p != ".gitattributes") if delete_missing else None, **push_options)


# --------------------------------------------------------------------------- CLI
@dataclasses.dataclass(kw_only=True)
class CardContentOptions:
    """What goes into a model card beyond the folder: shared by ``skinvl push`` and ``skinvl card``."""

    results: list[str] = dataclasses.field(default_factory=list, metadata={
        "metavar": "RESULTS_JSON", "help": "results.json file(s) from `skinvl eval`; fill the card's model-index and tables"})
    base_model: str | None = dataclasses.field(default=None, metadata={
        "help": "base_model recorded in the card (default: the one training_settings.json records, else none)"})
    dataset: list[str] = dataclasses.field(default_factory=list, metadata={
        "metavar": "REPO_ID", "help": "training dataset id(s) recorded in the card (default: the Hub ids training "
        "recorded, else none)"})
    force: bool = dataclasses.field(default=False, metadata={
        "help": "accept --results made with another model than FOLDER's (the card says so); refused otherwise"})


@dataclasses.dataclass(kw_only=True)
class PushOptions(CardContentOptions):
    """Options of ``skinvl push``."""

    folder: str = dataclasses.field(metadata={
        "positional": True, "help": "checkpoint folder written by save_pretrained (model + processor), or a Space folder"})
    repo_id: str = dataclasses.field(metadata={"positional": True, "help": "target repository, NAMESPACE/NAME"})
    repo_type: str = dataclasses.field(default="model", metadata={
        "choices": ["model", "space"], "help": "publish a model checkpoint or a Space (e.g. from `skinvl demo --export-space`)"})
    private: bool = dataclasses.field(default=False, metadata={"help": "create the repository as private"})
    revision: str | None = dataclasses.field(
        default=None, metadata={"help": "branch to commit to (created from main if missing)"})
    commit_message: str | None = dataclasses.field(default=None, metadata={"help": "commit title"})
    endpoint: str | None = dataclasses.field(
        default=None, metadata={"help": "Hub URL (default: HF_ENDPOINT or https://huggingface.co)"})
    keep_remote_files: bool = dataclasses.field(
        default=False, metadata={"help": "do not delete files of the branch that are absent from FOLDER"})


def run(options: PushOptions) -> int:
    """``skinvl push``: returns the exit code (0 ok, 2 folder/repo id refused, 4 push failed)."""
    common = dict(private=options.private, revision=options.revision, commit_message=options.commit_message,
                  endpoint=options.endpoint, delete_missing=not options.keep_remote_files)
    if options.repo_type == "space":
        if options.results or options.base_model or options.dataset:
            print("skinvl push: refused: --results, --base-model and --dataset describe a model; a Space "
                  "has its own README.md", file=sys.stderr)
            return int(ExitCode.BAD_INPUT)
        return run_push("skinvl push", options.folder,
                        lambda: push_space_folder(options.folder, options.repo_id, **common))
    return run_push("skinvl push", options.folder, lambda: push_model_folder(
        options.folder, options.repo_id, results=options.results or None, base_model=options.base_model,
        datasets=options.dataset or None, force=options.force, **common))


@dataclasses.dataclass(kw_only=True)
class CardOptions(CardContentOptions):
    """Options of ``skinvl card``."""

    folder: str = dataclasses.field(metadata={
        "positional": True, "help": "checkpoint folder (config.json, safetensors weights, training_settings.json)"})
    repo_id: str | None = dataclasses.field(default=None, metadata={
        "help": "the Hub id the card's loading code names (default: OWNER/<folder name>)"})
    out: str | None = dataclasses.field(default=None, metadata={
        "metavar": "DIR", "help": "write DIR/README.md (DIR may be FOLDER itself) instead of printing the card"})
    overwrite: bool = dataclasses.field(default=False, metadata={"help": "with --out: replace an existing README.md"})


def preview_card(options: CardOptions) -> str:
    """The card ``skinvl push`` would render for ``options.folder``, offline; raises :class:`PushError` (exit 2)."""
    folder = Path(options.folder)
    if not (folder / "config.json").is_file():
        raise _refuse(f"{folder}: no config.json; give a checkpoint folder written by save_pretrained "
                      "(or `skinvl convert`)")
    config = _read_config(folder)
    repo_id = options.repo_id or f"OWNER/{folder.resolve().name}"
    check_repo_id(repo_id, "model")
    docs = load_results(options.results)
    check_results_model(docs, folder, repo_id, force=options.force)
    text = render_model_card(folder, repo_id, config=config, results=docs, base_model=options.base_model,
                             datasets=options.dataset or None)
    check_model_card(text, "rendered model card")
    return text


def run_card(options: CardOptions) -> int:
    """``skinvl card``: print the rendered card, or write it to ``--out``/README.md; returns the exit code."""
    from mm_skin.cli import print_problem

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            text = preview_card(options)
        except PushError as exc:
            print_problem(f"skinvl card: {exc}")
            return int(exc.exit_code)
        finally:
            for warning in caught:
                print_problem(f"skinvl card: {warning.message}", "warning")
    if options.out is None:
        sys.stdout.write(text)
        return int(ExitCode.OK)
    target = Path(options.out) / "README.md"
    if target.is_symlink() or (target.exists() and not (options.overwrite and target.is_file())):
        print_problem(f"skinvl card: {target} exists; pass --overwrite to replace it, or another --out")
        return int(ExitCode.BAD_INPUT)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return int(ExitCode.OK)


def register_cli(subparsers: Any) -> None:
    """Add the ``push`` sub-command (publishes a checkpoint folder or a Space to the Hub) and ``card`` (previews a card)."""
    add_command(
        subparsers, "card", CardOptions, run_card,
        help="preview the model card `skinvl push` would render for a checkpoint folder (offline)",
        description=(
            "Render README.md for FOLDER from cards/model_card.md.jinja, as `skinvl push` would: architecture "
            "from config.json and the safetensors headers, training settings from training_settings.json, "
            "--results tables and model-index. Nothing is read from or sent to the network. Prints the card, "
            "or writes it to --out DIR/README.md."
        ),
    )
    add_command(
        subparsers, "push", PushOptions, run,
        help="validate a SkinVL checkpoint folder (or a Space) and publish it to the Hub in one commit",
        description=(
            "Validate FOLDER (config, safetensors weights, processor, remote-code files, card; the model must "
            "load with AutoModelForImageTextToText), render README.md from cards/model_card.md.jinja if the "
            "folder has none or --results is given, then upload it to REPO_ID in ONE commit (large files "
            "through LFS). Dot-files, dot-folders and symlinks leaving FOLDER are not uploaded (listed). An "
            "unchanged folder makes no commit; a failed push leaves the repo at its previous commit. The token "
            "comes from HF_TOKEN or `hf auth login` and is never printed."
        ),
    )
