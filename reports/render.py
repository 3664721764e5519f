"""Render document blocks to Markdown and to a self-contained HTML page (inline CSS, figures as data URIs)."""

from __future__ import annotations

import base64
import html
import re
from functools import singledispatch

from reports.document import (
    VERDICT_CLASSES,
    Block,
    Bullets,
    Cell,
    CodeBlock,
    Failure,
    Heading,
    Image,
    Inline,
    Link,
    Notice,
    Para,
    Row,
    Strong,
    Table,
    Verdict,
)

__all__ = ["to_markdown", "to_html"]


# --- Markdown ------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*\[\]<>])")


def _md(text: str) -> str:
    """Escape the characters that would turn plain text into Markdown markup or raw HTML."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_verdict(v: Verdict) -> str:
    mark = VERDICT_CLASSES.get(v.verdict, ("", "?"))[1]
    return f"**{mark} {_md(v.verdict)}**"


def _md_cell(cell: Cell) -> str:
    if isinstance(cell, Verdict):
        return _md_verdict(cell)
    if isinstance(cell, Failure):
        return f"**{_md_cell(cell.text)}**"
    return _md(" ".join(cell.split())).replace("|", r"\|")


def _md_fence(text: str) -> str:
    """A backtick fence longer than any backtick run inside `text`."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _md_inline(part: Inline) -> str:
    if isinstance(part, Verdict):
        return _md_verdict(part)
    if isinstance(part, Link):
        return f"[{_md(part.text)}](<{part.href}>)"
    if isinstance(part, Strong):
        return f"**{_md(part.text.strip())}**" + (" " if part.text.endswith(" ") else "")
    return _md(re.sub(r"\s*\n\s*", " ", part))  # a blank line from a file must not end the paragraph


@singledispatch
def _md_block(block: Block) -> str:
    raise TypeError(f"no Markdown rendering for {type(block).__name__}")


@_md_block.register
def _(block: Heading) -> str:
    return "#" * block.level + " " + _md(block.text)


@_md_block.register
def _(block: Para) -> str:
    return "".join(_md_inline(p) for p in block.parts)


@_md_block.register
def _(block: Notice) -> str:
    icon = "⚠ " if block.level == "warning" else ""
    lines = [f"> **{icon}{_md(block.title)}**", ">", f"> {_md(block.text)}"]
    if block.items:
        lines += [">", *(f"> - {_md(' '.join(item.split()))}" for item in block.items)]
    return "\n".join(lines)


@_md_block.register
def _(block: Bullets) -> str:
    lines = []
    for item in block.items:
        if isinstance(item, tuple):
            term, text = item
            lines.append(f"- **{_md(term)}**: {_md(text)}")
        else:
            lines.append(f"- {_md(item)}")
    return "\n".join(lines)


@_md_block.register
def _(block: CodeBlock) -> str:
    fence = _md_fence(block.text)
    return f"{fence}\n{block.text}\n{fence}"


@_md_block.register
def _(block: Table) -> str:
    align = ["---:" if block.numeric and i not in block.text_columns else "---" for i in range(len(block.header) - 1)]
    lines = [
        "| " + " | ".join(_md_cell(h) for h in block.header) + " |",
        "|" + "|".join(["---", *align]) + "|",
    ]
    for row in block.rows:
        label = f"*{_md_cell(row.label)}*" if row.model else _md_cell(row.label)
        lines.append("| " + " | ".join([label, *(_md_cell(c) for c in row.cells)]) + " |")
    if block.caption:
        lines += ["", f"*{_md(block.caption)}*"]
    return "\n".join(lines)


@_md_block.register
def _(block: Image) -> str:
    out = f"![{_md(block.alt)}]({block.rel_path})"
    return out + (f"\n\n*{_md(block.caption)}*" if block.caption else "")


def to_markdown(blocks: list[Block]) -> str:
    return "\n\n".join(_md_block(b) for b in blocks) + "\n"


# --- HTML ----------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5;
       color: #1d1d1f; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.7rem; margin-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
pre { background: #f5f5f7; padding: .7rem 1rem; border-radius: 4px; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .92rem; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: .85rem; padding-top: .4rem; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .3rem .8rem; text-align: left; }
thead th { border-bottom: 2px solid #bbb; }
table.numeric td { text-align: right; font-variant-numeric: tabular-nums; }
tbody th { font-weight: normal; }
table.numeric td.text { text-align: left; }
tr.model th, tr.model td { font-style: italic; color: #555; background: #fafafa; }
td.fail { color: #a11414; background: #fdecea; font-weight: 700; }
.verdict { display: inline-block; padding: .05rem .5rem; border-radius: 3px; font-weight: 700; white-space: nowrap; }
.verdict.holds { background: #e6f4ea; color: #1b5e20; border: 1px solid #81c784; }
.verdict.when { background: #fff4e5; color: #6b3500; border: 1px solid #ffb74d; }
.verdict.fails { background: #fdecea; color: #a11414; border: 1px solid #e57373; }
.verdict.notrun { background: #f0f0f0; color: #555; border: 1px dashed #999; }
.notice { border-left: 6px solid; border-radius: 4px; padding: .6rem 1rem; margin: 1rem 0; }
.notice p { margin: .3rem 0; }
.notice.warning { border-color: #c62828; background: #fdecea; color: #7f1010; }
.notice.caution { border-color: #ef6c00; background: #fff4e5; color: #6b3500; }
.notice-title { font-size: 1.05rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .88rem; }
"""


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _html_verdict(v: Verdict) -> str:
    cls, mark = VERDICT_CLASSES.get(v.verdict, ("", "?"))
    return f'<span class="verdict {cls}">{mark} {_h(v.verdict)}</span>'


def _html_inline(part: Inline) -> str:
    if isinstance(part, Verdict):
        return _html_verdict(part)
    if isinstance(part, Link):
        return f'<a href="{_h(part.href)}">{_h(part.text)}</a>'
    if isinstance(part, Strong):
        return f"<strong>{_h(part.text)}</strong>"
    return _h(part)


@singledispatch
def _html_block(block: Block) -> str:
    raise TypeError(f"no HTML rendering for {type(block).__name__}")


@_html_block.register
def _(block: Heading) -> str:
    return f"<h{block.level}>{_h(block.text)}</h{block.level}>"


@_html_block.register
def _(block: Para) -> str:
    return "<p>" + "".join(_html_inline(p) for p in block.parts) + "</p>"


@_html_block.register
def _(block: Notice) -> str:
    role = ' role="alert"' if block.level == "warning" else ""
    out = [f'<div class="notice {block.level}"{role}>',
           f'<p class="notice-title"><strong>{_h(block.title)}</strong></p>', f"<p>{_h(block.text)}</p>"]
    if block.items:
        out += ["<ul>", *(f"<li>{_h(item)}</li>" for item in block.items), "</ul>"]
    return "\n".join(out + ["</div>"])


@_html_block.register
def _(block: Bullets) -> str:
    items = []
    for item in block.items:
        if isinstance(item, tuple):
            items.append(f"<li><strong>{_h(item[0])}</strong>: {_h(item[1])}</li>")
        else:
            items.append(f"<li>{_h(item)}</li>")
    return "<ul>\n" + "\n".join(items) + "\n</ul>"


@_html_block.register
def _(block: CodeBlock) -> str:
    return f"<pre><code>{_h(block.text)}</code></pre>"


def _html_cell(cell: Cell, text_column: bool) -> str:
    classes = [name for name, on in (("text", text_column), ("fail", isinstance(cell, Failure))) if on]
    cls = f' class="{" ".join(classes)}"' if classes else ""
    if isinstance(cell, Verdict):
        return f"<td{cls}>{_html_verdict(cell)}</td>"
    return f"<td{cls}>{_h(cell.text if isinstance(cell, Failure) else cell)}</td>"


def _html_row(row: Row, text_columns: frozenset[int]) -> str:
    cls = ' class="model"' if row.model else ""
    cells = "".join(_html_cell(c, i in text_columns) for i, c in enumerate(row.cells))
    return f'<tr{cls}><th scope="row">{_h(row.label)}</th>{cells}</tr>'


@_html_block.register
def _(block: Table) -> str:
    cls = ' class="numeric"' if block.numeric else ""
    head = "".join(f'<th scope="col">{_h(h)}</th>' for h in block.header)
    caption = f"<caption>{_h(block.caption)}</caption>" if block.caption else ""
    body = "\n".join(_html_row(r, block.text_columns) for r in block.rows)
    return f"<table{cls}>{caption}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


@_html_block.register
def _(block: Image) -> str:
    data = base64.b64encode(block.path.read_bytes()).decode("ascii")
    caption = f"<figcaption>{_h(block.caption)}</figcaption>" if block.caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_h(block.alt)}">{caption}</figure>'


def to_html(title: str, blocks: list[Block]) -> str:
    """A complete page that needs nothing but itself: no scripts, fonts, stylesheets or images from elsewhere."""
    body = "\n".join(_html_block(b) for b in blocks)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_h(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
