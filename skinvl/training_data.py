"""Training data for ``skinvl train``: every source becomes one conversation schema.

A split is loaded from a Hub id, a data folder (``mm-skin build`` output, or plain Parquet) or a
``save_to_disk`` folder; its rows, in the ``vqa`` schema (image, question, answer) or the
``instruct`` schema (images, messages), become ``images`` + ``messages`` rows: the conversational
vision format that TRL's ``SFTTrainer`` and ``processor.apply_chat_template`` take. Every row is
validated; a bad one raises ``ValueError`` naming the dataset and the row. Rows whose image is
also a test image (``image_in_test``) are left out unless asked for, and counted. Batches are
TRL's vision-language collator's, under the loss masking chosen for the model's chat template:
assistant turns where it has ``{% generation %}`` markers, else prompt-completion pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .processing_skinvl import PROMPT_TEMPLATES, TRAINING_TEMPLATE

if TYPE_CHECKING:  # heavy imports stay out of ``skinvl --help``
    import datasets

MIX_STOPPING = ("all_exhausted", "first_exhausted", "all_exhausted_without_replacement")
IGNORE_INDEX = -100  # the label TRL's collator gives every token that is not learned


def conversation_features() -> datasets.Features:
    """The canonical training schema: ``images`` (undecoded) + ``messages`` with typed content."""
    from datasets import Features, Image, List, Value

    content = List({"type": Value("string"), "text": Value("string")})
    return Features(
        {
            "images": List(Image(decode=False)),
            "messages": List({"role": Value("string"), "content": content}),
        }
    )


def load_source(spec: str, config: str | None, split: str) -> datasets.Dataset:
    """Load one dataset split from a Hub id, a data folder, or a ``save_to_disk`` folder.

    A folder without named configs (e.g. plain Parquet) is accepted for any ``config``; its columns
    decide the schema.
    """
    import datasets

    path = Path(spec)
    if path.is_dir() and any((path / f).exists() for f in ("state.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(
                    f"{spec}: no split {split!r} (splits: {sorted(loaded)}); pass --split"
                )
            loaded = loaded[split]
        return loaded
    try:
        return datasets.load_dataset(spec, config, split=split)
    except FileNotFoundError as err:  # no such folder, and no such Hub dataset (or offline)
        raise ValueError(f"--data {spec}: {str(err).splitlines()[0]} Give a folder `mm-skin build` wrote, "
                         "a save_to_disk folder or a Hub dataset id") from err
    except ValueError as err:
        message = str(err)
        if config is not None and "not found" in message and "'default'" in message:
            # A folder of plain files has only the implicit default config.
            try:
                return datasets.load_dataset(spec, split=split)
            except Exception as fallback:
                raise ValueError(
                    f"{spec}: {message}, and its default config does not load either "
                    f"({type(fallback).__name__}); give the folder a README.md with a `configs:` "
                    "block (as `mm-skin build` writes) or point --data at one config's files"
                ) from fallback
        hint = "; pass --split" if "split" in message.lower() else ""
        raise ValueError(f"{spec} (config {config!r}, split {split!r}): {message}{hint}") from err


def _schema_of(dataset: datasets.Dataset, spec: str) -> str:
    columns = set(dataset.column_names)
    if {"images", "messages"} <= columns:
        return "instruct"
    if {"image", "question", "answer"} <= columns:
        return "vqa"
    raise ValueError(
        f"{spec}: columns {sorted(columns)} match neither the vqa schema (image, question, answer) "
        "nor the instruct schema (images, messages); pass --config vqa or --config instruct"
    )


def _vqa_to_conversation(row: dict[str, Any], index: int, spec: str) -> dict[str, Any]:
    question, answer = row["question"], row["answer"]
    for name, value in (("question", question), ("answer", answer)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                f"{spec}: row {index} has {name}={value!r}; every vqa row needs a non-empty "
                f"{name} (fix or drop the row)"
            )
    if row["image"] is None:
        raise ValueError(f"{spec}: row {index} has no image; drop the row or add its image")
    return {
        "images": [row["image"]],
        "messages": [
            {
                "role": "user",
                # image first, as LLaVA's "<image>\n{question}"
                "content": [{"type": "image", "text": None}, {"type": "text", "text": question}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
    }


def _normalize_instruct(row: dict[str, Any], index: int, spec: str) -> dict[str, Any]:
    images = list(row["images"] or [])
    messages = []
    image_items = 0
    for turn, message in enumerate(row["messages"] or []):
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise ValueError(
                f"{spec}: row {index}, message {turn} has role {role!r}; expected system, user "
                "or assistant"
            )
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        items = []
        for item in content or []:
            kind = item.get("type")
            if kind == "image":
                image_items += 1
                items.append({"type": "image", "text": None})
            elif kind == "text":
                items.append({"type": "text", "text": item.get("text") or ""})
            else:
                raise ValueError(
                    f"{spec}: row {index}, message {turn} has a content item of type {kind!r}; "
                    "expected 'image' or 'text'"
                )
        messages.append({"role": role, "content": items})
    if image_items != len(images):
        raise ValueError(
            f"{spec}: row {index} has {len(images)} image(s) but {image_items} image item(s) in "
            "its messages; each image needs one {'type': 'image'} content item, in order"
        )
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{spec}: row {index} has no assistant message, so nothing to learn")
    return {"images": images, "messages": messages}


def to_conversations(dataset: datasets.Dataset, spec: str) -> datasets.Dataset:
    """Turn a vqa- or instruct-schema split into the canonical schema, validating every row.

    Images pass through undecoded (no re-encoding); bad rows raise with the dataset and row index.
    """
    from datasets import Image, List

    schema = _schema_of(dataset, spec)
    if schema == "vqa":
        dataset = dataset.cast_column("image", Image(decode=False))
        convert = _vqa_to_conversation
    else:
        dataset = dataset.cast_column("images", List(Image(decode=False)))
        convert = _normalize_instruct
    converted = dataset.map(
        convert,
        with_indices=True,
        fn_kwargs={"spec": spec},
        remove_columns=dataset.column_names,
        features=conversation_features(),
        desc=f"{spec}: {schema} rows -> conversations",
    )
    return converted.cast_column("images", List(Image()))


TEST_IMAGE_COLUMN = "image_in_test"  # the vqa config's flag: this row's image is a test image


@dataclass
class TrainingData:
    """The combined training rows, and per ``--data`` how many rows showing a test image were left
    out (``None``: that source has no ``image_in_test`` column, so nothing could be checked)."""

    rows: datasets.Dataset
    test_image_rows_left_out: dict[str, int | None]


def leave_out_test_images(dataset: datasets.Dataset) -> tuple[datasets.Dataset, int | None]:
    """``dataset`` without the rows whose image is also a test image, and how many were left out.

    The filter the dataset card documents (``not row["image_in_test"]``); a split without that
    column is returned whole, with ``None`` for the count.
    """
    if TEST_IMAGE_COLUMN not in dataset.column_names:
        return dataset, None
    kept = dataset.filter(lambda in_test: not in_test, input_columns=TEST_IMAGE_COLUMN,
                          desc="leaving out rows whose image is a test image")  # fmt: skip
    return kept, len(dataset) - len(kept)


def load_conversations(
    data: Sequence[str],
    configs: Sequence[str | None] = (),
    *,
    split: str = "train",
    mix: Sequence[float] | None = None,
    mix_stopping: str = "all_exhausted",
    seed: int = 42,
    include_test_images: bool = False,
) -> TrainingData:
    """Load and combine the training datasets as one conversation dataset.

    ``configs`` gives one config name for all datasets or one per dataset (empty: each dataset's
    default). Rows whose image is also a test image (``image_in_test``, the ``vqa`` config's
    column) are left out unless ``include_test_images``; the counts come back with the rows.
    Without ``mix`` the datasets are concatenated (every row once, as the authors' PubMM
    mix). With ``mix`` (one proportion per dataset, normalised to sum 1) rows are drawn with those
    probabilities by ``datasets.interleave_datasets``; ``mix_stopping="all_exhausted"`` (default)
    goes on until every dataset has been seen in full, oversampling the smaller ones,
    ``"first_exhausted"`` stops when the first runs out.
    """
    import datasets

    if not data:
        raise ValueError("no training data: pass --data at least once")
    configs = list(configs) or [None]
    if len(configs) == 1:
        configs = configs * len(data)
    if len(configs) != len(data):
        raise ValueError(
            f"{len(configs)} --config values for {len(data)} --data values; give one for all "
            "or one per --data, in the same order"
        )
    parts, left_out = [], {}
    for spec, config in zip(data, configs, strict=True):
        source = load_source(spec, config, split)
        if not include_test_images:
            source, left_out[spec] = leave_out_test_images(source)
        part = to_conversations(source, spec)
        if len(part) == 0:
            raise ValueError(f"{spec}: split {split!r} is empty" + (
                f" once its {left_out[spec]} rows showing test images are left out; pass "
                "--include-test-images to train on them" if left_out.get(spec) else ""))  # fmt: skip
        parts.append(part)
    if mix is None:
        rows = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        return TrainingData(rows, left_out)
    if len(mix) != len(data) or any(p <= 0 for p in mix):
        raise ValueError(
            f"--mix {','.join(map(str, mix))}: need {len(data)} positive proportions (one "
            "per --data, e.g. --mix 0.7,0.3); leave out a dataset you do not want"
        )
    probabilities = [p / sum(mix) for p in mix]
    rows = datasets.interleave_datasets(
        parts, probabilities=probabilities, seed=seed, stopping_strategy=mix_stopping
    )
    return TrainingData(rows, left_out)


# --------------------------------------------------------------------------------------------
# Batches: the loss mask, the training chat template and TRL's collator
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossMasking:
    """How the loss is kept to the answers, and the chat template that renders the rows.

    ``assistant_only``: conversations rendered with ``template``, whose ``{% generation %}``
    markers mark the assistant tokens (TRL's ``assistant_only_loss``). ``completion_only``: the
    template has no markers, so rows become prompt-completion pairs (:func:`to_prompt_completion`)
    and only the completion tokens are learned (TRL's ``completion_only_loss``); ``template`` is
    ``None`` for a model prompted with bare text (PaliGemma: its processor's prefix/suffix format).
    ``source`` says where the template came from, for the run record.
    """

    kind: Literal["assistant_only", "completion_only"]
    template: str | None
    source: str


def loss_masking(
    processor: Any, name: str = TRAINING_TEMPLATE, file: str | None = None, *, bare: bool = False
) -> LossMasking:
    """The loss masking to train with: ``file``, else the processor's template ``name`` (or its
    only one); with ``{% generation %}`` markers it is ``assistant_only``. A known template without
    the markers (Llama 3, Qwen, Gemma... see TRL's ``get_training_chat_template``) is swapped for
    TRL's marked version; any other template, or none at all for a model prompted with bare text
    (``bare``), is ``completion_only``.

    TRL's collator tokenizes the rendered chat without special tokens (templates usually write
    the BOS themselves); SkinVL's templates leave the BOS to the tokenizer, as the authors'
    ``tokenizer_image_token`` did, so it is added to the template here when the tokenizer would
    add one: training sequences then start as inference ones do.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    from .inference.prompts import read_template_file

    if file is not None:
        if not Path(file).is_file() or not file.endswith((".jinja", ".j2")):
            raise ValueError(
                f"--chat-template {file}: not a .jinja/.j2 file; pass a Jinja chat template"
            )
        template, source = read_template_file(file), f"--chat-template {Path(file).name}"
    else:
        templates = processor.chat_template
        if not isinstance(templates, dict):
            templates = {name: templates} if templates else {}
        if not templates and bare:
            return LossMasking("completion_only", None, "none (bare prompt: the processor's prefix/suffix format)")
        if name not in templates:
            raise ValueError(
                f"the processor has no chat template {name!r} (it has "
                f"{sorted(templates) or 'none'}); use --template "
                f"{' or --template '.join(PROMPT_TEMPLATES)} on a SkinVL processor, or "
                "--chat-template FILE"
            )
        named = f" {name!r}" if isinstance(processor.chat_template, dict) else ""
        template, source = templates[name], f"the model's chat template{named}"
        if not has_generation_markers(template) and isinstance(processor.chat_template, str):
            try:
                marked = get_training_chat_template(processor)
            except ValueError:  # not a template TRL knows how to mark
                marked = None
            if marked:
                template, source = marked, f"TRL's training version of {source}"
    kind = "assistant_only" if has_generation_markers(template) else "completion_only"
    return LossMasking(kind, _with_tokenizer_bos(processor, template), source)


def _with_tokenizer_bos(processor: Any, template: str) -> str:
    """``template``, starting with the BOS when the tokenizer adds one and the template does not."""
    tokenizer = processor.tokenizer
    if tokenizer.bos_token and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        probe = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
        rendered = processor.apply_chat_template(probe, chat_template=template)
        if not rendered.startswith(tokenizer.bos_token):
            return "{{- bos_token -}}" + template
    return template


def to_prompt_completion(conversations: datasets.Dataset, *, bare: bool = False) -> datasets.Dataset:
    """Conversation rows as prompt-completion rows, for ``completion_only`` loss masking.

    The rule: one example per assistant turn. Its completion is that turn; its prompt is every
    message before it (earlier answers included), with the images those messages show. A
    two-turn instruct row thus becomes two examples, and each answer is learned once. With
    ``bare`` (a model prompted with bare text) prompt and completion are plain text: the texts
    of the earlier messages joined by newlines, and the answer.
    """
    from datasets import Features, Image, List, Value

    messages = conversation_features()["messages"]
    text_or_chat = Value("string") if bare else messages
    features = Features({"images": List(Image(decode=False)), "prompt": text_or_chat,
                         "completion": text_or_chat})  # fmt: skip

    def split_turns(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"images": [], "prompt": [], "completion": []}
        for images, turns in zip(batch["images"], batch["messages"], strict=True):
            for i, turn in enumerate(turns):
                if turn["role"] != "assistant":
                    continue
                prompt = turns[:i]
                shown = sum(item["type"] == "image" for m in prompt for item in m["content"])
                out["images"].append(images[:shown])
                if bare:
                    out["prompt"].append("\n".join(_text_of(m) for m in prompt))
                    out["completion"].append(_text_of(turn))
                else:
                    out["prompt"].append(prompt)
                    out["completion"].append([turn])
        return out

    undecoded = conversations.cast_column("images", List(Image(decode=False)))
    pairs = undecoded.map(split_turns, batched=True, remove_columns=undecoded.column_names,
                          features=features, desc="conversations -> prompt-completion")  # fmt: skip
    return pairs.cast_column("images", List(Image()))


def _text_of(message: dict[str, Any]) -> str:
    return "".join(item["text"] or "" for item in message["content"] if item["type"] == "text")


def vision_collator(processor: Any, masking: LossMasking, max_length: int | None = 2048) -> Any:
    """TRL's vision-language collator, as ``SFTTrainer`` would build it for ``masking``.

    Labels are the input ids on the learned tokens (assistant turns, or completions) and
    ``IGNORE_INDEX`` elsewhere (prompt, system, image and padding tokens). Sequences longer than
    ``max_length`` are cut at the end; a cut through an image's tokens is a ``ValueError`` that
    names ``--max-length``. Prompt-completion rows are rendered with ``masking.template``; rows
    of a model prompted with bare text go through its processor's ``suffix`` (PaliGemma's own
    prefix/suffix format: the suffix, with an EOS, is what is learned).
    """
    import copy

    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    class SkinVLCollator(DataCollatorForVisionLanguageModeling):
        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            try:
                return super().torch_call(examples)
            except ValueError as err:  # the processor's check of image tokens after truncation
                if "token count" not in str(err):
                    raise
                raise ValueError(
                    f"a conversation has image tokens beyond --max-length {self.max_length}; raise "
                    "--max-length or move the image to the first turn"
                ) from err

        def _collate_prompt_completion(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            if masking.template is not None:
                return super()._collate_prompt_completion(examples)
            return self.processor(
                images=[example["images"] for example in examples],
                text=[example["prompt"] for example in examples],
                suffix=[example["completion"] for example in examples],
                padding=True, truncation=self.max_length is not None, max_length=self.max_length,
                return_tensors="pt",
            )  # fmt: skip

    if masking.kind == "completion_only" and masking.template is not None:
        # TRL renders prompt-completion rows with the processor's own template: give it ours
        processor = copy.copy(processor)
        processor.chat_template = masking.template
    return SkinVLCollator(
        processor=processor,
        max_length=max_length,
        assistant_only_loss=masking.kind == "assistant_only",
        completion_only_loss=masking.kind == "completion_only",
        chat_template=masking.template if masking.kind == "assistant_only" else None,
    )
