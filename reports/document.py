"""A tiny document model: the report is written once as blocks, then rendered to Markdown and to HTML.

All text in a block is plain text (it may come from result files); each renderer escapes it for its format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

__all__ = [
    "Strong", "Inline", "Heading", "Para", "Notice", "Bullets", "CodeBlock", "Failure", "Cell", "Row", "Table",
    "Image", "Block", "Verdict", "Link", "VERDICT_CLASSES",
]


@dataclass(frozen=True)
class Strong:
    text: str


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict (holds / holds only when / does not hold / not run), shown so that each looks different."""

    verdict: str


# verdict -> CSS class and the mark that tells verdicts apart in Markdown (and without colour)
VERDICT_CLASSES: dict[str, tuple[str, str]] = {
    "holds": ("holds", "✔"), "holds only when": ("when", "◐"), "does not hold": ("fails", "✘"),
    "not run": ("notrun", "○"),
}


@dataclass(frozen=True)
class Link:
    """A link to a file or directory, relative to the report."""

    text: str
    href: str


Inline = Union[str, Strong, Verdict, Link]


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    parts: tuple[Inline, ...]

    def __init__(self, *parts: Inline) -> None:
        object.__setattr__(self, "parts", parts)


@dataclass(frozen=True)
class Notice:
    """A box that must not be missed: `warning` (red in HTML) or `caution` (amber)."""

    level: Literal["warning", "caution"]
    title: str
    text: str
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bullets:
    """A list; an item is plain text or (term, explanation)."""

    items: tuple[str | tuple[str, str], ...]


@dataclass(frozen=True)
class CodeBlock:
    text: str


@dataclass(frozen=True)
class Failure:
    """A table cell whose value shows that something failed (data lost, a defence broken): it must stand out."""

    text: str


Cell = Union[str, Failure, Verdict]


@dataclass(frozen=True)
class Row:
    label: str
    cells: tuple[Cell, ...]
    model: bool = False  # an analytic prediction, shown apart from measurements


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[Row, ...]
    numeric: bool = True  # right-align the value columns
    caption: str = ""
    text_columns: frozenset[int] = frozenset()  # value columns (0 = first after the label) left-aligned as text


@dataclass(frozen=True)
class Image:
    """A figure file; `rel_path` is relative to the report (for Markdown), `path` is read to embed it (HTML)."""

    path: Path
    rel_path: str
    alt: str
    caption: str = field(default="")


Block = Union[Heading, Para, Notice, Bullets, CodeBlock, Table, Image]
