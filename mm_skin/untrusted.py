"""Text that came from outside (a server's answer, a file's cell, a dataset's description) on its
way out again: to a terminal, into a CSV a spreadsheet opens, into a card the Hub renders, or next
to a secret. One rule per destination, used by every writer of that destination.

- :func:`printable`: for the terminal and one-line messages: ANSI/OSC escape sequences (clear
  screen, window title, clipboard write) and every other control or bidi-override character go.
- :func:`redact`: a secret, and any fragment of it of :data:`MIN_SECRET_FRAGMENT` characters or
  more (a server may echo the key cut short), replaced by ``***``; whitespace is kept.
- :func:`csv_cell` / :func:`csv_value`: a cell that a spreadsheet would run as a formula (it
  starts with ``=``, ``+``, ``-``, ``@``, tab or CR) gets a leading ``'``; :func:`csv_value` undoes
  it when our CSVs are read back, so scores do not change. JSON lines keep the raw text.
- :func:`card_text` / :func:`card_code`: data in a Markdown card, as prose (HTML and Markdown
  syntax escaped) or inside a code span (no backtick, pipe or newline can end it).

Nothing here imports anything heavy.

>>> printable("HTTP 500: \\x1b]0;pwned\\x07\\x1b[2Jbad gateway\\n")
'HTTP 500: bad gateway'
>>> redact("auth=Bearer sk-live-0123456789 (echo: sk-live-01234)", "sk-live-0123456789")
'auth=Bearer *** (echo: ***)'
>>> csv_cell("=HYPERLINK(\\"http://x\\")"), csv_value("'=HYPERLINK(\\"http://x\\")")
('\\'=HYPERLINK("http://x")', '=HYPERLINK("http://x")')
>>> card_text("<img src=x onerror=alert(1)> [click](javascript:alert(1))")
'&lt;img src=x onerror=alert(1)&gt; \\\\[click\\\\](javascript:alert(1))'
"""

from __future__ import annotations

import html
import re
import unicodedata

# Shorter pieces of a key are too likely to be ordinary words of a message to be redacted.
MIN_SECRET_FRAGMENT = 8
# A spreadsheet treats a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ST), and two-character ESC sequences.
_ESCAPE_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?|\x9b[0-?]*[ -/]*[@-~]")
# Bidi overrides and isolates reorder what a terminal or a review shows (Trojan Source).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_SECRET_PIECE_RE = re.compile(rf"[A-Za-z0-9_\-.~+/=]{{{MIN_SECRET_FRAGMENT},}}")
# Emphasis, code, links/images (no "[": no link), table cells, strike-through, escapes; HTML is
# escaped separately. Parentheses, "#" and "!" do nothing without a "[" or a line start.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]|~])")


def printable(text: str) -> str:
    """``text`` as one line a terminal shows as is: escape sequences and control characters removed,
    line breaks and tabs turned into spaces (other spaces kept: a quoted value stays exact)."""
    text = _ESCAPE_RE.sub("", text)
    kept = []
    for char in text:
        if char in "\n\r\t\v\f":
            kept.append(" ")
        elif unicodedata.category(char) != "Cc" and char not in _BIDI:
            kept.append(char)
    return "".join(kept).strip()


def redact(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` or any piece of it of at least MIN_SECRET_FRAGMENT characters."""
    if not secret:
        return text
    text = text.replace(secret, "***")

    def piece(match: re.Match[str]) -> str:
        word = match.group(0)
        return "***" if word in secret else word

    return _SECRET_PIECE_RE.sub(piece, text) if len(secret) >= MIN_SECRET_FRAGMENT else text


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a leading ``'`` when it would start a formula (or
    already looks escaped, so that :func:`csv_value` undoes exactly this); numbers unchanged."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith(FORMULA_STARTS) and not _is_number(value) or _escaped(value):
        return "'" + value
    return value


def csv_value(cell: str) -> str:
    """The text :func:`csv_cell` was given (a cell of our own CSVs read back)."""
    return cell[1:] if _escaped(cell) else cell


def card_text(value: object) -> str:
    """Data as Markdown prose: one line, HTML escaped, Markdown link/emphasis/table syntax escaped."""
    text = printable(str(value))
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(text, quote=True))


def card_code(value: object) -> str:
    """Data for a Markdown code span the template opens and closes with one backtick: backticks
    (which would end it) become ``'``, pipes are escaped for tables, one line."""
    return printable(str(value)).replace("`", "'").replace("|", "\\|")


def _escaped(text: str) -> bool:
    """True for ``'`` followed by a formula start or another ``'``: what :func:`csv_cell` writes."""
    return text.startswith("'") and text[1:2] != "" and text[1] in (*FORMULA_STARTS, "'")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


__all__ = ["FORMULA_STARTS", "MIN_SECRET_FRAGMENT", "card_code", "card_text", "csv_cell", "csv_value", "printable",
           "redact"]
