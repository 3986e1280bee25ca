"""What both command lines (``mm-skin`` and ``skinvl``) share: exit codes and options-as-dataclasses.

Each workflow declares its options ONCE, as a typed dataclass; its sub-command is derived from
that dataclass by transformers' :class:`~transformers.HfArgumentParser` (which imports no torch).
Field metadata carries the help text; ``positional=True`` makes a field a positional argument;
a field without a default is required and ``--help`` says so instead of "(default: None)".

Example::

    >>> @dataclasses.dataclass
    ... class HelloOptions:
    ...     name: str = dataclasses.field(metadata={"positional": True, "help": "who to greet"})
    ...     loud: bool = dataclasses.field(default=False, metadata={"help": "shout"})
    >>> parser = make_parser("demo", "A demo.", "0.1")
    >>> sub = add_subcommands(parser)
    >>> _ = add_command(sub, "hello", HelloOptions, lambda o: 0, "say hello")
    >>> options_from(parser.parse_args(["hello", "you", "--loud"]), HelloOptions)
    HelloOptions(name='you', loud=True)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import enum
import functools
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    """Exit codes of both CLIs (documented in docs/reliability.md and in every ``--help`` epilog)."""

    OK = 0
    FAILED = 1  # an unexpected error (a traceback: please report it)
    BAD_INPUT = 2  # bad input (also a folder, repo id or token a push refuses): one line says the fix
    STRICT = 3  # --strict and some rows could not be written
    PUSH = 4  # a push was refused or failed (nothing partial is committed)


EXIT_CODES_HELP = (
    "exit codes: 0 ok; 1 unexpected error (a bug: please report it); 2 bad input, including a "
    "folder, repo id or token that a push refuses (the message names the file, row, value and the "
    "fix); 3 --strict and some rows were not written; 4 push failed (nothing partial committed)."
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults, marks required options, and never prints "(default: None)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required and action.option_strings:
            return f"{text} (required)"
        if action.default in (None, False, [], argparse.SUPPRESS) or "%(default)" in text:
            return text
        return super()._get_help_string(action)


def _add_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
    """One dataclass field as an argument of ``parser`` (:class:`OptionsParser`'s field hook)."""
    from transformers import HfArgumentParser  # already imported: only an OptionsParser calls this

    metadata = dict(field.metadata)
    if metadata.pop("positional", False):
        kwargs = {"type": _scalar_type(field.type), **metadata}
        if field.default is not dataclasses.MISSING:
            kwargs.update(nargs="?", default=field.default)
        parser.add_argument(field.name, **kwargs)
        return
    flag = f"--{field.name.replace('_', '-')}"
    if field.type is bool or field.type == "bool":
        # A bare flag: `--strict`, never `--strict true`, so a following positional is not eaten.
        action = argparse.BooleanOptionalAction if field.default is True else "store_true"
        parser.add_argument(flag, dest=field.name, action=action, default=field.default, **metadata)
        return
    if _is_list(field.type) and "action" not in metadata and not isinstance(field.default, str):
        # `--data a --data b` and `--data a b` both mean [a, b] (argparse's default keeps the last).
        field = copy.copy(field)
        field.metadata = types.MappingProxyType({**field.metadata, "action": "extend"})
    # HfArgumentParser adds `--name_with_underscores` and `--name-with-hyphens`; keep the latter.
    before = len(parser._actions)
    HfArgumentParser._parse_dataclass_field(parser, field)
    for action in parser._actions[before:]:
        if flag in action.option_strings and len(action.option_strings) > 1:
            for spelling in list(action.option_strings):
                if spelling != flag and "_" in spelling:
                    action.option_strings.remove(spelling)
                    parser._option_string_actions.pop(spelling, None)


@functools.cache
def options_parser_class() -> type[argparse.ArgumentParser]:
    """:class:`OptionsParser`, defined on first use: a module that only needs :class:`ExitCode`
    (``mm_skin.audit``, ``mm_skin.hub``) then does not import transformers (~1 s)."""
    from transformers import HfArgumentParser

    class OptionsParser(HfArgumentParser):
        """HfArgumentParser plus positional fields, plain ``store_true`` flags and one spelling per option."""

        _parse_dataclass_field = staticmethod(_add_field)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", _HelpFormatter)
            super().__init__(*args, **kwargs)

    return OptionsParser


def __getattr__(name: str) -> Any:
    """``from mm_skin.cli import OptionsParser`` works, without importing transformers before then."""
    if name == "OptionsParser":
        return options_parser_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_list(annotation: Any) -> bool:
    """Whether a field holds a list (``list[X]`` or ``list[X] | None``)."""
    return any(getattr(a, "__origin__", None) is list for a in (annotation, *getattr(annotation, "__args__", ())))


def _scalar_type(annotation: Any) -> Any:
    """The callable argparse converts a positional value with (``X | None`` -> ``X``)."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def make_parser(prog: str, description: str, version: str) -> argparse.ArgumentParser:
    """The top-level parser of a CLI: description, exit codes in the epilog, ``--version``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    return parser


def add_subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """Sub-command slot whose parsers are :class:`OptionsParser` (derived from dataclasses)."""
    return parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                 parser_class=options_parser_class())


def chosen_command(argv: Sequence[str], commands: Iterable[str]) -> str | None:
    """The sub-command named in ``argv`` (its first word that is not an option), if it is one of ``commands``."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in set(commands) else None


def add_command_list(parser: argparse.ArgumentParser, commands: dict[str, str]) -> None:
    """The sub-commands as names and help lines only: enough for ``--help``, ``--version`` and an
    unknown command, without building any options parser (which imports transformers, seconds)."""
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_line in commands.items():
        subparsers.add_parser(name, help=help_line, description=help_line)


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    options: type[T],
    run: Callable[[T], int],
    help: str,
    description: str | None = None,
    parser_class: type[argparse.ArgumentParser] | None = None,
) -> argparse.ArgumentParser:
    """Add sub-command ``name`` derived from the dataclass ``options``; it calls ``run(options)``.

    ``parser_class`` (an :class:`OptionsParser` subclass) parses this one sub-command.
    """
    default_class = subparsers._parser_class  # argparse takes no class per sub-command
    subparsers._parser_class = parser_class or default_class
    try:
        parser = subparsers.add_parser(
            name, dataclass_types=[options], help=help, description=description or help,
            epilog=EXIT_CODES_HELP,
        )
    finally:
        subparsers._parser_class = default_class
    parser.set_defaults(func=lambda ns: run(options_from(ns, options)))
    return parser


def options_from(namespace: argparse.Namespace, options: type[T]) -> T:
    """The dataclass instance for a parsed sub-command (extra namespace entries are ignored)."""
    names = {f.name for f in dataclasses.fields(options) if f.init}
    return options(**{k: v for k, v in vars(namespace).items() if k in names})


def print_problem(message: object, kind: str = "error") -> None:
    """Print ``kind: message`` on stderr as one printable line: messages quote files, servers and
    data, whose escape sequences must not reach the terminal (:func:`mm_skin.untrusted.printable`)."""
    from mm_skin.untrusted import printable

    print(f"{kind}: {printable(str(message))}", file=sys.stderr)


def print_report(text: object, first: str | None = None) -> None:
    """Print a multi-line report from outside data on stderr: each line made printable, its indent
    kept (:func:`print_problem` is for one line). ``first`` prefixes the first line."""
    from mm_skin.untrusted import printable

    lines = str(text).splitlines() or [""]
    if first:
        lines[0] = f"{first}: {lines[0]}"
    print("\n".join(line[: len(line) - len(line.lstrip())] + printable(line) for line in lines), file=sys.stderr)


def run_main(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns its exit code."""
    args = parser.parse_args(argv)
    return int(args.func(args) or ExitCode.OK)
