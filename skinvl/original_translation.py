"""The tensors the authors' format lacks, made ONE way for the loader and the converter.

An authors' ``llava_mistral`` checkpoint becomes SkinVL through four changes; the key renames are
:func:`skinvl.original_format.original_key_mapping`, the other three are here:

* ``<image>`` rows: the embedding and ``lm_head`` get one row per added token, the mean of the
  existing rows (:func:`with_image_token_rows`); the embedding row is never used (image features
  replace it) and the ``lm_head`` row makes the image token's logit the mean logit, so greedy
  decoding never picks it;
* the identity projector layer: a ``linear`` projector becomes LLaVA's two layers with an
  identity second layer (:func:`identity_projector`);
* the CLIP tower: a CLIP checkpoint's vision weights renamed into SkinVL's tower
  (:func:`vision_tower_key`).

``original_loading`` applies them to a model in memory, ``convert`` to tensors streamed to disk.
"""

from __future__ import annotations

from typing import Any

# SkinVL parameters that grow by the <image> row(s).
RESIZED = ("model.language_model.embed_tokens.weight", "lm_head.weight")
IDENTITY_LAYER = "model.multi_modal_projector.linear_2"
VISION_TOWER = "model.vision_tower."
# CLIPModel parts that are not the vision tower, and a buffer that is recomputed.
_CLIP_NOT_VISION = ("text_model.", "visual_projection.", "text_projection.", "logit_scale")
_CLIP_VISION_PREFIX = "vision_model."


def with_image_token_rows(weight: Any, rows: int) -> Any:
    """``weight`` (rows x hidden) grown to ``rows`` rows; the new ones are the mean of the old ones."""
    import torch

    extra = rows - weight.shape[0]
    if extra <= 0:
        return weight
    mean = weight.float().mean(0, keepdim=True).to(weight.dtype)
    return torch.cat([weight, mean.expand(extra, -1)], 0).contiguous()


def identity_projector(hidden_size: int, dtype: Any) -> dict[str, Any]:
    """The second projector layer of a ``linear`` projector: identity weight, zero bias, by parameter name."""
    import torch

    return {f"{IDENTITY_LAYER}.weight": torch.eye(hidden_size, dtype=dtype),
            f"{IDENTITY_LAYER}.bias": torch.zeros(hidden_size, dtype=dtype)}


def vision_tower_key(clip_key: str) -> str | None:
    """SkinVL's name for a CLIP checkpoint tensor, None when it is no part of the vision tower.

    A full ``CLIPModel`` (and a transformers 4 ``CLIPVisionModel``) names the tower
    ``vision_model.*``; a ``CLIPVisionModel`` saved by transformers 5 has no prefix.
    """
    if clip_key.startswith(_CLIP_NOT_VISION) or clip_key.endswith("embeddings.position_ids"):
        return None
    return VISION_TOWER + clip_key.removeprefix(_CLIP_VISION_PREFIX)


__all__ = ["IDENTITY_LAYER", "RESIZED", "VISION_TOWER", "identity_projector", "vision_tower_key",
           "with_image_token_rows"]
