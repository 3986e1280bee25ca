"""``skinvl eval judge``: a loopback judge server with faults, the cache, trust checks and a local judge."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from judge_server import JudgeServer
from test_eval_foreign import model_answers, write_lmms_eval_log

from skinvl.cli import main
from skinvl.evaluation.judge_rubrics import AXES, load_rubric, parse_reply

SECRET = "sk-judge-secret-0123456789"


@pytest.fixture(scope="module")
def scored(vqa_folder, tmp_path_factory) -> tuple[Path, list[dict], list[str]]:
    """A scored run folder on the sample split (answers: exact, bare "Yes." or truncated), its rows and answers."""
    import datasets

    ds = datasets.load_dataset(str(vqa_folder), "vqa", split="test")
    rows = [ds[i] for i in range(len(ds))]
    answers = model_answers(rows, "short")
    root = tmp_path_factory.mktemp("judged")
    log = write_lmms_eval_log(root / "m_samples_mmskin_vqa.jsonl", rows, answers)
    assert main(["eval", "score", "--predictions", str(log), "--data", str(vqa_folder), "--out", str(root / "run"),
                 "--no-bertscore", "--name", "model"]) == 0
    return root / "run", rows, answers


def _copy(scored, tmp_path: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(scored[0], tmp_path / name))


def _judge(folder: Path | list[Path], url: str, *extra: str) -> int:
    folders = [str(f) for f in (folder if isinstance(folder, list) else [folder])]
    return main(["eval", "judge", *folders, "--judge-endpoint", url, "--judge-model", "judge-1",
                 "--api-key-env", "JUDGE_KEY", "--retry-backoff", "0", "--max-retries", "2", *extra])


def _doc(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_faults_retries_unjudged_cache_and_no_key(scored, tmp_path, monkeypatch, capsys):
    folder = _copy(scored, tmp_path)
    _, rows, answers = scored
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    # Distinct candidates: 0 exact (correct), 1 "Yes." (shared by rows 1, 4, 7, 10), 2 truncated.
    faults = {answers[0]: ["500"], answers[2]: ["garbage"], answers[5]: ["garbage!"], answers[8]: ["wrong", "wrong"]}
    with JudgeServer(faults) as server:
        assert _judge(folder, server.url) == 0
        first = len(server.requests)
        assert all(r["headers"].get("Authorization") == f"Bearer {SECRET}" for r in server.requests)
        assert all(r["body"]["response_format"] == {"type": "json_object"} for r in server.requests)
        assert all(r["body"]["temperature"] == 0 for r in server.requests)
        assert all(isinstance(m["content"], str) for r in server.requests for m in r["body"]["messages"])  # text only
        # Re-running asks nothing: every verdict is cached.
        assert _judge(folder, server.url) == 0
        assert len(server.requests) == first
    unique = len(set(answers))
    # Each distinct (question, reference, candidate) asked once, +1 for the 500, +1 per unparseable first reply.
    distinct = len({(r["question"], r["answer"], a) for r, a in zip(rows, answers, strict=True)})
    assert first == distinct + 4 and unique <= distinct
    doc = _doc(folder)
    m = doc["metrics"]["judge"]
    assert m["unjudged"] == 2 and m["failed"] == 0 and m["judged"] == len(rows) - 2 and m["n"] == len(rows)
    verdicts = [json.loads(line) for line in (folder / doc["judge"]["verdicts"]).read_text().splitlines()]
    assert [v["id"] for v in verdicts] == [r["question_id"] for r in rows]
    judged = [v for v in verdicts if v["status"] == "judged"]
    expected = sum(v["reference"].lower() in v["candidate"].lower() for v in judged) / len(judged)
    assert m["judge_accuracy"] == pytest.approx(expected) and all(v["reason"] for v in judged)
    assert {v["status"] for v in verdicts if v["candidate"] in (answers[5], answers[8])} == {"unjudged"}
    assert set(doc["per_modality"]["judge"]) <= {"clinical", "dermoscopic", "pathology"}
    assert doc["judge"]["rubric"]["hash"] == load_rubric("binary").hash and doc["judge"]["json_mode"] is True
    assert "Judged scoring" in (folder / "results.md").read_text()
    everything = capsys.readouterr()
    for path in folder.rglob("*"):
        assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in everything.out + everything.err


def test_failed_requests_are_counted_and_asked_again(scored, tmp_path, capsys):
    folder = _copy(scored, tmp_path)
    answers = scored[2]
    with JudgeServer({answers[0]: ["500!"]}) as server:
        assert _judge(folder, server.url) == 0
        assert _doc(folder)["metrics"]["judge"]["failed"] >= 1
        assert "ask them again" in capsys.readouterr().err
    with JudgeServer() as server:  # the server recovered: only the failed answer is asked
        assert _judge(folder, server.url) == 0
        assert len(server.requests) == 1
    assert _doc(folder)["metrics"]["judge"]["failed"] == 0


def test_killed_run_resumes_from_the_cache(scored, tmp_path):
    folder = _copy(scored, tmp_path)
    with JudgeServer() as server:
        assert _judge(folder, server.url) == 0
        total = len(server.requests)
    cache = folder / "judge_cache.jsonl"
    lines = cache.read_bytes().split(b"\n")
    cache.write_bytes(b"\n".join(lines[:3]) + b"\n" + lines[3][:10])  # killed while writing the 4th verdict
    with JudgeServer() as server:
        assert _judge(folder, server.url) == 0
        assert len(server.requests) == total - 3


def test_server_without_json_mode(scored, tmp_path):
    folder = _copy(scored, tmp_path)
    with JudgeServer(json_mode=False) as server:
        assert _judge(folder, server.url) == 0
    doc = _doc(folder)
    assert doc["judge"]["json_mode"] is False and doc["metrics"]["judge"]["judged"] == doc["metrics"]["judge"]["n"]


def test_human_labels_second_judge_and_verbosity_probe(scored, tmp_path):
    folder = _copy(scored, tmp_path)
    _, rows, answers = scored
    human = tmp_path / "human.csv"
    # The human agrees with the rule (reference contained) except on one row.
    labels = [("correct" if r["answer"].lower() in a.lower() else "incorrect") for r, a in zip(rows, answers, strict=True)]
    labels[1] = "correct" if labels[1] == "incorrect" else "incorrect"
    human.write_text("id,verdict\n" + "".join(f"{r['question_id']},{v}\n" for r, v in zip(rows, labels, strict=True)))
    with JudgeServer() as server:
        assert _judge(folder, server.url, "--human", str(human), "--verbosity-probe", "6") == 0
    doc = _doc(folder)
    agreement = doc["judge"]["human_agreement"]
    assert agreement["n"] == len(rows) and agreement["agreement"] == pytest.approx((len(rows) - 1) / len(rows))
    from sklearn.metrics import cohen_kappa_score

    judge = [r["answer"].lower() in a.lower() for r, a in zip(rows, answers, strict=True)]
    assert agreement["kappa"] == pytest.approx(cohen_kappa_score(judge, [v == "correct" for v in labels]))
    low, high = agreement["kappa_ci"]
    assert low <= agreement["kappa"] <= high and agreement["unit"] == "image"
    probe = doc["judge"]["verbosity_probe"]
    assert probe["n"] == 6 and probe["length_bias"] == 0  # this judge ignores padding
    # A second judge that rejects long answers: kappa between the two, and a length bias.
    with JudgeServer(max_words=12) as server:
        assert main(["eval", "judge", str(folder), "--judge-endpoint", server.url, "--judge-model", "judge-2",
                     "--verbosity-probe", "6", "--retry-backoff", "0"]) == 0
    doc = _doc(folder)
    assert len(doc["judges"]) == 2 and doc["judge"]["id"] == "endpoint:judge-2"
    (other, value), = doc["judge"]["judge_agreement"].items()
    assert "judge-1" in other and value["n"] == len(rows) and -1 <= value["kappa"] <= 1
    assert doc["judge"]["verbosity_probe"]["length_bias"] < 0
    assert "Verbosity probe" in (folder / "results.md").read_text()


def test_dermbench_axes(scored, tmp_path):
    folder = _copy(scored, tmp_path)
    with JudgeServer(axes=True) as server:
        assert _judge(folder, server.url, "--rubric", "dermbench") == 0
    m = _doc(folder)["metrics"]["judge"]
    assert "judge_accuracy" not in m and 0.25 <= m["dermbench_accuracy"] <= 1
    assert 0 <= m["dermbench_safety"] <= 1 and m["judged"] == m["n"]


@pytest.mark.parametrize(("args", "named"), [
    (["--rubric", "missing.txt"], "--rubric missing.txt"),
    (["--human", "h.csv"], "ONE run"),
    (["--concurrency", "0"], "--concurrency"),
])
def test_bad_options_are_one_line(scored, tmp_path, capsys, args, named):
    folder = _copy(scored, tmp_path)
    code = _judge([folder, folder], "http://127.0.0.1:9", *args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and named in err and "\n" not in err


def test_rubric_file_and_reply_contract(tmp_path):
    bad = tmp_path / "r.txt"
    bad.write_text("Grade {question} vs {reference}")
    with pytest.raises(ValueError, match="candidate"):
        load_rubric(str(bad))
    good = tmp_path / "g.txt"
    good.write_text('Q {question} R {reference} C {candidate} reply {{"verdict": ...}}')
    rubric = load_rubric(str(good))
    assert rubric.prompt("q?", "r.", "c {x}") == 'Q q? R r. C c {x} reply {"verdict": ...}'
    assert rubric.hash != load_rubric("binary").hash
    assert parse_reply('Sure. {"verdict": "Correct", "reason": "same"} {"verdict": "incorrect"}', "binary") == {
        "verdict": "correct", "reason": "same"}
    assert parse_reply('{"verdict": "partly"}', "binary") is None and parse_reply("no json", "binary") is None
    assert parse_reply('{"scores": {"accuracy": 6}}', "axes") is None


def test_local_causal_judge_that_breaks_the_contract_is_unjudged(scored, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from skinvl.presets import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=0)
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "judge")
    tokenizer.save_pretrained(tmp_path / "judge")
    folder = _copy(scored, tmp_path)
    assert main(["eval", "judge", str(folder), "--judge-model", str(tmp_path / "judge"), "--max-new-tokens", "4"]) == 0
    doc = _doc(folder)
    m = doc["metrics"]["judge"]
    assert m["unjudged"] == m["n"] and m["judge_accuracy"] is None  # a random model never answers in JSON
    assert doc["judge"]["kind"] == "local" and doc["judge"]["weights_blake2b"]
    cached = [json.loads(line) for line in (folder / "judge_cache.jsonl").read_text().splitlines()]
    assert all(c["attempts"] == 2 for c in cached)


def test_runs_without_ids_are_judged_and_different_judges_are_not_compared(scored, tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("question,answer,prediction\nIs it raised?,Yes.,Yes. It is raised.\nWhat is it?,A nevus.,A scar.\n")
    assert main(["eval", "score", "--predictions", str(path), "--out", str(tmp_path / "noid"), "--no-bertscore"]) == 0
    with JudgeServer() as server:
        assert _judge(tmp_path / "noid", server.url) == 0
    verdicts = [json.loads(line) for line in next((tmp_path / "noid").glob("judge-*.jsonl")).read_text().splitlines()]
    assert [v["id"] for v in verdicts] == ["row-1", "row-2"] and [v["verdict"] for v in verdicts] == ["correct", "incorrect"]
    one, two = _copy(scored, tmp_path, "one"), _copy(scored, tmp_path, "two")
    with JudgeServer() as server:
        assert _judge(one, server.url) == 0
        assert _judge(two, server.url, "--rubric", "dermbench") == 0
    assert main(["eval", "compare", str(one), str(two), "--out", str(tmp_path / "c")]) == 2
    # A judged run against an unjudged one: compared on the shared protocols, no judge column.
    assert main(["eval", "compare", str(one), str(scored[0]), "--out", str(tmp_path / "c"), "--resamples", "50"]) == 0
    doc = json.loads((tmp_path / "c" / "results.json").read_text())
    assert "judge" not in doc["differences"] and "standard" in doc["differences"]


def test_compare_judge_accuracy_with_mcnemar(scored, tmp_path):
    one, two = _copy(scored, tmp_path, "one"), _copy(scored, tmp_path, "two")
    rows = list(csv.DictReader((two / "predictions.csv").open()))
    for row in rows:
        row["prediction"] = row["answer"]  # a model that answers every question exactly
    with (two / "predictions.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with JudgeServer() as server:
        assert _judge(one, server.url) == 0 and _judge(two, server.url) == 0
    assert main(["eval", "compare", str(one), str(two), "--out", str(tmp_path / "c"), "--resamples", "100"]) == 0
    doc = json.loads((tmp_path / "c" / "results.json").read_text())
    (name, values), = doc["differences"]["judge"].items()
    judged = values["judge_accuracy"]
    assert judged["test"] == "exact McNemar" and judged["other_only"] > 0 and judged["base_only"] == 0
    assert judged["too_few"] and not judged["real"]  # 12 rows
    cell = doc["intervals"]["judge"]["overall"][name]["judge_accuracy"]
    assert cell["value"] == 1.0 == doc["leaderboard"]["judge"]["overall"][name]["judge_accuracy"]


def test_local_image_text_to_text_judge_gets_a_text_only_turn(scored, tmp_path):
    folder = _copy(scored, tmp_path)
    assert main(["eval", "judge", str(folder), "--judge-model", "skinvl-tiny", "--max-new-tokens", "3"]) == 0
    doc = _doc(folder)
    assert doc["judge"]["id"] == "local:skinvl-tiny@unhashed" and doc["judge"]["model_type"] == "skinvl"
    assert doc["metrics"]["judge"]["n"] == len(scored[1])


def test_non_finite_axis_scores_are_a_broken_reply_not_a_crash():
    for bad in ("Infinity", "NaN", "-Infinity", "2.5", "6"):
        reply = '{"scores": {' + ", ".join(f'"{a}": {bad}' for a in AXES) + '}, "reason": "r"}'
        assert parse_reply(reply, "dermbench") is None, bad
    good = '{"scores": {' + ", ".join(f'"{a}": 4' for a in AXES) + '}, "reason": "r"}'
    assert parse_reply(good, "dermbench")["scores"] == dict.fromkeys(AXES, 4)


def test_verdict_files_are_confined_whole_and_a_torn_one_is_one_line(scored, tmp_path, capsys):
    run = _copy(scored, tmp_path)
    with JudgeServer() as server:
        assert _judge(run, server.url) == 0
    assert not list(run.glob(".judge-*.tmp"))  # written whole, then renamed
    # a torn verdict file of another judge: one line and exit 2, not a traceback
    (run / "judge-other-0000.jsonl").write_text('{"id": "x", "status": "judged", "verdict": "correct"}\n{"id": ')
    with JudgeServer() as server:
        assert _judge(run, server.url) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "judge-other-0000.jsonl, line 2" in err[-1]
    (run / "judge-other-0000.jsonl").unlink()
    # results.json naming a verdict file outside the run folder is refused, never read
    other = _copy(scored, tmp_path, "other")
    with JudgeServer() as server:
        assert _judge(other, server.url) == 0
    assert main(["eval", "compare", str(run), str(other), "--out", str(tmp_path / "c"), "--resamples", "50"]) == 0
    doc = _doc(run)
    doc["judge"]["verdicts"] = "../../../etc/passwd"
    (run / "results.json").write_text(json.dumps(doc))
    assert main(["eval", "compare", str(run), str(other), "--out", str(tmp_path / "c"), "--resamples", "50"]) == 2
    assert "judge.verdicts" in capsys.readouterr().err
