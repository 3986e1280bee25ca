"""The shipped lmms-eval task (YAML + utils.py): schema, hooks on the sample dataset, scoring (no lmms-eval needed)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import yaml

TASK_DIR = Path(__file__).resolve().parents[1] / "skinvl" / "evaluation" / "lmms_eval_task"


class _Function(str):
    """A ``!function module.name`` reference as lmms-eval's YAML loader sees it."""


def _load_yaml(path: Path) -> dict:
    loader = type("TaskLoader", (yaml.SafeLoader,), {})
    loader.add_constructor("!function", lambda ld, node: _Function(ld.construct_scalar(node)))
    return yaml.load(path.read_text(), Loader=loader)  # noqa: S506  (a SafeLoader subclass)


def _utils():
    """utils.py imported by path, as lmms-eval does for ``!function utils.X``."""
    spec = importlib.util.spec_from_file_location("utils", TASK_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_yaml_follows_lmms_eval_task_schema():
    config = _load_yaml(TASK_DIR / "mmskin_vqa.yaml")
    # TaskConfig fields of lmms_eval/api/task.py that a generate_until task needs.
    assert config["task"] == "mmskin_vqa" and config["output_type"] == "generate_until"
    assert config["dataset_name"] == "vqa" and config["test_split"] == "test" and config["doc_to_target"] == "answer"
    assert config["generation_kwargs"]["do_sample"] is False
    utils = _utils()
    functions = [config["doc_to_visual"], config["doc_to_text"], config["process_results"],
                 *(m["aggregation"] for m in config["metric_list"])]
    for ref in functions:
        assert isinstance(ref, _Function) and ref.startswith("utils."), ref
        assert callable(getattr(utils, ref.split(".", 1)[1])), ref
    assert all(m["higher_is_better"] is True for m in config["metric_list"])
    assert set(config["lmms_eval_specific_kwargs"]["default"]) == {"pre_prompt", "post_prompt"}


def test_hooks_and_aggregations_on_the_sample_dataset(vqa_folder):
    import datasets

    from skinvl.evaluation.predictions import VQASample
    from skinvl.evaluation.scoring import ScoreSettings, score_vqa

    config = _load_yaml(TASK_DIR / "mmskin_vqa.yaml")
    utils = _utils()
    ds = datasets.load_dataset(str(vqa_folder), config["dataset_name"], split=config["test_split"])
    docs = [ds[i] for i in range(len(ds))]
    images = utils.mmskin_doc_to_visual(docs[0])
    assert len(images) == 1 and images[0].mode == "RGB"
    kwargs = config["lmms_eval_specific_kwargs"]["default"]
    assert [utils.mmskin_doc_to_text(d, kwargs) for d in docs] == [d["question"] for d in docs]  # the paper's prompt
    answers = [d["answer"] if i % 2 else "Yes." for i, d in enumerate(docs)]
    processed = [utils.mmskin_process_results(d, [a]) for d, a in zip(docs, answers, strict=True)]
    metric_names = [m["metric"] for m in config["metric_list"]]
    assert all(set(p) == set(metric_names) for p in processed)
    # What lmms-eval does next: one list per metric, handed to that metric's aggregation.
    expected = score_vqa([VQASample(d["question"], d["answer"], a) for d, a in zip(docs, answers, strict=True)],
                         settings=ScoreSettings(bertscore=False))
    for metric in config["metric_list"]:
        if metric["metric"] == "paper_bertscore_f1":
            continue  # needs bert-base-uncased (NaN here, never 0)
        value = getattr(utils, metric["aggregation"].split(".", 1)[1])([p[metric["metric"]] for p in processed])
        protocol, name = metric["metric"].split("_", 1)
        want = expected.metrics[protocol]["overall"][name]
        assert (math.isnan(value) and want is None) or value == pytest.approx(want), metric["metric"]
