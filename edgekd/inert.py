"""Text from files the user did not write for edgekd (a model's metadata, a folder or class name, a config
value, a teacher spec) made inert where edgekd shows it: in a terminal, in report.md and in junit.xml.

report.html escapes with html.escape (edgekd/report_html.py); the three other views need their own rules:
a terminal obeys escape sequences (recolour a CI log, set a window title), a Markdown viewer renders raw
HTML and reads `|` as a new table cell, and XML 1.0 cannot hold most control characters at all.
"""

from __future__ import annotations

import html
import re

# C0 controls but tab and newline, DEL, C1 controls (ESC, BEL, CSI...), and the lone surrogates a
# surrogateescape'd file name carries: none of them is text a reader needs to see raw.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# what can open a link, an image, emphasis, a code span or a new table cell; `<` and `&` are HTML-escaped
_MARKDOWN = re.compile(r"([\\`*\[\]|])")
_PLAIN = re.compile(r"[\w.+-]*")


def printable(text: str) -> str:
    """Control characters shown as escapes (ESC -> \\x1b), so a terminal prints them instead of obeying them."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), str(text))


def md_text(value) -> str:
    """One Markdown table cell or line: HTML escaped, Markdown's markup characters backslashed, one line."""
    text = " ".join(printable(value).split())
    return _MARKDOWN.sub(r"\\\1", html.escape(text, quote=False))


def md_code(value) -> str:
    """A name shown as `code` where it is plain (host-cpu), else as escaped text (a backtick would end the span)."""
    text = printable(value)
    return f"`{text}`" if _PLAIN.fullmatch(text) else md_text(text)


def xml_text(value) -> str:
    """A string XML 1.0 can hold (ElementTree escapes <, > and & itself but writes control characters raw,
    which no XML parser accepts): each one is shown as an escape instead."""
    return printable(value)
