"""Pieces every view shows: audio URLs, hit rows with players and thumbnails, error blocks, the
map component."""
from __future__ import annotations

import html
from typing import Any, Iterable
from urllib.parse import quote

import gradio as gr

from app import assets
from app.errors import one_line

EMPTY = "No library yet: index a folder in the Library tab (or run: python app.py index FOLDER --library NAME)."


def audio_url(library: str, path: str, start_s: float | None = None, end_s: float | None = None) -> str:
    """URL of a clip served by the app (optionally a time range as a media fragment)."""
    url = f"/audio/{quote(library)}/{quote(path)}"
    if start_s:
        url += f"#t={start_s:.2f}" + (f",{end_s:.2f}" if end_s else "")
    return url


def error_html(exc: BaseException | str) -> str:
    """A readable one-line error block."""
    msg = exc if isinstance(exc, str) else one_line(exc)
    return f'<div class="ae-error">Error: {html.escape(msg, quote=False)}</div>'


def error_md(exc: BaseException | str) -> str:
    """A one-line error for a Markdown component."""
    msg = exc if isinstance(exc, str) else one_line(exc)
    return f"**Error:** {html.escape(msg, quote=False)}"


def aspect_bars(aspects: dict[str, float] | None, weights: dict[str, float] | None = None) -> str:
    """Small bars of a hit's per-aspect similarities (0..1; aspects weighted 0 are drawn faint)."""
    if not aspects:
        return ""
    cells = []
    for name, sim in aspects.items():
        pct = max(0.0, min(1.0, float(sim))) * 100
        off = " off" if weights is not None and not weights.get(name) else ""
        cells.append(f'<span class="ae-aspect{off}" title="{html.escape(name)} similarity {sim:.3f}">'
                     f'<i>{html.escape(name[:4])}</i><span class="track"><b style="width:{pct:.0f}%"></b></span></span>')
    return '<span class="ae-aspects">' + "".join(cells) + "</span>"


def hit_row(library: str, rank: int, hit: Any, why: str = "", weights: dict[str, float] | None = None) -> str:
    """One search result: rank, score (or the hit's own `score_text`), thumbnail, path/label (and
    segment), player; with per-aspect bars and a "why similar" line when given."""
    p = hit.payload
    path, label = hit.path or "", hit.label
    start, end = p.get("start_s"), p.get("end_s")
    seg = p.get("segment") is not None
    where = f" @ {start:.1f}–{end:.1f} s" if seg and start is not None else ""
    hid = html.escape(str(hit.id))
    thumb = (f'<img src="/thumb/{quote(library)}/{quote(str(hit.id))}.png" loading="lazy" '
             f'onerror="this.style.visibility=\'hidden\'"/>')
    lbl = f'<span class="lbl">{html.escape(str(label))}</span>' if label else ""
    src = html.escape(audio_url(library, path, start if seg else None, end if seg else None))
    return (f'<div class="ae-hit" data-id="{hid}" data-path="{html.escape(path)}"><b>{rank}</b>'
            f'<span class="score">{html.escape(getattr(hit, "score_text", None) or f"{hit.score:.4f}")}</span>{thumb}'
            f'<span><span class="path">{html.escape(path)}{where}</span> {lbl}'
            f'{aspect_bars(getattr(hit, "aspects", None), weights)}'
            + (f'<span class="ae-why">{html.escape(why)}</span>' if why else "") +
            f'</span><audio controls preload="none" src="{src}"></audio></div>')


def hits_html(library: str, hits: Iterable[Any], title: str = "", why: list[str] | None = None,
              weights: dict[str, float] | None = None) -> str:
    """Search results (`index.Hit`s) as rows with players (and per-aspect bars, "why similar" lines)."""
    hits = list(hits)
    if not hits:
        return "<p>No results.</p>"
    rows = [f"<h4>{html.escape(title, quote=False)}</h4>"] if title else []
    rows += [hit_row(library, i + 1, h, (why or [])[i] if why and i < len(why) else "", weights)
             for i, h in enumerate(hits)]
    return '<div class="ae-hits">' + "".join(rows) + "</div>"


def choices(values: list[str], value: str | None = None, **kw: Any) -> dict:
    """A dropdown update to `values`, keeping `value` when it is still one of them."""
    return gr.update(choices=values, value=value if value in values else (values[0] if values else None), **kw)


def map_view(empty: str | None = None, **kwargs: Any) -> gr.HTML:
    """A map component; its value is a map value from `app.services.maps` (or {"message": ...}).
    `empty`: what it says before its first map (default: "Nothing to show yet.")."""
    value = {"message": html.escape(empty)} if empty is not None else None
    return gr.HTML(value=value, html_template=assets.MAP_TEMPLATE, css_template=assets.MAP_CSS,
                   js_on_load=assets.mapview_js(), **kwargs)


def dims_of(label: str | int) -> int:
    """'3D' -> 3, anything else -> 2."""
    return 3 if str(label).upper().startswith("3") else 2
