"""Ask a set of questions of a local model or a served one, as a logged, resumable run.

Shared by ``skinvl eval vqa`` and ``skinvl eval zeroshot``: the options of the model (local or
endpoint), decoding and the run; the answerer chosen from them; the provenance of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from skinvl.evaluation.endpoint import EndpointAnswerer, EndpointOptions, sampling_params
from skinvl.evaluation.runs import (
    DecodingOptions,
    Row,
    RunError,
    RunOptions,
    device_for_rank,
    execute,
    now,
    provenance,
    run_identity,
)
from skinvl.inference.batching import LocalAnswerer
from skinvl.inference.decoding import decoding_kwargs
from skinvl.inference.images import LazyImages
from skinvl.inference.loading import LoadedModel, load_model
from skinvl.inference.options import ModelError, ModelOptions


@dataclass(kw_only=True)
class BlindOptions:
    """The blind baseline: the same prompts without the image."""

    blind: bool = field(default=False, metadata={
        "help": "blind baseline: the same prompts with no image (served: no image part; local: a uniform grey image, "
        "stated in results) to measure how much of a score the image earns"})


@dataclass(kw_only=True)
class AskOptions(ModelOptions, EndpointOptions, DecodingOptions, RunOptions, BlindOptions):
    """A local ``--model`` or an ``--endpoint``, the decoding, and the run folder."""


GREY = (128, 128, 128)
GREY_SIZE = 336  # CLIP ViT-L/14-336's input: no resizing artefacts in SkinVL's processor


def grey_image_bytes() -> bytes:
    """A uniform grey PNG: what a local model that cannot run without an image sees in a blind run."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (GREY_SIZE, GREY_SIZE), GREY).save(buffer, format="PNG")
    return buffer.getvalue()


def blind_images(images: LazyImages) -> LazyImages:
    """As many uniform grey images as ``images`` (their originals are never read)."""
    grey = grey_image_bytes()
    return LazyImages(lambda i: grey, len(images), lambda i: f"grey image {i}")


def blind_note(served: bool) -> dict[str, Any]:
    """How a blind run hid the image, for results.json and results.md."""
    if served:
        return {"image": "none", "how": "each request holds the question only (no image part)"}
    return {"image": f"uniform grey {GREY_SIZE}x{GREY_SIZE} RGB{GREY} PNG",
            "how": "a local model cannot run without an image: every question got the same uniform grey image"}


@dataclass
class Answers:
    """The records of a finished run (row order) and its provenance."""

    records: list[dict[str, Any]]
    meta: dict[str, Any]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Records of questions that got no answer (reason in ``error``)."""
        return [r for r in self.records if r.get("status") != "ok"]

    def answered(self) -> list[dict[str, Any]]:
        """Records that got an answer (row order); a run where every question failed is an error."""
        done = [r for r in self.records if r.get("status") == "ok"]
        if self.records and not done:
            raise RunError(f"every question failed (first: {self.failed[0].get('error')}); the records are in "
                           "predictions.jsonl: fix the cause and rerun with --resume.")
        return done

    def failure_summary(self, limit: int = 20) -> dict[str, Any]:
        """Count and the first ``limit`` failed rows with their reasons, for results.json."""
        return {"count": len(self.failed), "rows": [{"id": r["id"], "error": r.get("error")} for r in self.failed[:limit]]}


def ask(options: AskOptions, rows: Sequence[Row], images: LazyImages, dataset: dict[str, Any], *,
        loaded: LoadedModel | None = None, description: str = "eval") -> Answers | None:
    """Answer ``rows`` (resuming, sharded across ranks); the answers on rank 0, None elsewhere."""
    started = now()
    kwargs = decoding_kwargs(options.decoding, options.max_new_tokens)
    if options.endpoint:
        if options.model or loaded is not None:
            raise ModelError("pass either --model (local) or --endpoint URL --model-name NAME, not both.")
        params = sampling_params(kwargs, options.seed)
        answerer: Any = EndpointAnswerer(options, params, blind=options.blind)
        model_info = {"model_name": options.model_name, "endpoint": public_url(options.endpoint)}
        prompt, decoding = (rows[0].question if rows else None), {"name": options.decoding, **params}
    else:
        loaded = loaded or load_model(options, device_map=device_for_rank())
        answerer = LocalAnswerer(loaded, batch_size=options.batch_size, generate_kwargs=kwargs, seed=options.seed)
        model_info = loaded.info
        prompt = loaded.prompt(rows[0].question) if rows else None
        decoding = {"name": options.decoding, **kwargs, "seed": options.seed}
    if options.blind and not options.endpoint:
        images = blind_images(images)
    identity = run_identity(description, model=model_info, prompt=prompt, decoding=decoding, dataset=dataset,
                            blind=options.blind)
    try:
        records = execute(rows, images, answerer, options, description, identity)
    finally:
        if hasattr(answerer, "close"):
            answerer.close()
    if records is None:
        return None
    meta = provenance(options, model=model_info, prompt=prompt, decoding=decoding, dataset=dataset, rows=rows,
                      started=started)
    if options.blind:
        meta["blind"] = blind_note(bool(options.endpoint))
    return Answers(records, meta)


def public_url(url: str) -> str:
    """The endpoint without any user:password part."""
    import httpx

    return str(httpx.URL(url).copy_with(userinfo=b""))


__all__ = ["Answers", "AskOptions", "BlindOptions", "ask", "public_url", "blind_images", "blind_note", "grey_image_bytes"]
