"""VQA metrics: the paper's protocol, reproduced with the authors' libraries, and a sound one.

``paper`` (docs/evaluation.md, exactly as the authors' scripts compute it)
    - ``bleu_1`` .. ``bleu_4``: nltk ``corpus_bleu`` on whitespace tokens (``str.split()``), no
      lowercasing, no smoothing, weights (1,0,0,0), (0.5,0.5,0,0), (0.33,0.33,0.33,0) (sic, the
      authors' literal BLEU-3 weights) and (0.25,0.25,0.25,0.25);
    - ``rouge_1``, ``rouge_2``, ``rouge_l``: F of the ``rouge`` package,
      ``Rouge().get_scores(predictions, references, avg=True)``;
    - ``meteor``: mean over samples of nltk ``meteor_score([reference.split()], prediction.split())``;
    - ``bertscore_precision/recall/f1``: ``bert_score`` with bert-base-uncased, layer 9, no idf,
      no baseline rescaling, averaged over samples;
    - ``token_recall``: mean over samples of |set(pred) & set(ref)| / |set(ref)| on whitespace
      tokens (case-sensitive, like the BLEU tokens).

``standard`` (what we recommend)
    - ``sacrebleu``: sacrebleu ``corpus_bleu`` (13a tokenizer, its default smoothing), divided by
      100 so that every metric here is on a 0-1 scale;
    - ``rouge_1``, ``rouge_2``, ``rouge_l``: F of Google's ``rouge-score`` with Porter stemming;
    - ``meteor``: nltk METEOR on lowercased word/punctuation tokens (``\\w+|[^\\w\\s]``);
    - ``bertscore_f1``: the same BERTScore run as the paper protocol (computed once);
    - ``yes_no_accuracy`` / ``yes_no_f1`` / ``yes_no_count``: over the questions whose reference
      answer starts with "yes" or "no": exact match of the prediction's first word against the
      reference's (lowercased, punctuation stripped) and macro F1 over the classes {yes, no} that
      the references hold (a prediction starting with anything else is wrong for both), with each
      class's support (``yes_no_yes_support``, ``yes_no_no_support``).

Blank predictions. The ``rouge`` package raises ``ValueError("Hypothesis is empty.")`` on a
prediction with no text once split on "." (e.g. "" or "..."), so the authors' script would
crash. We score such a prediction 0 for ROUGE-1/2/L (it shares nothing with the reference),
average over ALL samples, and report their number as ``empty_predictions``; the other libraries
score blank predictions themselves (BLEU counts their length 0, METEOR and token recall give 0);
BERTScore gives a blank candidate 0, as bert_score itself does (we bypass it for blanks because
it crashes on them under transformers 5).

Rows the ``rouge`` package cannot score. Its ROUGE-L recursion overflows on a long answer without
a period (about 1,000 words: ``RecursionError``), which would leave the run unscorable. Such a
row (any of PAPER_ROUGE_FAILURES) is scored by :func:`rouge_fallback`, Google's ``rouge-score``
without stemming, and counted: ``paper_rouge_fallback`` in results.json lists the rows.

Missing resources. METEOR needs NLTK's WordNet and BERTScore a BERT checkpoint. When one cannot
be loaded the metric's value is ``None`` and ``unavailable[metric]`` holds the reason and the
command that fixes it; it is never reported as 0.

Per modality. Every metric is computed on each modality's subset (corpus BLEU is recomputed on
the subset) and on all samples (``overall``).

Per answer type. When samples carry an ``answer_type`` (``closed``: a yes/no question answered yes
or no; ``open``: the rest; the dataset's column), the ``standard`` protocol is also computed on
each type's subset, the same way as per modality (the split SLAKE and VQA-RAD report). It needs
the ``standard`` protocol; samples without a type form an ``unknown`` group.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from skinvl.evaluation.predictions import VQASample

PAPER_BLEU_WEIGHTS = {
    "bleu_1": (1.0, 0.0, 0.0, 0.0),
    "bleu_2": (0.5, 0.5, 0.0, 0.0),
    "bleu_3": (0.33, 0.33, 0.33, 0.0),  # the authors' literal weights, not thirds
    "bleu_4": (0.25, 0.25, 0.25, 0.25),
}
PAPER_BERTSCORE_MODEL = "bert-base-uncased"
PAPER_BERTSCORE_LAYER = 9
PROTOCOLS = ("paper", "standard")
# Each protocol's headline metrics: drawn in vqa_scores.png and given a bootstrap CI by `eval compare`.
# What the ``rouge`` package raises on a row it cannot score (see the module docstring).
PAPER_ROUGE_FAILURES = (RecursionError, ValueError, ZeroDivisionError, IndexError)
HEADLINE_METRICS = {"paper": ("bleu_1", "bleu_4", "rouge_l", "meteor", "bertscore_f1", "token_recall"),
                    "standard": ("sacrebleu", "rouge_l", "meteor", "bertscore_f1", "yes_no_accuracy")}
OVERALL = "overall"

_STANDARD_TOKEN = re.compile(r"\w+|[^\w\s]")
_FIRST_WORD = re.compile(r"[a-z']+")


@dataclass
class ScoreSettings:
    """Where the scorer finds its offline resources.

    ``bertscore_model``: a Hub id or a local folder with a BERT checkpoint + tokenizer
    (default the paper's bert-base-uncased, which must already be in the HF cache offline);
    ``bertscore_layer``: the layer whose embeddings are compared (the paper's 9);
    ``bertscore``: set False to skip BERTScore (it is then reported unavailable, not 0);
    ``nltk_data``: extra folders searched for NLTK data (WordNet for METEOR).
    """

    bertscore_model: str = PAPER_BERTSCORE_MODEL
    bertscore_layer: int = PAPER_BERTSCORE_LAYER
    bertscore_batch_size: int = 64
    bertscore: bool = True
    nltk_data: list[str] = field(default_factory=list)
    device: str | None = None


@dataclass(kw_only=True)
class ScoreOptions:
    """How VQA answers are scored (``skinvl eval vqa`` and ``skinvl eval score``)."""

    protocol: str = field(default="both", metadata={
        "help": "paper: the authors' metrics exactly; standard: ours; both: side by side",
        "choices": ["paper", "standard", "both"]})
    bertscore_model: str | None = field(default=None, metadata={
        "help": f"local BERT checkpoint folder (or Hub id) for BERTScore (default {PAPER_BERTSCORE_MODEL})"})
    bertscore_layer: int = field(default=PAPER_BERTSCORE_LAYER, metadata={"help": "BERT layer for BERTScore (paper: 9)"})
    no_bertscore: bool = field(default=False, metadata={"help": "skip BERTScore (reported unavailable)"})
    nltk_data: list[str] = field(default_factory=list, metadata={
        "help": "folder(s) with NLTK data (corpora/wordnet) for METEOR; may be repeated", "action": "extend"})

    def protocols(self) -> tuple[str, ...]:
        """The protocols to compute, in report order."""
        return PROTOCOLS if self.protocol == "both" else (self.protocol,)

    def settings(self) -> ScoreSettings:
        """The scorer's resources from these options."""
        return ScoreSettings(bertscore_model=self.bertscore_model or PAPER_BERTSCORE_MODEL,
                             bertscore_layer=self.bertscore_layer, bertscore=not self.no_bertscore,
                             nltk_data=list(self.nltk_data))


@dataclass
class ScoreResult:
    """Scores of one predictions set.

    ``metrics[protocol][group][metric]`` where group is ``"overall"`` or a modality; a value is
    None when the metric could not run, with the reason in ``unavailable[metric]``.
    ``per_answer_type[protocol][type][metric]``: the same per answer type (``standard`` only;
    empty when no sample has a type).
    """

    metrics: dict[str, dict[str, dict[str, float | int | None]]]
    unavailable: dict[str, dict[str, str]]
    n_samples: int
    empty_predictions: int
    per_sample: dict[str, list[float | None]]
    per_answer_type: dict[str, dict[str, dict[str, float | int | None]]] = field(default_factory=dict)
    rouge_fallback: list[int] = field(default_factory=list)  # rows the paper's ROUGE scored by the fallback


# --------------------------------------------------------------------------------- resources


def wordnet_unavailable(nltk_data: Sequence[str] = ()) -> dict[str, str] | None:
    """Return None when nltk can load WordNet, else ``{"reason", "fix"}`` for the report."""
    import nltk

    from .metric_resources import prepared_nltk_data

    for folder in [*nltk_data, *prepared_nltk_data()]:  # prepare-metrics' folder searched last
        if folder not in nltk.data.path:
            nltk.data.path.insert(0, folder)
    from nltk.corpus import wordnet

    try:
        # Look the data up first: a reader loaded earlier in the process stays loaded even when
        # the data path no longer holds WordNet, and availability should follow the path.
        nltk.data.find("corpora/wordnet")
        wordnet.ensure_loaded()
    except LookupError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if "not found" in ln), "")
        return {
            "reason": f"NLTK's WordNet corpus, which METEOR needs, is not installed ({first or 'LookupError'}).",
            "fix": "skinvl eval prepare-metrics on a machine with internet (or python -m nltk.downloader "
            "wordnet, or pass --nltk-data FOLDER holding corpora/wordnet)",
        }
    return None


def bertscore(
    predictions: Sequence[str], references: Sequence[str], settings: ScoreSettings
) -> tuple[dict[str, list[float]] | None, dict[str, str] | None]:
    """Per-sample BERTScore P/R/F1 with the paper's settings, or (None, reason) if it cannot run."""
    if not settings.bertscore:
        return None, {"reason": "BERTScore was switched off (--no-bertscore).", "fix": "drop --no-bertscore"}
    import bert_score

    from .metric_resources import cap_tokenizer_length, resolve_bertscore_model

    # bert_score scores a blank candidate 0 ("Empty candidate sentence detected; setting raw
    # BERTscores to 0"), but with transformers 5 it crashes first (it encodes "" through the
    # slow-tokenizer-only build_inputs_with_special_tokens). So blank ones get that 0 here and
    # only the others go through the library.
    keep = [i for i, p in enumerate(predictions) if p.strip()]
    zeros = [0.0] * len(predictions)
    if not keep:
        return {"precision": list(zeros), "recall": list(zeros), "f1": list(zeros)}, None
    try:
        scorer = bert_score.BERTScorer(
            model_type=resolve_bertscore_model(settings.bertscore_model),  # prepare-metrics' copy
            num_layers=settings.bertscore_layer,
            idf=False,
            rescale_with_baseline=False,
            batch_size=settings.bertscore_batch_size,
            device=settings.device,
            # transformers 5 ships fast tokenizers only; WordPiece gives the same pieces either way.
            use_fast_tokenizer=True,
        )
        cap_tokenizer_length(scorer._tokenizer, scorer._model)
        p, r, f = scorer.score([predictions[i] for i in keep], [references[i] for i in keep])
    except (OSError, ValueError, AssertionError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, {
            "reason": f"BERTScore could not load {settings.bertscore_model!r} "
            f"(layer {settings.bertscore_layer}): {first}",
            "fix": "skinvl eval prepare-metrics (on a machine with internet) "
            "or pass --bertscore-model PATH to a local BERT checkpoint folder",
        }
    out = {"precision": list(zeros), "recall": list(zeros), "f1": list(zeros)}
    for name, values in (("precision", p), ("recall", r), ("f1", f)):
        for i, v in zip(keep, values.tolist(), strict=True):
            out[name][i] = v
    return out, None


# ------------------------------------------------------------------------------ the metrics


def is_rouge_empty(text: str) -> bool:
    """True when the ``rouge`` package would raise "Hypothesis is empty." on ``text``.

    It splits on "." and keeps the non-empty pieces; no piece left means an empty hypothesis.
    """
    return not any(len(piece) > 0 for piece in text.split("."))


def paper_rouge(predictions: Sequence[str], references: Sequence[str]) -> tuple[list[dict[str, float]], list[int]]:
    """Per-sample ROUGE-1/2/L F of the ``rouge`` package (0 for predictions it calls empty), and the
    indices of the rows it could not score, which :func:`rouge_fallback` scored instead."""
    from rouge import Rouge

    zero = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    keep = [i for i, p in enumerate(predictions) if not is_rouge_empty(p)]
    out: list[dict[str, float]] = [dict(zero) for _ in predictions]
    rouge, fallback = Rouge(), []
    try:
        scores = rouge.get_scores([predictions[i] for i in keep], [references[i] for i in keep]) if keep else []
    except PAPER_ROUGE_FAILURES:  # find the rows it cannot score, one by one
        scores = []
        for i in keep:
            try:
                scores.append(rouge.get_scores(predictions[i], references[i])[0])
            except PAPER_ROUGE_FAILURES:
                fallback.append(i)
                scores.append(rouge_fallback(predictions[i], references[i]))
    for i, s in zip(keep, scores, strict=True):
        out[i] = {k: v["f"] for k, v in s.items()}
    return out, fallback


def rouge_fallback(prediction: str, reference: str) -> dict[str, dict[str, float]]:
    """ROUGE-1/2/L of one row the ``rouge`` package cannot score, by Google's ``rouge-score`` without
    stemming (its LCS is a table, not a recursion), in the ``rouge`` package's result shape."""
    from rouge_score import rouge_scorer

    scores = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False).score(reference, prediction)
    return {f"rouge-{key[5:].lower()}": {"f": s.fmeasure, "p": s.precision, "r": s.recall} for key, s in scores.items()}


def token_recall(prediction: str, reference: str) -> float:
    """|set(pred tokens) & set(ref tokens)| / |set(ref tokens)| on whitespace tokens."""
    ref = set(reference.split())
    return len(set(prediction.split()) & ref) / len(ref)


def first_word(text: str) -> str:
    """The first word of an answer, lowercased, punctuation stripped ("Yes, it is" -> "yes")."""
    m = _FIRST_WORD.search(text.lower())
    return m.group(0) if m else ""


def _mean(values: Sequence[float]) -> float:
    # Plain left-to-right sum, as the rouge package and numpy-free scripts do.
    return sum(values) / len(values)


@dataclass
class _PerSample:
    """Per-sample metric values computed once over all samples, then averaged per group."""

    rouge: list[dict[str, float]]
    token_recall: list[float]
    meteor_paper: list[float] | None
    meteor_standard: list[float] | None
    bert: dict[str, list[float]] | None
    rouge_score: list[dict[str, float]]


def _paper_group(
    idx: list[int], preds: Sequence[str], refs: Sequence[str], ps: _PerSample
) -> dict[str, float | int | None]:
    from nltk.translate.bleu_score import corpus_bleu

    hyps = [preds[i].split() for i in idx]
    refs_tok = [[refs[i].split()] for i in idx]
    m: dict[str, float | int | None] = {"n": len(idx)}
    # One call with the list of weight tuples (nltk >= 3.7): the n-gram counts are collected
    # once instead of four times; each value equals a separate call with that tuple.
    with warnings.catch_warnings():  # "0 counts of 4-gram overlaps" per group: 0 is the paper's value
        warnings.filterwarnings("ignore", message=r"\s*The hypothesis contains 0 counts", category=UserWarning)
        bleu = corpus_bleu(refs_tok, hyps, weights=list(PAPER_BLEU_WEIGHTS.values()))
    for name, value in zip(PAPER_BLEU_WEIGHTS, bleu, strict=True):
        m[name] = float(value)
    for name, key in (("rouge_1", "rouge-1"), ("rouge_2", "rouge-2"), ("rouge_l", "rouge-l")):
        m[name] = _mean([ps.rouge[i][key] for i in idx])
    m["meteor"] = _mean([ps.meteor_paper[i] for i in idx]) if ps.meteor_paper else None
    for part in ("precision", "recall", "f1"):
        m[f"bertscore_{part}"] = _mean([ps.bert[part][i] for i in idx]) if ps.bert else None
    m["token_recall"] = _mean([ps.token_recall[i] for i in idx])
    return m


def _standard_group(
    idx: list[int], preds: Sequence[str], refs: Sequence[str], ps: _PerSample
) -> dict[str, float | int | None]:
    import sacrebleu
    from sklearn.metrics import f1_score

    m: dict[str, float | int | None] = {"n": len(idx)}
    # force: answers ending in " ." are what models wrote; the "forgot to detokenize" warning,
    # once per group, only flooded stderr (force changes no score).
    m["sacrebleu"] = sacrebleu.corpus_bleu([preds[i] for i in idx], [[refs[i] for i in idx]], force=True).score / 100
    for name in ("rouge_1", "rouge_2", "rouge_l"):
        m[name] = _mean([ps.rouge_score[i][name] for i in idx])
    m["meteor"] = _mean([ps.meteor_standard[i] for i in idx]) if ps.meteor_standard else None
    m["bertscore_f1"] = _mean([ps.bert["f1"][i] for i in idx]) if ps.bert else None
    yn = [i for i in idx if first_word(refs[i]) in ("yes", "no")]
    m["yes_no_count"] = len(yn)
    if yn:
        truth = [first_word(refs[i]) for i in yn]
        guess = [first_word(preds[i]) for i in yn]
        m["yes_no_accuracy"] = sum(t == g for t, g in zip(truth, guess, strict=True)) / len(yn)
        # Macro F1 over the classes the references hold: an absent class would add a 0 (or, with every
        # answer right, drag a perfect score to 50).
        present = [c for c in ("yes", "no") if c in truth]
        m["yes_no_f1"] = float(f1_score(truth, guess, labels=present, average="macro", zero_division=0))
        m["yes_no_yes_support"], m["yes_no_no_support"] = truth.count("yes"), truth.count("no")
    else:
        m["yes_no_accuracy"] = m["yes_no_f1"] = None
        m["yes_no_yes_support"] = m["yes_no_no_support"] = 0
    return m


def _meteor(preds: list[str], refs: list[str], protocols: Sequence[str]):
    """Per-sample METEOR: whitespace tokens (paper) and lowercased word/punctuation tokens (standard)."""
    from nltk.translate.meteor_score import meteor_score

    pairs = list(zip(preds, refs, strict=True))
    paper = [meteor_score([r.split()], p.split()) for p, r in pairs] if "paper" in protocols else None
    standard = None
    if "standard" in protocols:
        standard = [meteor_score([_STANDARD_TOKEN.findall(r.lower())], _STANDARD_TOKEN.findall(p.lower()))
                    for p, r in pairs]
    return paper, standard


def _rouge_score(preds: list[str], refs: list[str]) -> list[dict[str, float]]:
    """Per-sample ROUGE-1/2/L F-measures of Google's rouge_score package (Porter stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    values = []
    for p, r in zip(preds, refs, strict=True):
        s = scorer.score(r, p)
        values.append({"rouge_1": s["rouge1"].fmeasure, "rouge_2": s["rouge2"].fmeasure, "rouge_l": s["rougeL"].fmeasure})
    return values


def group_indices(keys: Sequence[str | None]) -> dict[str, list[int]]:
    """Sample positions per key (modality, answer type), first-seen order; ``unknown`` for a blank key.

    Empty when no sample has a key: the data has no such grouping.
    """
    groups: dict[str, list[int]] = {}
    if any(keys):
        for i, key in enumerate(keys):
            groups.setdefault(key or "unknown", []).append(i)
    return groups


def score_vqa(
    samples: Sequence[VQASample],
    protocols: Sequence[str] = PROTOCOLS,
    settings: ScoreSettings | None = None,
) -> ScoreResult:
    """Score VQA predictions with the ``paper`` and/or ``standard`` protocol, overall and per modality
    (and, for ``standard``, per answer type when the samples carry one).

    >>> from skinvl.evaluation.predictions import VQASample
    >>> r = score_vqa([VQASample("Q?", "Yes, it is.", "Yes, it is.")], ["paper"],
    ...               ScoreSettings(bertscore=False))  # doctest: +SKIP
    >>> r.metrics["paper"]["overall"]["bleu_1"]  # doctest: +SKIP
    1.0
    """
    settings = settings or ScoreSettings()
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)}")
    if not samples:
        raise ValueError("no samples to score")
    preds = [s.prediction for s in samples]
    refs = [s.answer for s in samples]
    unavailable: dict[str, dict[str, str]] = {}

    meteor_paper = meteor_standard = None
    missing_wordnet = wordnet_unavailable(settings.nltk_data)
    if missing_wordnet:
        unavailable["meteor"] = missing_wordnet
    else:
        meteor_paper, meteor_standard = _meteor(preds, refs, protocols)

    bert, bert_missing = bertscore(preds, refs, settings)
    if bert_missing:
        unavailable["bertscore"] = bert_missing

    rouge_score_values = _rouge_score(preds, refs) if "standard" in protocols else []
    paper_rouge_values, fallback = paper_rouge(preds, refs) if "paper" in protocols else ([], [])
    per = _PerSample(
        rouge=paper_rouge_values,
        token_recall=[token_recall(p, r) for p, r in zip(preds, refs, strict=True)],
        meteor_paper=meteor_paper,
        meteor_standard=meteor_standard,
        bert=bert,
        rouge_score=rouge_score_values,
    )

    groups = {OVERALL: list(range(len(samples))), **group_indices([s.modality for s in samples])}
    metrics: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for protocol in protocols:
        fn = _paper_group if protocol == "paper" else _standard_group
        metrics[protocol] = {g: fn(idx, preds, refs, per) for g, idx in groups.items()}
    by_type = group_indices([s.answer_type for s in samples])
    per_answer_type = {}
    if by_type and "standard" in protocols:
        per_answer_type["standard"] = {g: _standard_group(idx, preds, refs, per) for g, idx in by_type.items()}

    per_sample: dict[str, list[float | None]] = {"token_recall": list(per.token_recall)}
    if per.rouge:
        per_sample["rouge_l"] = [r["rouge-l"] for r in per.rouge]
    if meteor_paper:
        per_sample["meteor"] = list(meteor_paper)
    if bert:
        per_sample["bertscore_f1"] = list(bert["f1"])
    # The standard protocol's per-sample values (``skinvl eval compare`` resamples them).
    if per.rouge_score:
        per_sample["rouge_l_standard"] = [r["rouge_l"] for r in per.rouge_score]
    if meteor_standard:
        per_sample["meteor_standard"] = list(meteor_standard)
    return ScoreResult(
        metrics=metrics,
        unavailable=unavailable,
        n_samples=len(samples),
        empty_predictions=sum(is_rouge_empty(p) or not p.strip() for p in preds),
        per_sample=per_sample,
        per_answer_type=per_answer_type,
        rouge_fallback=fallback,
    )
