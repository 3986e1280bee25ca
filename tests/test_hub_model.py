"""``skinvl push`` end to end, through real HTTP, against the loopback Hub of tests/hub_server.py.

One child process (the real huggingface_hub client, online, pointed at the server) runs every push
scenario; a second, fresh child in which ``skinvl`` cannot be imported loads the pushed model with
``trust_remote_code=True``. The test process only builds folders, arms failures on the server and
checks what the server holds.
"""

from __future__ import annotations

import json
import shutil
import socket

import pytest
from hub_server import HubServer, HubUser, assert_hostile_entries_left_out, client_env, run_python

from mm_skin.cli import ExitCode

TOKEN = "hf_skinvlTESTwrite0123456789abcdef"
READ_TOKEN = "hf_skinvlTESTread0123456789abcdef"
WRONG_TOKEN = "hf_skinvlTESTwrong0123456789abcdef"
ORG = "mm-skin-org"
REPO = f"{ORG}/skinvl-tiny"

PUSHER = r"""
import contextlib, io, json, os, sys, time
from pathlib import Path
T0 = time.monotonic()
cfg = json.loads(sys.argv[1])
from huggingface_hub import HfApi, constants
from skinvl import hub
import skinvl
T_IMPORT = time.monotonic() - T0

def cli(*argv):
    from mm_skin.cli import add_subcommands, make_parser
    parser = make_parser("skinvl", "", "0")
    hub.register_cli(add_subcommands(parser))  # skinvl push exactly as `skinvl` registers it
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        args = parser.parse_args(list(argv))
        rc = args.func(args)
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "seconds": time.monotonic() - t0}

def attempt(fn, *a, **k):
    t0 = time.monotonic()
    try:
        return {"ok": fn(*a, **k).commit_url, "seconds": time.monotonic() - t0}
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc), "seconds": time.monotonic() - t0}

api = HfApi()
r = {}
known = {"base_model": "microsoft/llava-med-v1.5-mistral-7b", "datasets": [cfg["org"] + "/mm-skin"]}
card_flags = ["--base-model", known["base_model"], "--dataset", known["datasets"][0]]
r["first"] = cli("push", cfg["tiny"], cfg["repo"], "--results", cfg["results"], "--commit-message", "first", *card_flags)
r["second"] = cli("push", cfg["tiny"], cfg["repo"], "--results", cfg["results"], *card_flags)
r["api_again"] = attempt(hub.push_model_folder, cfg["tiny"], cfg["repo"], results=[cfg["results"]], **known)
for name, folder in cfg["bad"].items():
    r["bad_" + name] = cli("push", folder, cfg["org"] + "/skinvl-bad")
# a failure midway (LFS PUT, then the commit) must leave the repo at its previous commit
fail_repo = cfg["org"] + "/skinvl-fail"
r["fail_v1"] = attempt(hub.push_model_folder, cfg["tiny"], fail_repo)
r["fail_head_v1"] = api.repo_info(fail_repo).sha
r["fail_put"] = attempt(hub.push_model_folder, cfg["tiny_v2"], fail_repo)
r["fail_head_after_put"] = api.repo_info(fail_repo).sha
r["fail_commit"] = attempt(hub.push_model_folder, cfg["tiny_v2"], fail_repo)
r["fail_head_after_commit"] = api.repo_info(fail_repo).sha
r["fail_v2"] = attempt(hub.push_model_folder, cfg["tiny_v2"], fail_repo)
# private repo on a branch
r["private"] = cli("push", cfg["tiny"], cfg["org"] + "/skinvl-private", "--private", "--revision", "dev")
# cached login instead of HF_TOKEN
os.environ.pop("HF_TOKEN")
r["no_token"] = cli("push", cfg["tiny"], cfg["repo"])
Path(constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
Path(constants.HF_TOKEN_PATH).write_text(cfg["token"])
r["cached_login"] = attempt(hub.push_model_folder, cfg["tiny"], cfg["repo"], results=[cfg["results"]], **known)
Path(constants.HF_TOKEN_PATH).unlink()
os.environ["HF_TOKEN"] = cfg["wrong_token"]
r["wrong_token"] = cli("push", cfg["tiny"], cfg["repo"])
os.environ["HF_TOKEN"] = cfg["read_token"]
r["read_token"] = cli("push", cfg["tiny"], cfg["repo"])
os.environ["HF_TOKEN"] = "hf_t\u00f6ken" + cfg["token"][8:]
r["non_ascii_token"] = cli("push", cfg["tiny"], cfg["repo"])
os.environ["HF_TOKEN"] = cfg["token"]
r["bad_repo_id"] = cli("push", cfg["tiny"], "not a repo id")
r["bad_repo_name"] = cli("push", cfg["tiny"], cfg["org"] + "/sk\u00efnvl--x")
r["hostile"] = cli("push", cfg["hostile"], cfg["org"] + "/skinvl-hostile")
r["echo"] = cli("push", cfg["tiny"], cfg["org"] + "/skinvl-echo")
r["space"] = cli("push", cfg["space"], cfg["org"] + "/skinvl-demo", "--repo-type", "space")
r["space_again"] = cli("push", cfg["space"], cfg["org"] + "/skinvl-demo", "--repo-type", "space")
r["unreachable"] = cli("push", cfg["tiny"], cfg["repo"], "--endpoint", cfg["dead_endpoint"])
r["timing"] = {"import": T_IMPORT, "total": time.monotonic() - T0}
print(json.dumps(r))
"""

READER = r"""
import json, sys
sys.modules["skinvl"] = None  # our package must not be importable: the Hub copy carries the code
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
cfg = json.loads(sys.argv[1])
model = AutoModelForImageTextToText.from_pretrained(cfg["repo"], trust_remote_code=True).eval()
inputs = torch.load(cfg["inputs"])
with torch.no_grad():
    logits = model(**inputs).logits
torch.save(logits, cfg["logits"])
processor = AutoProcessor.from_pretrained(cfg["repo"], trust_remote_code=True)
print(json.dumps({
    "model_class": type(model).__module__ + "." + type(model).__name__,
    "processor_class": type(processor).__name__,
    "skinvl_importable": sys.modules.get("skinvl") is not None,
}))
"""


def _dead_endpoint() -> str:
    """A loopback URL on which nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def hub():
    users = {
        TOKEN: HubUser("alice", orgs=(ORG,)),
        READ_TOKEN: HubUser("bob", orgs=(ORG,), role="read"),
    }
    with HubServer(users) as server:
        yield server


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The tiny SkinVL folder, a changed copy (v2), invalid folders, results.json and reference logits."""
    import torch
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from skinvl.presets import build_tiny

    root = tmp_path_factory.mktemp("hub_model")
    model, processor = build_tiny(seed=0)
    tiny = root / "skinvl-tiny"
    model.save_pretrained(tiny)
    processor.save_pretrained(tiny)
    model2, processor2 = build_tiny(seed=1)
    tiny_v2 = root / "skinvl-tiny-v2"
    model2.save_pretrained(tiny_v2)
    processor2.save_pretrained(tiny_v2)

    bad = {}
    bad["no_config"] = root / "bad-no-config"
    shutil.copytree(tiny, bad["no_config"])
    (bad["no_config"] / "config.json").unlink()
    bad["wrong_shape"] = root / "bad-wrong-shape"
    shutil.copytree(tiny, bad["wrong_shape"])
    weights = load_file(bad["wrong_shape"] / "model.safetensors")
    key = next(k for k in sorted(weights) if k.endswith("weight") and weights[k].ndim == 2)
    weights[key] = weights[key][:-1].clone()
    save_file(weights, bad["wrong_shape"] / "model.safetensors", metadata={"format": "pt"})
    bad["bad_card"] = root / "bad-card"
    shutil.copytree(tiny, bad["bad_card"])
    (bad["bad_card"] / "README.md").write_text("---\nlicense: [unclosed\n---\n# card\n")

    # What must not be uploaded: dot-files, dot-folders, a symlink leaving the folder.
    hostile = root / "hostile"
    shutil.copytree(tiny, hostile)
    (hostile / ".env").write_text("HF_TOKEN=hf_planted0123456789\n")
    (hostile / ".git").mkdir()
    (hostile / ".git" / "config").write_text("[core]\n")
    (hostile / ".cache" / "huggingface").mkdir(parents=True)
    (hostile / ".cache" / "huggingface" / "a.lock").write_text("")
    (root / "private-notes.txt").write_text("patient 1234")
    (hostile / "notes.txt").symlink_to(root / "private-notes.txt")
    (hostile / "config-alias.json").symlink_to("config.json")  # inside the folder: uploaded
    space = root / "space"
    space.mkdir()
    (space / "README.md").write_text("---\ntitle: SkinVL demo\nsdk: gradio\nsdk_version: 5.0.0\n"
                                     "app_file: app.py\n---\n# SkinVL demo\n")
    (space / "app.py").write_text("print('demo')\n")
    (space / ".env").write_text("SECRET=1\n")

    results = root / "results.json"
    results.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "task": "vqa",
                "model": "skinvl-tiny",
                "dataset": "examples/mm-skin-sample",
                "config": "vqa",
                "split": "test",
                "n_samples": 12,
                "metrics": {
                    "paper": {"n": 12, "bleu_1": 0.125, "rouge_l": 0.2, "meteor": None},
                    "standard": {"n": 12, "sacrebleu": 0.05, "yes_no_accuracy": None},
                },
                "per_modality": {
                    "paper": {"clinical": {"n": 5, "bleu_1": 0.1, "rouge_l": 0.25, "meteor": None}}
                },
                "unavailable": {
                    "meteor": {
                        "reason": "WordNet is not installed.",
                        "fix": "python -m nltk.downloader wordnet",
                    }
                },
            }
        )
    )

    # Reference logits of the local folder, loaded as a user of our package would.
    from transformers import AutoModelForImageTextToText, AutoProcessor

    local = AutoModelForImageTextToText.from_pretrained(tiny).eval()
    local_processor = AutoProcessor.from_pretrained(tiny)
    image = Image.new("RGB", (40, 30), (180, 90, 60))
    inputs = dict(
        local_processor(
            images=[image],
            text=["[INST] <image>\nWhat lesion is this? [/INST]"],
            return_tensors="pt",
        )
    )
    torch.save(inputs, root / "inputs.pt")
    with torch.no_grad():
        reference = local(**inputs).logits
    return {
        "root": root,
        "tiny": tiny,
        "tiny_v2": tiny_v2,
        "hostile": hostile,
        "space": space,
        "bad": bad,
        "results": results,
        "reference": reference,
    }


@pytest.fixture(scope="module")
def pushed(hub, folders):
    """Run every push scenario in one child process; return its report and full output."""
    root = folders["root"]
    # Fail the 2nd LFS PUT of skinvl-fail (v1's passes), then the 2nd commit (v1's passes).
    hub.fail(
        "PUT",
        rf"^/lfs-upload/models%2F{ORG}%2Fskinvl-fail/",
        403,
        message="SignatureDoesNotMatch",
        skip=1,
    )
    hub.fail(
        "POST", rf"^/api/models/{ORG}/skinvl-fail/commit/", 500, message="Internal Error", skip=1
    )
    # A server error that echoes the token and a pre-signed URL.
    hub.fail("POST", rf"^/api/models/{ORG}/skinvl-echo/commit/", 500,
             message=f"bad token {TOKEN} for https://cdn.example/o?X-Amz-Signature=deadbeef&X-Amz-Credential=k")
    cfg = {
        "tiny": str(folders["tiny"]),
        "hostile": str(folders["hostile"]),
        "space": str(folders["space"]),
        "tiny_v2": str(folders["tiny_v2"]),
        "bad": {k: str(v) for k, v in folders["bad"].items()},
        "results": str(folders["results"]),
        "repo": REPO,
        "org": ORG,
        "token": TOKEN,
        "read_token": READ_TOKEN,
        "wrong_token": WRONG_TOKEN,
        "dead_endpoint": _dead_endpoint(),
    }
    report, output = run_python(
        PUSHER, json.dumps(cfg), env=client_env(hub, root / "home-pusher", TOKEN), cwd=root
    )
    return report, output


@pytest.mark.slow
def test_push_makes_one_commit_with_lfs_weights_and_a_parsable_card(hub, folders, pushed):
    from huggingface_hub import ModelCard

    report, _ = pushed
    first = report["first"]
    assert first["rc"] == 0, first
    assert "in one commit" in first["out"]
    history = hub.history(REPO)
    assert [c.title for c in history] == ["first", "initial commit"]
    files = hub.files(REPO)
    local = {
        p.relative_to(folders["tiny"]).as_posix(): p.read_bytes()
        for p in folders["tiny"].rglob("*")
        if p.is_file()
    }
    assert {k: v for k, v in files.items() if k not in ("README.md", ".gitattributes")} == local
    assert "model.safetensors" in hub.lfs_paths(REPO)
    card = ModelCard(files["README.md"].decode(), ignore_metadata_errors=False)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "image-text-to-text"
    assert card.data.base_model == ["microsoft/llava-med-v1.5-mistral-7b"]  # as given: never a default guess
    assert card.data.datasets == [f"{ORG}/mm-skin"]
    metrics = {(r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}
    assert metrics == {
        ("bleu_1", "paper"): 12.5,
        ("rouge_l", "paper"): 20.0,
        ("sacrebleu", "standard"): 5.0,
    }
    assert "not a medical device" in card.text
    assert "trust_remote_code=True" in card.text
    assert "METEOR not computed" in card.text and "n/a" in card.text


@pytest.mark.slow
def test_unchanged_folder_makes_no_new_commit(hub, pushed):
    report, _ = pushed
    assert report["second"]["rc"] == 0 and "no new commit" in report["second"]["out"]
    assert report["api_again"]["ok"] is None
    assert (
        report["cached_login"]["ok"] is None
    )  # token from `hf auth login`'s file, nothing changed
    assert [c.title for c in hub.history(REPO)] == ["first", "initial commit"]


@pytest.mark.slow
def test_invalid_folders_are_refused_before_any_upload(hub, pushed):
    report, _ = pushed
    messages = {
        "no_config": "config.json is missing",
        "wrong_shape": "do not match the configuration",
        "bad_card": "model card metadata does not parse",
    }
    for name, expected in messages.items():
        result = report[f"bad_{name}"]
        assert result["rc"] == 2, result
        assert "refused, nothing uploaded" in result["err"] and expected in result["err"], result[
            "err"
        ]
    assert f"models/{ORG}/skinvl-bad" not in hub.repos
    assert hub.requests_for("skinvl-bad") == []


@pytest.mark.slow
def test_failure_midway_leaves_the_previous_commit(hub, pushed):
    report, _ = pushed
    v1 = report["fail_head_v1"]
    assert (
        report["fail_put"]["error"] == "PushError"
        and "previous commit" in report["fail_put"]["message"]
    )
    assert report["fail_head_after_put"] == v1
    # the failed PUT went to a pre-signed URL: its signature is not in the message
    assert "X-Signature" not in report["fail_put"]["message"]
    assert (
        report["fail_commit"]["error"] == "PushError"
        and "(500)" in report["fail_commit"]["message"]
    )
    assert report["fail_head_after_commit"] == v1
    assert report["fail_v2"]["ok"].endswith(hub.head(f"{ORG}/skinvl-fail"))
    # exactly three commits ever reached the branch: initial, v1, v2 (the failed attempts made none)
    assert len([c for c in hub.commits if c[0] == f"models/{ORG}/skinvl-fail"]) == 3
    assert hub.history(f"{ORG}/skinvl-fail")[1].oid == v1


@pytest.mark.slow
def test_private_push_to_a_branch(hub, pushed):
    import urllib.error
    import urllib.request

    report, _ = pushed
    assert report["private"]["rc"] == 0, report["private"]
    repo_id = f"{ORG}/skinvl-private"
    assert hub.repos[f"models/{repo_id}"].private
    assert hub.head(repo_id, branch="dev") != hub.head(repo_id, branch="main")
    assert "model.safetensors" in hub.files(repo_id, revision="dev")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{hub.endpoint}/{repo_id}/resolve/dev/config.json")
    assert err.value.code == 401 and err.value.headers["X-Error-Code"] == "RepoNotFound"


@pytest.mark.slow
def test_token_problems_fail_fast_with_a_clear_message(pushed):
    report, output = pushed
    assert (
        report["no_token"]["rc"] == ExitCode.PUSH and "no Hugging Face token found" in report["no_token"]["err"]
    )
    assert (
        report["wrong_token"]["rc"] == ExitCode.PUSH
        and "rejected the token from HF_TOKEN" in report["wrong_token"]["err"]
    )
    assert report["read_token"]["rc"] == ExitCode.PUSH and "read-only" in report["read_token"]["err"]
    assert (
        report["unreachable"]["rc"] == ExitCode.PUSH and "cannot reach the Hub" in report["unreachable"]["err"]
    )
    for name in ("no_token", "wrong_token", "read_token", "unreachable"):
        assert report[name]["seconds"] < 5, (name, report[name])  # no ~20 s retry loop
    for secret in (TOKEN, READ_TOKEN, WRONG_TOKEN):
        assert secret not in output
        assert secret not in json.dumps(report)


@pytest.mark.slow
def test_pushed_model_loads_without_our_package(hub, folders, pushed):
    import torch

    root = folders["root"]
    outside = root / "outside"
    outside.mkdir()
    cfg = {"repo": REPO, "inputs": str(root / "inputs.pt"), "logits": str(root / "hub_logits.pt")}
    report, _ = run_python(
        READER, json.dumps(cfg), env=client_env(hub, root / "home-reader", None), cwd=outside
    )
    assert not report["skinvl_importable"]
    assert report["model_class"].startswith("transformers_modules."), report
    assert report["model_class"].endswith("SkinVLForConditionalGeneration")
    torch.testing.assert_close(
        torch.load(root / "hub_logits.pt"), folders["reference"], rtol=0, atol=1e-6
    )


def _one_line_error(result: dict, code: int, *expected: str) -> None:
    assert result["rc"] == code, result
    lines = result["err"].strip().splitlines()
    assert len(lines) == 1 and all(e in lines[0] for e in expected), result["err"]


@pytest.mark.slow
def test_bad_token_and_repo_id_are_one_line_with_an_exit_code(pushed):
    report, output = pushed
    _one_line_error(report["non_ascii_token"], ExitCode.BAD_INPUT, "token from HF_TOKEN", "non-ASCII")
    _one_line_error(report["bad_repo_id"], ExitCode.BAD_INPUT, "'not a repo id'", "NAMESPACE/NAME")
    _one_line_error(report["bad_repo_name"], ExitCode.BAD_INPUT, "is not valid")
    assert "t\u00f6ken" not in output and "töken" not in output


@pytest.mark.slow
def test_server_error_echoing_the_token_is_scrubbed(hub, pushed):
    report, output = pushed
    _one_line_error(report["echo"], ExitCode.PUSH, "(500)", "previous commit", "bad token ***")
    assert TOKEN not in output and "deadbeef" not in output and "X-Amz-Credential" not in output
    assert hub.head(f"{ORG}/skinvl-echo") == hub.history(f"{ORG}/skinvl-echo")[-1].oid  # initial commit only


@pytest.mark.slow
def test_dot_files_and_escaping_symlinks_are_not_uploaded_and_listed(hub, folders, pushed):
    report, _ = pushed
    files = assert_hostile_entries_left_out(hub, report["hostile"], f"{ORG}/skinvl-hostile", "model", "notes.txt",
                                            b"patient 1234")
    assert files["config-alias.json"] == (folders["tiny"] / "config.json").read_bytes()


@pytest.mark.slow
def test_space_push(hub, pushed):
    report, _ = pushed
    assert report["space"]["rc"] == 0 and "in one commit" in report["space"]["out"], report["space"]
    assert report["space_again"]["rc"] == 0 and "no new commit" in report["space_again"]["out"]
    files = hub.files(f"{ORG}/skinvl-demo", "space")
    assert sorted(files) == [".gitattributes", "README.md", "app.py"]


# --------------------------------------------------------------------------- the model card, offline
ZEROSHOT = {
    "task": "zero-shot-classification", "dataset": "/data/derm/HAM10000_test.csv", "split": "test",
    "metrics": {"accuracy": 0.5, "macro_f1": 0.25, "unparseable": 21, "n": 100, "ambiguous": 3},
}
VQA_NO_BERTSCORE = {
    "task": "vqa", "dataset": "my-org/mm-skin", "config": "vqa", "split": "test", "n_samples": 12,
    "metrics": {"paper": {"n": 12, "bleu_1": 0.125, "bertscore_f1": None}},
    "unavailable": {"bertscore": {"reason": "BERTScore was switched off (--no-bertscore).",
                                  "fix": "drop --no-bertscore"}},
}


def test_card_counts_stay_counts_and_each_result_keeps_its_dataset(folders):
    from huggingface_hub import ModelCard

    from skinvl.model_card import render_model_card

    text = render_model_card(folders["tiny"], "me/skinvl-ft", results=[ZEROSHOT, VQA_NO_BERTSCORE])
    card = ModelCard(text, ignore_metadata_errors=False)
    by_dataset = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    # The local label file has no Hub dataset id: its table is in the body, not in model-index.
    assert by_dataset == {("my-org/mm-skin", "bleu_1"): 12.5}
    row = next(line for line in text.splitlines() if line.startswith("| overall (100)"))
    assert row.split("|")[1:-1] == [" overall (100) ", " 50.00 ", " 25.00 ", " 21 ", " 3 "]
    assert "2100" not in text and "Unparseable (count)" in text
    assert "### HAM10000" in text and "### my-org/mm-skin (vqa)" in text
    assert "BERTScore not computed (reported as n/a, never 0): BERTScore was switched off." in text
    assert "--no-bertscore" not in text and "Fix" not in text and "skinvl push" not in text


def test_card_training_section_comes_from_the_recorded_settings(folders, tmp_path):
    from skinvl.model_card import render_model_card

    unknown = render_model_card(folders["tiny"], "me/skinvl-ft")
    assert "training settings of this checkpoint are unknown" in unknown
    for claim in ("128", "16 per GPU", "DeepSpeed", "2e-5"):  # the paper's recipe is not claimed
        assert claim not in unknown.split("## Training")[1].split("## Evaluation")[0]

    folder = tmp_path / "merged"
    shutil.copytree(folders["tiny"], folder)
    (folder / "training_settings.json").write_text(json.dumps({
        "options": {"model": "skinvl-tiny", "data": ["my-org/derm-vqa", str(tmp_path / "local-data")],
                    "output": str(tmp_path / "out"), "lora_r": 8, "epochs": 2.0, "batch_size": 4},
        "base_model": "my-org/skinvl-base", "global_step": 30,
        "library_versions": {"trl": "1.16.0", "peft": None},
    }))
    text = render_model_card(folder, "me/skinvl-ft")
    training = text.split("## Training")[1].split("## Evaluation")[0]
    assert "| `lora_r` | `8` |" in training and "| `epochs` | `2.0` |" in training
    assert "| `global_step` | `30` |" in training and "`trl 1.16.0`" in training
    assert "local-data (local)" in training and str(tmp_path) not in text  # no local paths
    assert "`output`" not in training and "unknown" not in training
    from huggingface_hub import ModelCard

    data = ModelCard(text, ignore_metadata_errors=False).data
    assert data.base_model == ["my-org/skinvl-base"] and data.datasets == ["my-org/derm-vqa"]
