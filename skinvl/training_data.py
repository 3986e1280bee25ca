"""Training data for ``skinvl train``: every source becomes one conversation schema.

A split is loaded from a Hub id, a data folder (``mm-skin build`` output, or plain Parquet) or a
``save_to_disk`` folder; its rows, in the ``vqa`` schema (image, question, answer) or the
``instruct`` schema (images, messages), become ``images`` + ``messages`` rows: the conversational
vision format that TRL's ``SFTTrainer`` and ``processor.apply_chat_template`` take. Every row is
validated; a bad one raises ``ValueError`` naming the dataset and the row. Batches are TRL's
vision-language collator's, under the chat template chosen for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def load_conversations(
    data: Sequence[str],
    configs: Sequence[str | None] = (),
    *,
    split: str = "train",
    mix: Sequence[float] | None = None,
    mix_stopping: str = "all_exhausted",
    seed: int = 42,
) -> datasets.Dataset:
    """Load and combine the training datasets as one conversation dataset.

    ``configs`` gives one config name for all datasets or one per dataset (empty: each dataset's
    default). Without ``mix`` the datasets are concatenated (every row once, as the authors' PubMM
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
    parts = [
        to_conversations(load_source(s, c, split), s) for s, c in zip(data, configs, strict=True)
    ]
    for spec, part in zip(data, parts, strict=True):
        if len(part) == 0:
            raise ValueError(f"{spec}: split {split!r} is empty")
    if mix is None:
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    if len(mix) != len(data) or any(p <= 0 for p in mix):
        raise ValueError(
            f"--mix {','.join(map(str, mix))}: need {len(data)} positive proportions (one "
            "per --data, e.g. --mix 0.7,0.3); leave out a dataset you do not want"
        )
    probabilities = [p / sum(mix) for p in mix]
    return datasets.interleave_datasets(
        parts, probabilities=probabilities, seed=seed, stopping_strategy=mix_stopping
    )


# --------------------------------------------------------------------------------------------
# Batches: the training chat template and TRL's collator
# --------------------------------------------------------------------------------------------


def training_chat_template(processor: Any, name: str = TRAINING_TEMPLATE, file: str | None = None) -> str:
    """The chat template to train with: ``file``, else the processor's template ``name`` (or its
    only one). It must mark assistant turns with ``{% generation %}``; a known template without
    the markers (Llama 3, Qwen, Gemma... see TRL's ``get_training_chat_template``) is swapped
    for TRL's marked version.

    TRL's collator tokenizes the rendered chat without special tokens (templates usually write
    the BOS themselves); SkinVL's templates leave the BOS to the tokenizer, as the authors'
    ``tokenizer_image_token`` did, so it is added to the template here when the tokenizer would
    add one: training sequences then start as inference ones do.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if file is not None:
        if not Path(file).is_file() or not file.endswith((".jinja", ".j2")):
            raise ValueError(
                f"--chat-template {file}: not a .jinja/.j2 file; pass a Jinja chat template"
            )
        template, source = Path(file).read_text(encoding="utf-8"), f"--chat-template {file}"
    else:
        templates = processor.chat_template
        if not isinstance(templates, dict):
            templates = {name: templates} if templates else {}
        if name not in templates:
            raise ValueError(
                f"the processor has no chat template {name!r} (it has "
                f"{sorted(templates) or 'none'}); use --template "
                f"{' or --template '.join(PROMPT_TEMPLATES)} on a SkinVL processor, or "
                "--chat-template FILE"
            )
        template, source = templates[name], f"the model's chat template {name!r}"
        if not has_generation_markers(template) and isinstance(processor.chat_template, str):
            try:
                template = get_training_chat_template(processor) or template
            except ValueError:  # not a template TRL knows how to mark
                pass
    if not has_generation_markers(template):
        raise ValueError(
            f"{source} has no {{% generation %}} markers, so the assistant tokens cannot be found "
            "for the loss; pass --chat-template FILE with the assistant turns wrapped in "
            "{% generation %}...{% endgeneration %}"
        )
    tokenizer = processor.tokenizer
    if tokenizer.bos_token and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        probe = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
        rendered = processor.apply_chat_template(probe, chat_template=template)
        if not rendered.startswith(tokenizer.bos_token):
            template = "{{- bos_token -}}" + template
    return template


def vision_collator(processor: Any, chat_template: str, max_length: int | None = 2048) -> Any:
    """TRL's vision-language collator with assistant-only loss, as ``SFTTrainer`` would build it.

    Labels are the input ids on assistant tokens and ``IGNORE_INDEX`` elsewhere (prompt, system,
    image and padding tokens). Sequences longer than ``max_length`` are cut at the end; a cut
    through an image's tokens is a ``ValueError`` that names ``--max-length``.
    """
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

    return SkinVLCollator(
        processor=processor,
        max_length=max_length,
        assistant_only_loss=True,
        chat_template=chat_template,
    )
