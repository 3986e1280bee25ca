"""``skinvl eval judge RUN_DIR ...``: judged scoring of open answers by a served or local judge model.

For every answer of each run folder (``eval vqa`` / ``eval score`` output) the judge sees the
question, the reference and the candidate (text only) under a rubric
(:mod:`~skinvl.evaluation.judge_rubrics`), temperature 0. A reply that breaks the contract is
asked once more, then recorded as **unjudged**: counted, never scored. Requests that fail (the
server never answered after its retries) are recorded as failed and asked again by the next run.

Each run folder gets:

- ``judge-<judge>-<rubric hash>.jsonl``: every verdict with its reason, in row order (id, image id,
  modality, answer type, status judged/unjudged/failed, verdict or axis scores, reason);
- results.json: ``metrics["judge"]`` (``judge_accuracy`` = correct / judged, or the axis means ``dermbench_<axis>`` as (score - 1) / 4,
  plus ``judged``, ``unjudged``, ``failed``), ``per_modality["judge"]``, ``per_answer_type["judge"]``,
  ``judge`` (judge id, kind, model, decoding, JSON mode, rubric name / text / hash, verdict file,
  agreement with ``--human`` labels and with other judges, the verbosity probe) and ``judges``
  (every judge that graded this run, by verdict file);
- results.md: a "Judged scoring" section (replaced on every judge run).

Verdicts are cached by (judge, rubric hash, question, reference, candidate) in
``judge_cache.jsonl`` of each run folder (or ``--cache FILE``, shared), so a re-run asks nothing
already asked and a killed run resumes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skinvl.evaluation import report
from skinvl.evaluation.compare import Run, load_run, read_verdicts
from skinvl.evaluation.endpoint import EndpointError, EndpointOptions
from skinvl.evaluation.judge_rubrics import AXES, Rubric, load_rubric, parse_reply
from skinvl.evaluation.judge_trust import agreement, read_human, verbosity_items, verbosity_summary
from skinvl.evaluation.judges import EndpointJudge, LocalJudge, VerdictCache, cache_key
from skinvl.evaluation.provenance_header import provenance_items
from skinvl.evaluation.runs import now

CACHE = "judge_cache.jsonl"
SECTION = "## Judged scoring"


class JudgeError(ValueError):
    """Judge options or run folders that cannot work; the message names the option or file and the fix."""


@dataclass(kw_only=True)
class JudgeOptions:
    """``skinvl eval judge``: run folders, the judge (served or local), rubric and trust checks."""

    runs: list[str] = field(metadata={"positional": True, "nargs": "+", "metavar": "RUN_DIR",
                                      "help": "VQA run folders (results.json + predictions.csv)"})
    judge_model: str = field(metadata={"help": "judge model: the served model's name (with --judge-endpoint) or a local "
                                       "checkpoint folder / Hub id (causal LM or image-text-to-text)"})
    judge_endpoint: str | None = field(default=None, metadata={
        "help": "base URL of an OpenAI-compatible server serving the judge (http://host:8000 or .../v1)"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "environment variable holding the judge server's API key (never printed or written)"})
    concurrency: int = field(default=8, metadata={"help": "judge requests in flight"})
    timeout: float = field(default=120.0, metadata={"help": "seconds per judge request"})
    max_retries: int = field(default=5, metadata={"help": "retries of a request on 429 / 5xx / timeouts"})
    retry_backoff: float = field(default=1.0, metadata={"help": "first retry delay in seconds, doubled each retry"})
    rubric: str = field(default="binary", metadata={
        "help": "binary (right/wrong, default), dermbench (six axes 1-5) or a rubric FILE with {question}, "
        "{reference}, {candidate}"})
    max_new_tokens: int = field(default=256, metadata={"help": "cap on the judge's reply tokens"})
    cache: str | None = field(default=None, metadata={
        "help": f"verdict cache JSONL shared by all runs (default: {CACHE} in each run folder)"})
    human: str | None = field(default=None, metadata={
        "help": "CSV/JSONL of human verdicts (id, verdict) on ONE run: agreement and Cohen's kappa with the judge"})
    verbosity_probe: int = field(default=0, metadata={
        "help": "also grade the reference and the reference plus padding for the first N rows: the judge's length bias"})
    dtype: str | None = field(default=None, metadata={"help": "local judge: torch dtype"})
    device_map: str | None = field(default=None, metadata={"help": "local judge: e.g. cuda, cpu or auto"})
    trust_remote_code: bool = field(default=False, metadata={"help": "local judge: allow the checkpoint's own code"})


@dataclass
class Item:
    """One answer to judge: the row it belongs to and the text the judge sees."""

    row: dict[str, str]
    candidate: str
    key: str = ""


def make_judge(options: JudgeOptions) -> EndpointJudge | LocalJudge:
    """The served judge (``--judge-endpoint``) or the local checkpoint ``--judge-model``."""
    if options.judge_endpoint:
        endpoint = EndpointOptions(endpoint=options.judge_endpoint, model_name=options.judge_model,
                                   api_key_env=options.api_key_env, concurrency=options.concurrency,
                                   timeout=options.timeout, max_retries=options.max_retries,
                                   retry_backoff=options.retry_backoff)
        return EndpointJudge(endpoint, options.max_new_tokens)
    return LocalJudge(options.judge_model, max_new_tokens=options.max_new_tokens, dtype=options.dtype,
                      device_map=options.device_map, trust_remote_code=options.trust_remote_code)


def judge_items(judge, rubric: Rubric, items: Sequence[Item], cache: VerdictCache) -> list[dict[str, Any]]:
    """A verdict record per item: cached ones reused, each new (question, reference, candidate) asked once.

    An unparseable reply is asked once more; a second one is recorded as unjudged (and cached: it was
    asked). A request that failed is recorded as failed and not cached.
    """
    for item in items:
        item.key = cache_key(judge.id, rubric.hash, item.row["question"], item.row["answer"], item.candidate)
    pending: dict[str, Item] = {}
    for item in items:
        if cache.get(item.key) is None:
            pending.setdefault(item.key, item)
    failed: dict[str, dict[str, Any]] = {}
    todo = list(pending.values())
    for attempt in (1, 2):
        prompts = [rubric.prompt(i.row["question"], i.row["answer"], i.candidate) for i in todo]
        retry = []
        for k, reply, error in judge.ask(prompts):
            item = todo[k]
            if error is not None:
                failed[item.key] = {"key": item.key, "status": "failed", "error": error}
                continue
            parsed = parse_reply(reply, rubric.kind)
            if parsed is None and attempt == 1:
                retry.append(item)
                continue
            status = {"status": "judged", **parsed} if parsed else {
                "status": "unjudged", "reply": (reply or "")[:500], "attempts": attempt}
            cache.put({"key": item.key, "judge": judge.id, "rubric_hash": rubric.hash, **status})
        todo = retry
    return [cache.get(i.key) or failed[i.key] for i in items]


def _verdict_record(row: dict[str, str], verdict: dict[str, Any]) -> dict[str, Any]:
    fields = {k: row.get(k) or None for k in ("id", "image_id", "modality", "answer_type")}
    keep = {k: verdict[k] for k in ("status", "verdict", "scores", "reason", "error", "reply") if k in verdict}
    return {**fields, "question": row["question"], "reference": row["answer"], "candidate": row["prediction"], **keep}


def summarize(records: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    """judge_accuracy (binary) or axis means over the judged records, with the judged/unjudged/failed counts."""
    judged = [r for r in records if r["status"] == "judged"]
    out: dict[str, Any] = {"n": len(records), "judged": len(judged),
                           "unjudged": sum(r["status"] == "unjudged" for r in records),
                           "failed": sum(r["status"] == "failed" for r in records)}
    if kind == "binary":
        out["judge_accuracy"] = sum(r["verdict"] == "correct" for r in judged) / len(judged) if judged else None
    else:
        for axis in AXES:  # 1-5 scores as fractions of the scale ((s - 1) / 4), so tables stay x100
            out[f"dermbench_{axis}"] = (sum((r["scores"][axis] - 1) / 4 for r in judged) / len(judged)) if judged else None
    return out


def _groups(records: Sequence[dict[str, Any]], column: str, kind: str) -> dict[str, dict[str, Any]]:
    keys = sorted({r.get(column) for r in records if r.get(column)})
    return {k: summarize([r for r in records if r.get(column) == k], kind) for k in keys}


def slug(judge_id: str, rubric: Rubric) -> str:
    """The verdict file's name part for a judge and rubric (safe as a file name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", judge_id).strip("_")[:80] + f"-{rubric.hash}"


def _load_vqa_run(folder: str) -> Run:
    run = load_run(folder, require_ids=False)
    if run.doc.get("task") != "vqa":
        raise JudgeError(f"{folder}: task {run.doc.get('task')!r}; the judge grades open answers of VQA runs.")
    return run


def judge_runs(options: JudgeOptions) -> dict[str, Any]:
    """Judge every run folder; returns ``{"runs": {folder: judge section}, "judge": judge info}``."""
    rubric = load_rubric(options.rubric)
    if options.concurrency < 1:
        raise EndpointError(f"--concurrency must be >= 1, got {options.concurrency}.")
    if options.human and len(options.runs) != 1:
        raise JudgeError("--human labels the answers of ONE run: pass a single RUN_DIR with it.")
    runs = [_load_vqa_run(folder) for folder in options.runs]  # every folder checked before any request
    human = read_human(options.human) if options.human else None
    judge = make_judge(options)
    try:
        probe = _probe(judge, rubric, runs[0], options) if options.verbosity_probe > 0 else None
        sections = {str(run.folder): _judge_run(judge, rubric, run, options, human, probe) for run in runs}
    finally:
        judge.close()
    return {"runs": sections, "judge": judge.info()}


def _cache_for(run: Run, options: JudgeOptions) -> VerdictCache:
    return VerdictCache(options.cache or run.folder / CACHE)


def _probe(judge, rubric: Rubric, run: Run, options: JudgeOptions) -> dict[str, Any]:
    if rubric.kind != "binary":
        raise JudgeError("--verbosity-probe needs a binary rubric (verdicts), not the six-axis one.")
    rows = list(run.rows.values())
    triples = verbosity_items(rows, options.verbosity_probe)
    items = [Item(row, c) for row, plain, padded in triples for c in (plain, padded)]
    verdicts = judge_items(judge, rubric, items, _cache_for(run, options))
    correct = [None if v["status"] != "judged" else v["verdict"] == "correct" for v in verdicts]
    return verbosity_summary(correct[0::2], correct[1::2])


def _judge_run(judge, rubric: Rubric, run: Run, options: JudgeOptions, human: dict[str, bool] | None,
               probe: dict[str, Any] | None) -> dict[str, Any]:
    rows = list(run.rows.values())
    verdicts = judge_items(judge, rubric, [Item(r, r["prediction"]) for r in rows], _cache_for(run, options))
    records = [_verdict_record(r, v) for r, v in zip(rows, verdicts, strict=True)]
    name = f"judge-{slug(judge.id, rubric)}.jsonl"
    partial = run.folder / f".{name}.tmp"  # a killed run leaves no torn verdict file behind
    with partial.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    partial.replace(run.folder / name)
    section = {**judge.info(), "rubric": {"name": rubric.name, "kind": rubric.kind, "hash": rubric.hash,
                                          "text": rubric.text}, "verdicts": name, "judged_at": now()}
    if rubric.kind == "binary":
        mine = _binary(records)
        images = {r["id"]: r.get("image_id") for r in rows}
        if human is not None:
            section["human_agreement"] = {"file": Path(options.human or "").name, **agreement(mine, human, images)}
        section["judge_agreement"] = _other_judges(run, name, mine, images)
    if probe is not None:
        section["verbosity_probe"] = probe
    _write(run, records, rubric.kind, section)
    return section


def _binary(records: Sequence[dict[str, Any]]) -> dict[str, bool]:
    return {r["id"]: r["verdict"] == "correct" for r in records if r["status"] == "judged" and r.get("id")}


def _other_judges(run: Run, mine: str, verdicts: dict[str, bool], images: dict[str, str | None]) -> dict[str, Any]:
    """Cohen's kappa with every other binary judge whose verdict file is in the run folder."""
    out = {}
    for path in sorted(run.folder.glob("judge-*.jsonl")):
        if path.name == mine:
            continue
        theirs = {k: v for k, v in read_verdicts(path).items() if v is not None}
        if theirs:  # a binary judge (DermBench files hold axis scores)
            out[path.name] = agreement(verdicts, theirs, images)
    return out


def _write(run: Run, records: Sequence[dict[str, Any]], kind: str, section: dict[str, Any]) -> None:
    doc = dict(run.doc)
    doc["metrics"] = {**doc.get("metrics", {}), "judge": summarize(records, kind)}
    doc["per_modality"] = {**doc.get("per_modality", {}), "judge": _groups(records, "modality", kind)}
    by_type = _groups(records, "answer_type", kind)
    if by_type:
        doc["per_answer_type"] = {**doc.get("per_answer_type", {}), "judge": by_type}
    doc["judge"] = section
    doc["judges"] = {**doc.get("judges", {}), section["verdicts"]: {k: v for k, v in section.items() if k != "rubric"}
                     | {"rubric_hash": section["rubric"]["hash"], "metrics": doc["metrics"]["judge"]}}
    doc["files"] = {**doc.get("files", {}), "verdicts": section["verdicts"]}
    report.write_results_json(run.folder, {k: v for k, v in doc.items() if k != "schema_version"})
    markdown = run.folder / "results.md"
    text = markdown.read_text(encoding="utf-8") if markdown.is_file() else ""
    judge_line = f"- Judge: {provenance_items(doc)['Judge']}"
    text = re.sub(r"^- Judge: .*$", lambda _: judge_line, text, count=1, flags=re.MULTILINE)  # the header's line
    report.write_markdown(run.folder, text.split(f"\n{SECTION}")[0].rstrip() + "\n\n" + judge_markdown(doc))


def judge_markdown(doc: dict[str, Any]) -> str:
    """The "Judged scoring" section of results.md from a judged run's results.json."""
    section, metrics = doc["judge"], doc["metrics"]["judge"]
    columns = [c for c in metrics if c.startswith(("judge_", "dermbench_"))] + ["judged", "unjudged", "failed"]
    groups = {"overall": metrics, **doc["per_modality"]["judge"], **doc.get("per_answer_type", {}).get("judge", {})}
    lines = [SECTION, "", f"Judge `{section['id']}`, rubric `{section['rubric']['name']}` (hash "
             f"{section['rubric']['hash']}), decoding {json.dumps(section['decoding'])}, JSON mode "
             f"{'on' if section['json_mode'] else 'off'}. Accuracy = correct / judged (x100); unjudged answers "
             f"(the reply broke the contract twice) are counted, never scored. Verdicts: `{section['verdicts']}`.", "",
             report.markdown_table(groups, ["n", *columns], "group")]
    human = section.get("human_agreement")
    if human and human.get("kappa") is not None:
        low, high = human["kappa_ci"]
        lines += ["", f"Human agreement ({human['n']} answers): {100 * human['agreement']:.1f}%, Cohen's kappa "
                  f"{human['kappa']:.3f} [{low:.3f}, {high:.3f}] (95%, resampling {human['unit']}s)."]
    others = {k: v for k, v in (section.get("judge_agreement") or {}).items() if v.get("kappa") is not None}
    if others:
        lines += ["", "Agreement with the other judges of this run (Cohen's kappa, 95% interval):", ""]
    for other, value in others.items():
        if value.get("kappa") is not None:
            low, high = value["kappa_ci"]
            lines.append(f"- agreement with `{other}` ({value['n']} answers): kappa {value['kappa']:.3f} "
                         f"[{low:.3f}, {high:.3f}]")
    probe = section.get("verbosity_probe")
    if probe and probe.get("n"):
        lines += ["", f"Verbosity probe ({probe['n']} references, +{probe['padding_words']} words of padding): accepted "
                  f"{100 * probe['accuracy_plain']:.1f}% plain vs {100 * probe['accuracy_padded']:.1f}% padded, length "
                  f"bias {100 * probe['length_bias']:+.1f} points (exact McNemar p = {probe['p_value']:.3g})."]
    lines += ["", "<details><summary>Rubric text</summary>", "", "```", section["rubric"]["text"], "```", "", "</details>"]
    return "\n".join(lines)


__all__ = ["CACHE", "Item", "JudgeError", "JudgeOptions", "judge_items", "judge_markdown", "judge_runs", "make_judge",
           "slug", "summarize"]
