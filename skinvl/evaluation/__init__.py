"""Evaluation of SkinVL (or any model's predictions) with the MM-Skin paper's protocol and ours.

Local models are loaded, prompted and batched by the inference core, :mod:`skinvl.inference`
(options, loader, family table, prompts, decoding presets, image opening), which imports nothing
from here. Modules, one per concern:

- :mod:`~skinvl.evaluation.endpoint`: OpenAI-compatible served models (concurrency, retries);
- :mod:`~skinvl.evaluation.runs`: the predictions log, ``--resume``, data-parallel shards, provenance;
- :mod:`~skinvl.evaluation.ask`: a logged run of a local model or an endpoint over a set of rows;
- :mod:`~skinvl.evaluation.predictions`: read/write predictions files (CSV or JSONL);
- :mod:`~skinvl.evaluation.foreign`: answers made elsewhere (our files, lmms-eval sample logs,
  VLMEvalKit sheets) matched to a split's rows by id, with their coverage;
- :mod:`~skinvl.evaluation.scoring`: the VQA metrics, ``paper`` and ``standard`` protocols;
- :mod:`~skinvl.evaluation.vqa`: answers over a VQA split, then scoring;
- :mod:`~skinvl.evaluation.labels`: the authors' classification label CSVs;
- :mod:`~skinvl.evaluation.classification`: classification metrics and outputs;
- :mod:`~skinvl.evaluation.benchmark_data`: a classification split of a benchmark folder / Hub id
  (``mm-skin benchmark build``) as labels, images and group columns;
- :mod:`~skinvl.evaluation.zeroshot`: generative zero-shot classification;
- :mod:`~skinvl.evaluation.zeroshot_protocols`: its ``mcq`` and ``likelihood`` protocols;
- :mod:`~skinvl.evaluation.groups`: metrics per group of a column (skin type...), intervals, gaps;
- :mod:`~skinvl.evaluation.probe`: the linear probe on projector features;
- :mod:`~skinvl.evaluation.bootstrap`: bootstrap CIs resampling images (metrics recomputed per
  resample), exact McNemar and Holm;
- :mod:`~skinvl.evaluation.compare`: ``eval compare``, the leaderboard of several runs (intervals in
  every cell, paired tests, the image gain of blind runs);
- :mod:`~skinvl.evaluation.judge`: ``eval judge``, judged scoring of open answers; the judge models
  and verdict cache in :mod:`~skinvl.evaluation.judges`, rubrics and the reply contract in
  :mod:`~skinvl.evaluation.judge_rubrics`, agreement and length bias in
  :mod:`~skinvl.evaluation.judge_trust`;
- :mod:`~skinvl.evaluation.provenance_header`: the block every results.md opens with;
- :mod:`~skinvl.evaluation.report`: results.json, Markdown, CSV and PNG outputs;
- :mod:`~skinvl.evaluation.cli`: ``skinvl eval {vqa,score,zeroshot,compare,judge,probe}``;
- ``lmms_eval_task/``: the ``mmskin_vqa`` task for ``lmms-eval --include_path``.

results.json (``schema_version`` 1), common keys:

- ``task``: "vqa", "zero-shot-classification" or "linear-probe-classification";
- ``model``, ``dataset`` (path/id, or the label CSV), ``split``, ``protocol``;
- ``metrics``: headline numbers, all fractions in [0, 1] (counts as integers). For VQA a dict
  per protocol, ``{"paper": {"bleu_1": ..., "rouge_l": ..., "meteor": ..., ...}, "standard":
  {...}}`` computed over all samples; for classification ``{"accuracy", "macro_f1",
  "balanced_accuracy", ...}``;
- ``per_modality`` (VQA): ``{protocol: {modality: {metric: value, "n": count}}}``;
- ``per_answer_type`` (VQA, only when the samples carry ``answer_type``): ``{"standard": {"closed" |
  "open": {metric: value, "n": count}}}``;
- ``per_class`` (classification): ``{class: {"recall", "support"}}``, plus ``confusion_matrix``;
- ``unavailable``: ``{metric: {"reason", "fix"}}`` for metrics whose resources are missing; their
  value in ``metrics`` is null, never 0;
- ``warnings`` (classification): problems in the input that did not stop the run, one line each, also
  printed (an image listed with two labels, feature cache files recomputed);
- ``created_at`` and ``files`` (the other outputs, relative to the folder);
- ``name``: the run's label in tables and cards (``--name``; default the model or the file name);
- ``coverage``: ``{checked, rows_in_split, answered, fraction, complete, missing_count,
  missing_ids}`` (``checked`` false when ``eval score`` had no ``--data``); answers made elsewhere
  also record ``predictions_file`` and ``predictions_format`` (skinvl, lmms-eval, vlmevalkit);
- runs that generate (vqa, zeroshot): ``name``, ``model_info`` (model, revision, weights hash,
  adapter, template), ``first_prompt``, ``decoding`` (+ seed), ``dataset_info`` (source, config,
  split, row count, ``row_ids_blake2b``), ``packages``, ``started_at`` / ``finished_at``,
  ``resumed`` and ``failed`` (count and reasons of questions that got no answer).

Example::

    skinvl eval score --predictions preds.csv --out results/gpt4o
    skinvl eval score --predictions logs/x_samples_mmskin_vqa.jsonl --data ./mm-skin --name LLaVA --out results/llava
    skinvl eval judge results/skinvl results/llava --judge-endpoint http://127.0.0.1:8001 --judge-model judge
    skinvl eval compare results/skinvl results/llava results/gpt4o --out results/compare
    skinvl eval vqa --model zwq803/SkinVL-PubMM --data ./mm-skin --out results/skinvl
    skinvl eval vqa --endpoint http://127.0.0.1:8000 --model-name skinvl --data ./mm-skin --out results/served
"""

from __future__ import annotations

from skinvl.lazy_exports import lazy_exports

# Nothing is imported eagerly: ``import skinvl.evaluation.scoring`` (the lmms-eval task's utils)
# must not pay for the CLI, and the CLI's modules load on first use.


__getattr__, __dir__ = lazy_exports(__name__, {"register_cli": "skinvl.evaluation.cli"})

__all__ = ["register_cli"]
