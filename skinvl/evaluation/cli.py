"""``skinvl eval {vqa,score,zeroshot,probe}``: argument parsing only; the work is in the modules."""

from __future__ import annotations

import argparse
import sys


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="preset name (skinvl-tiny), checkpoint folder or Hub id")
    p.add_argument("--dtype", default=None, help="torch dtype to load the model in, e.g. bfloat16")
    p.add_argument("--device-map", default=None, help="e.g. cuda, cpu or auto (default: as loaded)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--out", required=True, help="output folder (results.json, results.md, predictions.csv, PNG)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N rows")


def _add_generation_args(p: argparse.ArgumentParser, max_new_tokens: int | None) -> None:
    p.add_argument(
        "--decoding", choices=["greedy", "paper"], default="greedy",
        help="greedy (deterministic, default) or paper (sampling T=0.2, top_p 0.9, 5 beams, "
        "20..256 new tokens; seeded)",
    )
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help="cap on generated tokens")
    p.add_argument("--template", default=None, help="chat template: mistral_instruct (paper) or vicuna_v1")
    p.add_argument("--seed", type=int, default=0, help="random seed for sampled decoding (default 0)")


def _add_score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", choices=["paper", "standard", "both"], default="both",
                   help="paper: the authors' metrics exactly; standard: ours; both (default) side by side")
    p.add_argument("--bertscore-model", default=None,
                   help="local BERT checkpoint folder (or Hub id) for BERTScore (default bert-base-uncased)")
    p.add_argument("--bertscore-layer", type=int, default=9, help="BERT layer for BERTScore (paper: 9)")
    p.add_argument("--no-bertscore", action="store_true", help="skip BERTScore (reported unavailable)")
    p.add_argument("--nltk-data", action="append", default=[],
                   help="folder with NLTK data (corpora/wordnet) for METEOR; may be repeated")


def _settings(args: argparse.Namespace):
    from skinvl.evaluation.scoring import PAPER_BERTSCORE_MODEL, ScoreSettings

    return ScoreSettings(
        bertscore_model=args.bertscore_model or PAPER_BERTSCORE_MODEL,
        bertscore_layer=args.bertscore_layer,
        bertscore=not args.no_bertscore,
        nltk_data=list(args.nltk_data),
    )


def _protocols(args: argparse.Namespace) -> tuple[str, ...]:
    return ("paper", "standard") if args.protocol == "both" else (args.protocol,)


def _done(payload: dict, out: str) -> int:
    unavailable = payload.get("unavailable") or {}
    for metric, why in unavailable.items():
        print(f"note: {metric} unavailable: {why['reason']} Fix: {why['fix']}", file=sys.stderr)
    print(f"wrote {out}/results.json, results.md, predictions.csv and the figure")
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from skinvl.evaluation.predictions import PredictionsFileError
    from skinvl.evaluation.vqa import run_score

    try:
        payload = run_score(args.predictions, args.out, protocols=_protocols(args), settings=_settings(args))
    except PredictionsFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _done(payload, args.out)


def _run_vqa(args: argparse.Namespace) -> int:
    from skinvl.evaluation.vqa import run_vqa

    payload = run_vqa(
        args.model, args.data, args.out, config=args.config, split=args.split, batch_size=args.batch_size,
        decoding=args.decoding, max_new_tokens=args.max_new_tokens, limit=args.limit, template=args.template,
        seed=args.seed, protocols=_protocols(args), settings=_settings(args), dtype=args.dtype,
        device_map=args.device_map,
    )
    return _done(payload, args.out)


def _run_zeroshot(args: argparse.Namespace) -> int:
    from skinvl.evaluation.labels import LabelFileError
    from skinvl.evaluation.zeroshot import run_zeroshot

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    try:
        payload = run_zeroshot(
            args.model, args.labels, args.images, args.out, protocol=args.protocol, classes=classes,
            batch_size=args.batch_size, decoding=args.decoding, max_new_tokens=args.max_new_tokens,
            limit=args.limit, template=args.template, seed=args.seed, dtype=args.dtype,
            device_map=args.device_map,
        )
    except LabelFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = payload["metrics"]
    print(f"accuracy {m['accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}  unparseable {m['unparseable']}/{m['n']}")
    return _done(payload, args.out)


def _run_probe(args: argparse.Namespace) -> int:
    from skinvl.evaluation.labels import LabelFileError
    from skinvl.evaluation.probe import run_probe

    try:
        payload = run_probe(
            args.model, args.train_labels, args.test_labels, args.images, args.out,
            batch_size=args.batch_size, cache_dir=args.cache_dir, limit=args.limit, dtype=args.dtype,
            device_map=args.device_map,
        )
    except (LabelFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = payload["metrics"]
    print(f"accuracy {m['accuracy']:.4f}  macro F1 {m['macro_f1']:.4f}  AUROC {m['auroc']}  (C={payload['best_C']:.3g})")
    return _done(payload, args.out)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``skinvl eval`` with the sub-commands vqa, score, zeroshot and probe."""
    parser = subparsers.add_parser(
        "eval", help="evaluate: VQA (paper + standard metrics), zero-shot and linear-probe classification",
        description="Evaluate SkinVL or any model's predictions with the MM-Skin paper's protocol and a "
        "sound one beside it. Every command writes results.json, results.md, predictions.csv and a PNG.",
    )
    sub = parser.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)

    vqa = sub.add_parser("vqa", help="generate answers on the MM-Skin VQA test split, then score them",
                         description="Batched generation over a VQA split (load_dataset(DATA, CONFIG, "
                         "split=SPLIT)), written as predictions.csv and scored like `eval score`.")
    _add_model_args(vqa)
    vqa.add_argument("--data", required=True, help="dataset folder or Hub id with the MM-Skin 'vqa' config")
    vqa.add_argument("--config", default="vqa", help="dataset config (default vqa)")
    vqa.add_argument("--split", default="test", help="split (default test)")
    _add_generation_args(vqa, None)
    _add_score_args(vqa)
    vqa.set_defaults(func=_run_vqa)

    score = sub.add_parser("score", help="score a predictions file (CSV/JSONL) from any model",
                           description="Score FILE with columns question, answer (reference), prediction "
                           "[, modality, image_id]. Blank predictions are scored (0 ROUGE) and counted.")
    score.add_argument("--predictions", required=True, help="predictions file, .csv or .jsonl")
    score.add_argument("--out", required=True, help="output folder")
    _add_score_args(score)
    score.set_defaults(func=_run_score)

    zs = sub.add_parser("zeroshot", help="generative zero-shot classification with the paper's prompt",
                        description="Ask 'This is a skin lesion image. From the following categories: ..., "
                        "which one is the diagnosis?' for each image of a label CSV and parse the answer.")
    _add_model_args(zs)
    zs.add_argument("--labels", required=True, help="label CSV of the authors' family (image, categories)")
    zs.add_argument("--images", required=True, help="folder the CSV's image paths are relative to")
    zs.add_argument("--protocol", choices=["robust", "paper"], default="robust",
                    help="answer parsing: robust (whole labels, negation-aware; default) or paper (first substring)")
    zs.add_argument("--classes", default=None, help="comma-separated class order (default: sorted labels)")
    _add_generation_args(zs, 64)
    zs.set_defaults(func=_run_zeroshot)

    probe = sub.add_parser("probe", help="the paper's linear probe on mean-pooled projector features",
                           description="StandardScaler + LogisticRegression, C by 5-fold stratified CV on "
                           "ROC-AUC; features are cached per model and image file.")
    _add_model_args(probe)
    probe.add_argument("--train-labels", required=True, help="label CSV of the training images")
    probe.add_argument("--test-labels", required=True, help="label CSV of the test images")
    probe.add_argument("--images", required=True, help="folder the CSVs' image paths are relative to")
    probe.add_argument("--cache-dir", default=None, help="feature cache (default ~/.cache/skinvl/probe-features)")
    probe.set_defaults(func=_run_probe)
