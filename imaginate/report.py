"""The demo report: one self-contained ``report.html`` with each system's tables and pictures."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class ReportPart:
    """What one system's demo contributes: a title, a paragraph, tables and pictures (PNG paths)."""

    system: str
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    images: list[tuple[str, Path]] = field(default_factory=list)  # (caption, PNG file)
    seconds: float = 0.0


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in t.rows)
    return f"<table><caption>{html.escape(t.caption)}</caption><tr>{head}</tr>{body}</table>"


def _image_html(caption: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_report(parts: list[ReportPart], out_dir: Path, total_seconds: float | None = None,
                 trained: bool = False) -> Path:
    """Write ``out_dir/report.html`` (images embedded, so the file can be moved or mailed)."""
    sections = []
    for p in parts:
        body = [f"<h2 id='{p.system}'>{html.escape(p.title)}</h2>", f"<p>{html.escape(p.text)}</p>"]
        body += [_table_html(t) for t in p.tables]
        body += [_image_html(c, path) for c, path in p.images]
        body.append(f"<p class='t'>demo time: {p.seconds:.0f} s</p>")
        sections.append("<section>" + "\n".join(body) + "</section>")
    toc = " · ".join(f"<a href='#{p.system}'>{html.escape(p.system)}</a>" for p in parts)
    how = ("every part trained from scratch (imaginate demo --train)" if trained else
           "parts use the project-trained zoo weights (imaginate zoo list); classify trains live")
    timing = "".join(f"<tr><td style='text-align:left'>{html.escape(p.system)}</td><td>{p.seconds:.0f}</td></tr>"
                     for p in parts)
    if total_seconds is not None:
        timing += f"<tr><th style='text-align:left'>total</th><th>{total_seconds:.0f}</th></tr>"
    toc += (f"</p><p>{html.escape(how)}.</p><table><caption>Time per part (s, wall, this machine)</caption>"
            f"<tr><th>part</th><th>s</th></tr>{timing}</table><p>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>imaginate demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}
caption{{font-weight:bold;text-align:left;padding:4px 0}}img{{max-width:100%;image-rendering:pixelated}}
figure{{margin:1em 0}}.t{{color:#777;font-size:small}}</style></head>
<body><h1>imaginate demo report</h1><p>{toc}</p>
{''.join(sections)}
</body></html>
"""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(page)
    return path
