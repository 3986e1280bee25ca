"""SkinVL's prompt templates, their names and its image modes: data only, no imports.

``processing_skinvl`` builds the processor from these; the command lines name them in ``--help``
without importing transformers. Copied next to saved checkpoints with the other module files (for
``trust_remote_code`` loading), so it imports nothing.
"""

from __future__ import annotations

VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# Renders a message's content: image items first (one "<image>\n" each), then the text items
# joined by newlines. A plain string content is used as is.
_RENDER_MACRO = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}"
    "{%- for item in content if item['type'] == 'image' -%}{{ '<image>\\n' }}{%- endfor -%}"
    "{%- for item in content if item['type'] == 'text' -%}"
    "{%- if not loop.first -%}{{ '\\n' }}{%- endif -%}{{ item['text'] }}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
)

# LLaVA conv_mistral_instruct (sep_style LLAMA_2, empty system): "[INST] {u} [/INST]" per user turn;
# an answered turn continues with " {a}</s>" (Mistral's own convention: no space before </s>).
MISTRAL_INSTRUCT_TEMPLATE = _RENDER_MACRO + (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system = render(messages[0]['content']) -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{%- if loop.first and system -%}"
    "{{ '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + render(message['content']) + ' [/INST]' }}"
    "{%- else -%}{{ '[INST] ' + render(message['content']) + ' [/INST]' }}{%- endif -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ ' ' }}{% generation %}{{ render(message['content']) + eos_token }}{% endgeneration %}"
    "{%- else -%}{{ raise_exception('mistral_instruct: unsupported role ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

# LLaVA conv_vicuna_v1 (sep_style TWO, sep " ", sep2 "</s>"):
# "{system} USER: {u} ASSISTANT: {a}</s>USER: {u2} ASSISTANT:".
VICUNA_V1_TEMPLATE = _RENDER_MACRO + (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system = render(messages[0]['content']) -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set system = '" + VICUNA_V1_SYSTEM.replace("'", "\\'") + "' -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}"
    "{{ system + ' ' }}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}{{ 'USER: ' + render(message['content']) + ' ' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'ASSISTANT: ' }}{% generation %}{{ render(message['content']) + eos_token }}{% endgeneration %}"
    "{%- else -%}{{ raise_exception('vicuna_v1: unsupported role ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)

CHAT_TEMPLATES = {"mistral_instruct": MISTRAL_INSTRUCT_TEMPLATE, "vicuna_v1": VICUNA_V1_TEMPLATE}
#: Prompt template names a SkinVL checkpoint may declare (as in the authors' LLaVA code base);
#: "mistral_instruct" is the paper's evaluation prompt, "vicuna_v1" its training prompt.
PROMPT_TEMPLATES = tuple(CHAT_TEMPLATES)
DEFAULT_TEMPLATE = "mistral_instruct"
TRAINING_TEMPLATE = "vicuna_v1"  # LLaVA-Med's finetune_lora.sh --version v1
#: Image preparation: "pad" = expand to a square in the CLIP mean colour (LLaVA training);
#: "crop" = shortest-edge resize + centre crop (what the authors' evaluation scripts fed the model).
IMAGE_ASPECT_RATIOS = ("pad", "crop")


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` when it is one of ``choices``, else raise a ValueError naming ``what``."""
    if value not in choices:
        raise ValueError(f"{what}={value!r} is not supported; use one of {list(choices)}.")
    return value


def chat_templates(default: str = DEFAULT_TEMPLATE) -> dict[str, str]:
    """Return the processor's named chat templates with ``default`` also stored as "default"."""
    check_choice("template", default, PROMPT_TEMPLATES)
    return {"default": CHAT_TEMPLATES[default], **CHAT_TEMPLATES}


__all__ = [
    "CHAT_TEMPLATES", "PROMPT_TEMPLATES", "DEFAULT_TEMPLATE", "TRAINING_TEMPLATE", "IMAGE_ASPECT_RATIOS",
    "check_choice", "chat_templates", "VICUNA_V1_SYSTEM", "MISTRAL_INSTRUCT_TEMPLATE", "VICUNA_V1_TEMPLATE",
]
