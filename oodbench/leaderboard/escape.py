"""Escaping of text taken from records (method, dataset and split names, notes) for each output format, so that a
name is shown as written and never becomes markup, a formula or a broken table row.

- Markdown (README.md, the compare comment, the paper table): backslash before the characters that start markup or
  split a table cell (``\\ | < > [ ] ` * &``); a line break becomes ``<br>``, which GitHub shows as a break inside
  the cell, so a row stays one row.
- CSV: a text cell that a spreadsheet would evaluate (starting with ``= + - @``, tab, carriage return or line feed)
  gets a leading single quote, as OWASP recommends against CSV injection; numbers are written as numbers.
- LaTeX: every special character as its text command; line breaks become spaces.
- HTML (index.html): the page puts text into the document with text nodes only and escapes ``<`` in its embedded
  JSON, so it needs nothing here.
"""
from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"([\\|<>\[\]`*&])")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls but tab/line breaks, and DEL


def markdown(text: object) -> str:
    """``text`` as literal Markdown text, safe in a GitHub table cell, a list item or a heading."""
    text = _CONTROL.sub("\ufffd", str(text))
    return _LINE_BREAK.sub("<br>", _MD_SPECIAL.sub(r"\\\1", text))


def markdown_code(text: object) -> str:
    """``text`` as a code span where it can be one (no backtick or line break in it), else as escaped text."""
    text = str(text)
    if "`" in text or _LINE_BREAK.search(text) or _CONTROL.search(text):
        return markdown(text)
    return f"`{text}`"


CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: object) -> object:
    """A text value that starts like a spreadsheet formula, with a leading ``'``; anything else as it is."""
    if isinstance(value, str) and value.startswith(CSV_TRIGGERS):
        return "'" + value
    return value


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                 "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "<": r"\textless{}", ">": r"\textgreater{}",
                 "|": r"\textbar{}", "[": "{[}", "]": "{]}", "\n": " ", "\r": " ", "\t": " "}


def latex(text: object) -> str:
    """``text`` as literal LaTeX text (``[`` braced, so text after ``\\\\`` is never read as its optional
    argument)."""
    text = _CONTROL.sub("?", str(text))
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)
