"""LLaVA conversations -> chat messages: the one place for that conversion.

The authors' instruction data (``Dataframe/Pretrain/vqa_MM.json``) is LLaVA's format:
``{"image": ..., "conversations": [{"from": "human", "value": "<image>\\n..."}, ...]}``.
The ``instruct`` config stores it as chat ``messages`` with typed content, the form TRL's
``SFTTrainer`` and ``processor.apply_chat_template`` take for vision SFT.

>>> llava_to_messages([{"from": "human", "value": "<image>\\nWhat is it?"}, {"from": "gpt", "value": "A naevus."}])[0]
{'role': 'user', 'content': [{'type': 'image', 'text': None}, {'type': 'text', 'text': 'What is it?'}]}
"""

from __future__ import annotations

from typing import Any

#: LLaVA speaker -> chat role
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
IMAGE_MARK = "<image>"


def llava_to_messages(conversations: Any) -> list[dict[str, Any]]:
    """Convert LLaVA ``conversations`` to chat ``messages`` with typed content.

    ``[{"from": "human", "value": "<image>\\nWhat is shown?"}, {"from": "gpt", "value": "A nevus."}]``
    becomes ``[{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text",
    "text": "What is shown?"}]}, {"role": "assistant", "content": [{"type": "text", "text":
    "A nevus."}]}]`` - the form TRL's SFTTrainer and ``processor.apply_chat_template`` take for
    vision SFT (the image itself is in the row's ``images`` column). The image entry goes where
    the ``<image>`` marker was (before or after the text); with no marker it opens the first user
    turn, as LLaVA's own preprocessing does. Raises ValueError on anything malformed.
    """
    if not isinstance(conversations, list) or not conversations:
        raise ValueError("'conversations' is missing or not a non-empty list")
    messages = []
    marks = 0
    for turn_index, turn in enumerate(conversations):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ValueError(f"turn {turn_index} is not an object with 'from' and 'value'")
        role = ROLES.get(str(turn["from"]).strip().lower())
        if role is None:
            raise ValueError(f"turn {turn_index} has unknown speaker {turn['from']!r} (expected human/gpt)")
        value = turn["value"]
        if not isinstance(value, str):
            raise ValueError(f"turn {turn_index} 'value' is not a string")
        n = value.count(IMAGE_MARK)
        marks += n
        if n and role != "user":
            raise ValueError(f"turn {turn_index}: {IMAGE_MARK} in a {role} turn")
        if n:
            before, _, after = value.partition(IMAGE_MARK)
            text = (before + after).strip()
            content = [{"type": "image", "text": None}]
            if text:
                item = {"type": "text", "text": text}
                content = content + [item] if not before.strip() else [item] + content
        else:
            text = value.strip()
            if not text:
                raise ValueError(f"turn {turn_index} ({role}) is empty")
            content = [{"type": "text", "text": text}]
        messages.append({"role": role, "content": content})
    if marks > 1:
        raise ValueError(f"{marks} {IMAGE_MARK} markers; the LLaVA format has one image per conversation")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant (gpt) turn")
    if not any(m["role"] == "user" for m in messages):
        raise ValueError("no user (human) turn")
    if marks == 0:
        first_user = next(m for m in messages if m["role"] == "user")
        first_user["content"].insert(0, {"type": "image", "text": None})
    return messages
