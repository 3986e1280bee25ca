"""Which optional extra a command needs, checked before it does any work.

``skinvl eval vqa`` without the ``eval`` extra used to load the model, generate every answer and
only then fail on ``import nltk`` (exit 1). Commands now refuse at start with the install command.
The extras' contents are read from the installed distribution's metadata (pyproject.toml's
``[project.optional-dependencies]``), so they are stated in one place.
"""

from __future__ import annotations

import importlib.metadata

DISTRIBUTION = "mm-skin"


def missing_from_extra(extra: str) -> list[str]:
    """The distributions of ``extra`` that are not installed (empty when mm-skin is not installed
    as a distribution: nothing to check against)."""
    from packaging.requirements import Requirement

    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    missing = []
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
            continue
        if requirement.marker.evaluate({"extra": ""}):  # not specific to this extra
            continue
        try:
            importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement.name)
    return missing


def extra_problem(extra: str, command: str) -> str | None:
    """One line naming what ``command`` lacks and the install command, or None when all is there."""
    missing = missing_from_extra(extra)
    if not missing:
        return None
    return (f"{command} needs the {extra} extra, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install 'mm-skin[{extra}]'")  # fmt: skip
