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


def test_one_scoring_pass_although_lmms_eval_loads_utils_once_per_function_tag(vqa_folder):
    """lmms-eval execs utils.py afresh for every `!function` tag: nine aggregations live in nine
    module copies, and the corpus is still scored once."""
    import datasets

    from skinvl.evaluation.lmms_eval_task import scores

    config = _load_yaml(TASK_DIR / "mmskin_vqa.yaml")
    docs = list(datasets.load_dataset(str(vqa_folder), "vqa", split="test"))
    processed = [_utils().mmskin_process_results(d, [f"answer {i}"]) for i, d in enumerate(docs)]
    before = scores.passes
    values = {}
    for metric in config["metric_list"]:
        copy = _utils()  # a fresh module object, as lmms-eval's import_function makes
        aggregate = getattr(copy, metric["aggregation"].split(".", 1)[1])
        values[metric["metric"]] = aggregate([p[metric["metric"]] for p in processed])
    assert scores.passes == before + 1 and len(values) == len(config["metric_list"]) == 9


def _load_with_includes(path: Path) -> dict:
    """lmms-eval's load_yaml_config: `include` (a path, else beside the YAML) under the overrides;
    `!function` resolved beside the YAML file that names it."""
    config = _load_yaml(path)
    for key, value in config.items():
        if isinstance(value, _Function):
            config[key] = (path.parent / f"{value.split('.')[0]}.py", value.split(".", 1)[1])
    if "include" in config:
        included = Path(config.pop("include"))
        base = _load_with_includes(included if included.is_file() else path.parent / included)
        config = {**base, **config}
    return config


def test_task_folder_runs_the_shipped_task_on_your_data(vqa_folder, tmp_path, monkeypatch, capsys):
    from skinvl.cli import main
    from skinvl.evaluation.lmms_eval_task.task_folder import DATA_ENV

    monkeypatch.setenv(DATA_ENV, str(vqa_folder))
    assert main(["eval", "lmms-task", "--out", str(tmp_path / "task")]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder == (tmp_path / "task").resolve() and [p.name for p in folder.iterdir()] == ["mmskin_vqa.yaml"]
    config = _load_with_includes(folder / "mmskin_vqa.yaml")
    shipped = _load_with_includes(TASK_DIR / "mmskin_vqa.yaml")
    assert config["dataset_path"] == str(Path(vqa_folder).resolve())
    assert {k: v for k, v in config.items() if k != "dataset_path"} == {
        k: v for k, v in shipped.items() if k != "dataset_path"}
    assert config["doc_to_text"] == (TASK_DIR / "utils.py", "mmskin_doc_to_text")  # the shipped hooks
    assert main(["eval", "lmms-task", "--data", "my-org/mm-skin", "--out", str(tmp_path / "hub")]) == 0
    assert "dataset_path: my-org/mm-skin" in (tmp_path / "hub" / "mmskin_vqa.yaml").read_text()


@pytest.mark.parametrize(("argv", "message"), [
    ([], "error: give --data DATASET (or set MMSKIN_DATA)"),
    (["--data", "no-such-folder"], "error: --data 'no-such-folder': no such folder and not a Hub id"),
])  # fmt: skip
def test_task_folder_needs_a_dataset(argv, message, tmp_path, monkeypatch, capsys):
    from skinvl.cli import main

    monkeypatch.delenv("MMSKIN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "lmms-task", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)
    assert not (tmp_path / "mmskin-lmms-task").exists()
