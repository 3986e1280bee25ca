"""``skinvl eval lmms-task``: a task folder for lmms-eval's ``--include_path`` that runs the
shipped ``mmskin_vqa`` task on your data, so no YAML inside site-packages is ever edited::

    lmms-eval --model llava_hf --model_args pretrained=llava-hf/llava-1.5-7b-hf \\
        --tasks mmskin_vqa --include_path "$(skinvl eval lmms-task --data mm-skin)" \\
        --log_samples --output_path logs/

The folder holds one ``mmskin_vqa.yaml``: an ``include`` of the shipped task (its prompts, hooks and
metrics; its ``!function`` tags resolve beside the shipped file) and the ``dataset_path`` given.
``--data`` defaults to the ``MMSKIN_DATA`` environment variable.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

TASK_YAML = Path(__file__).parent / "mmskin_vqa.yaml"
DATA_ENV = "MMSKIN_DATA"


@dataclasses.dataclass(kw_only=True)
class LmmsTaskOptions:
    """Options of ``skinvl eval lmms-task``."""

    data: str | None = dataclasses.field(default=None, metadata={
        "help": f"the built MM-Skin folder or its Hub id (default: ${DATA_ENV})", "metavar": "DATASET"})  # fmt: skip
    out: str = dataclasses.field(default="mmskin-lmms-task", metadata={
        "help": "task folder to write (pass it to lmms-eval --include_path)", "metavar": "DIR"})  # fmt: skip


def write_task_folder(data: str, out: str | Path) -> Path:
    """Write ``out/mmskin_vqa.yaml`` for ``data`` (a local folder becomes an absolute path)."""
    import yaml

    from mm_skin.hub import is_hub_id

    if Path(data).is_dir():
        data = str(Path(data).resolve())
    elif not is_hub_id(data):
        raise ValueError(f"--data {data!r}: no such folder and not a Hub id; give the folder "
                         "`mm-skin build` wrote or a dataset repo id such as my-org/mm-skin")  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump({"include": str(TASK_YAML), "dataset_path": data}, sort_keys=False)
    (out / TASK_YAML.name).write_text(
        "# Written by `skinvl eval lmms-task`: the shipped mmskin_vqa task on this dataset.\n" + body,
        encoding="utf-8",
    )
    return out.resolve()


def run_lmms_task(options: LmmsTaskOptions) -> int:
    """Handler of ``skinvl eval lmms-task``: write the folder and print its path (for ``$(...)``)."""
    from mm_skin.cli import ExitCode

    data = options.data or os.environ.get(DATA_ENV)
    if not data:
        print(f"error: give --data DATASET (or set {DATA_ENV}): the built MM-Skin folder or its Hub id",
              file=sys.stderr)  # fmt: skip
        return ExitCode.BAD_INPUT
    try:
        print(write_task_folder(data, options.out))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return ExitCode.OK
