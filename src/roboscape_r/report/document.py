"""A tiny document model (headings, paragraphs, lists, tables, images) rendered to Markdown and to
one self-contained HTML page, so both formats carry exactly the same content.

Images are referenced by a path relative to the report folder; the HTML page embeds its CSS and
loads nothing from the network.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    """1 is the page title; sections are 2, subsections 3."""


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str | None = None

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.headers):
                raise ValueError(f"table row {i} has {len(row)} cells but the table has {len(self.headers)} "
                                 f"columns ({list(self.headers)})")


@dataclass(frozen=True)
class Image:
    src: str
    """Path relative to the report folder, with forward slashes."""
    caption: str


Block = Union[Heading, Paragraph, Bullets, Table, Image]


def table(headers: list[str] | tuple[str, ...], rows: list[list[str]], caption: str | None = None) -> Table:
    """A Table from lists (cells converted with str)."""
    return Table(tuple(str(h) for h in headers), tuple(tuple(str(c) for c in row) for row in rows), caption)


# ---------------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in block.headers) + " |",
                     "|" + "|".join("---" for _ in block.headers) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            if block.caption:
                lines = [f"*{block.caption}*", ""] + lines
            parts.append("\n".join(lines))
        elif isinstance(block, Image):
            parts.append(f"![{block.caption}]({block.src})\n\n*{block.caption}*")
        else:
            raise TypeError(f"unknown block {type(block).__name__}")
    return "\n\n".join(parts) + "\n"


# -------------------------------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; padding-bottom: .15em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3em; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; font-size: 0.9em; }
""".strip()


def to_html(blocks: list[Block], title: str) -> str:
    """The blocks as one HTML page with embedded CSS (images by relative path)."""
    e = html.escape
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>\n" + "\n".join(f"  <li>{e(item)}</li>" for item in block.items) + "\n</ul>")
        elif isinstance(block, Table):
            lines = ["<table>"]
            if block.caption:
                lines.append(f"  <caption>{e(block.caption)}</caption>")
            lines.append("  <tr>" + "".join(f"<th>{e(h)}</th>" for h in block.headers) + "</tr>")
            lines += ["  <tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in block.rows]
            lines.append("</table>")
            body.append("\n".join(lines))
        elif isinstance(block, Image):
            body.append(f'<figure>\n  <img src="{e(block.src)}" alt="{e(block.caption)}">\n'
                        f"  <figcaption>{e(block.caption)}</figcaption>\n</figure>")
        else:
            raise TypeError(f"unknown block {type(block).__name__}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{e(title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
