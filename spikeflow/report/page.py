"""The HTML page: sections of figures, tables and text, rendered self-contained and written atomically.

Every figure is inlined as a base64 PNG data URI (the page needs no other file, no network and no
JavaScript); every piece of text passes :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence, Union

from spikeflow._atomic import atomic_path


@dataclass(frozen=True)
class Figure:
    """A PNG written beside the page, shown inline."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells."""

    head: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str = ""


@dataclass(frozen=True)
class Text:
    """A paragraph; ``kind`` styles it: "skipped" (a stage that did not run), "note" (nothing to show),
    "meta" (a path) or "problem" (a section that could not be drawn)."""

    text: str
    kind: str = ""


@dataclass(frozen=True)
class Code:
    """Preformatted text (the pipeline file)."""

    text: str


Block = Union[Figure, Table, Text, Code]


@dataclass
class Section:
    """One part of the page; ``ran`` is False for a stage that did not run."""

    key: str
    title: str
    blocks: list = field(default_factory=list)
    ran: bool = True


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1d232a; background: #f4f5f7; }
header { background: #1d3557; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 26px; }
header p { margin: 0; opacity: 0.8; font-size: 14px; }
nav { padding: 10px 32px; background: #fff; border-bottom: 1px solid #dde1e6; font-size: 14px; }
nav { display: flex; flex-wrap: wrap; gap: 4px 16px; }
nav a { color: #1d3557; text-decoration: none; white-space: nowrap; }
nav a.skipped { color: #8a939c; }
main { padding: 8px 32px 40px 32px; max-width: 1200px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 6px 20px 16px 20px; margin: 18px 0; }
section h2 { font-size: 20px; border-bottom: 1px solid #eef0f3; padding-bottom: 6px; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eef0f3; }
figcaption { font-size: 13px; color: #5a636c; margin-top: 4px; }
table { border-collapse: collapse; margin: 10px 0; font-size: 14px; }
caption { text-align: left; font-size: 13px; color: #5a636c; padding-bottom: 4px; white-space: nowrap; }
th, td { border: 1px solid #dde1e6; padding: 4px 10px; text-align: left; }
th { background: #f0f2f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note, p.skipped { color: #6c757d; font-style: italic; }
p.meta { color: #5a636c; font-size: 13px; font-family: ui-monospace, Menlo, Consolas, monospace; }
p.problem { color: #9b2226; background: #fdf0ef; padding: 6px 10px; border-radius: 4px; }
pre { background: #f6f8fa; border: 1px solid #dde1e6; padding: 12px; overflow-x: auto; font-size: 13px; }
"""


_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+(e[-+]?\d+)?$|^n/a$")


def _cell(value: object) -> str:
    numeric = (isinstance(value, (int, float)) and not isinstance(value, bool)) or bool(_NUMBER.match(str(value)))
    return f'<td class="num">{html.escape(str(value))}</td>' if numeric else f"<td>{html.escape(str(value))}</td>"


def render_block(block: Block) -> str:
    """The HTML of one block (figures are read from their PNG file and inlined)."""
    if isinstance(block, Figure):
        data = base64.b64encode(Path(block.path).read_bytes()).decode("ascii")
        alt = html.escape(block.caption, quote=True)
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                f"<figcaption>{html.escape(block.caption)} ({html.escape(Path(block.path).name)})</figcaption></figure>")
    if isinstance(block, Table):
        caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block.head)
        body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in block.rows)
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Text):
        cls = f' class="{block.kind}"' if block.kind else ""
        return f"<p{cls}>{html.escape(block.text)}</p>"
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text)}</pre>"
    raise TypeError(f"unknown report block {type(block).__name__}")


def render(name: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The whole page as one string."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    skipped = ' class="skipped"'
    nav = "\n".join(f'<a href="#{html.escape(s.key, quote=True)}"{"" if s.ran else skipped}>{html.escape(s.title)}</a>'
                  for s in sections)
    body = "\n".join(f'<section id="{html.escape(s.key, quote=True)}"><h2>{html.escape(s.title)}</h2>'
                   + "".join(render_block(b) for b in s.blocks) + "</section>" for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>spikeflow run: {html.escape(name)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>spikeflow run: {html.escape(name)}</h1><p>{html.escape(subtitle)}{' · ' if subtitle else ''}"
            f"report written {stamp}</p></header><nav>{nav}</nav><main>{body}</main></body></html>\n")


def write_page(path: Path, text: str) -> Path:
    """Write the page atomically (readers never see half a page)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
