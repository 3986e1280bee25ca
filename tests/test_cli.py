"""The shared CLI foundation (mm_skin/cli.py): options declared once, the same exit codes in both CLIs."""

from __future__ import annotations

import dataclasses
import doctest

import pytest

import mm_skin.cli
import mm_skin_dataset
from mm_skin.cli import ExitCode, add_command, add_subcommands, make_parser, options_from


@dataclasses.dataclass(kw_only=True)
class _Options:
    source: str = dataclasses.field(metadata={"positional": True, "help": "the input"})
    model: str = dataclasses.field(metadata={"help": "which model"})
    out: str = dataclasses.field(default="out", metadata={"help": "where"})
    against: list[str] = dataclasses.field(default_factory=list, metadata={"help": "folders"})
    strict: bool = dataclasses.field(default=False, metadata={"help": "fail on any bad row"})
    merge: bool = dataclasses.field(default=True, metadata={"help": "merge at the end"})
    num_proc: int | None = dataclasses.field(default=None, metadata={"help": "workers"})


def _parser():
    parser = make_parser("demo", "A demo CLI.", "9.9")
    add_command(add_subcommands(parser), "run", _Options, lambda o: ExitCode.OK, "run it")
    return parser


def test_options_are_derived_from_the_dataclass() -> None:
    args = _parser().parse_args(
        ["run", "--strict", "data", "--model", "m", "--against", "a", "b", "--against", "c",
         "--no-merge", "--num-proc", "3"]
    )
    assert options_from(args, _Options) == _Options(
        source="data", model="m", against=["a", "b", "c"], strict=True, merge=False, num_proc=3
    )
    assert options_from(_parser().parse_args(["run", "x", "--model", "m"]), _Options) == _Options(source="x", model="m")


def test_help_marks_required_options_and_shows_only_real_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "which model (required)" in text
    assert "where (default: out)" in text
    assert "(default: None)" not in text and "--num_proc" not in text
    assert "exit codes: 0 ok" in text


def test_missing_required_option_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["run", "x"])
    assert exc.value.code == 2 and "--model" in capsys.readouterr().err


@pytest.mark.parametrize("main", [mm_skin_dataset.main, "skinvl"])
def test_both_clis_have_version_and_the_same_exit_code_epilog(main, capsys) -> None:
    if main == "skinvl":
        from skinvl.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and "0." in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert " ".join(mm_skin.cli.EXIT_CODES_HELP.split()) in " ".join(capsys.readouterr().out.split())


def test_doctest() -> None:
    assert doctest.testmod(mm_skin.cli).failed == 0
