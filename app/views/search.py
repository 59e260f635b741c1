"""Search view: upload or record a clip (or describe a sound for CLAP models); top-k similar clips
with players; filter by label or a descriptor range; one result per file; steer by aspect (timbre,
spectrum, pitch, envelope dials beside the deep model) with per-aspect bars and a "why similar" line
on each hit; search with a time range of the clip; search only inside a set (previous results, the
Map's selection, a cluster, a tag)."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from app.components import EMPTY, choices, error_html, hits_html
from app.services import DESCRIPTORS, Services
from app.views import PRIVATE, bind

ANY, NONE = "(any)", "(none)"
EVERYTHING, PREVIOUS, SELECTION = "everything", "previous results", "the Map's selection"
QUERY_CLIP, QUERY_SELECTION = "the clip above", "the Map's selection (its mean)"
ASPECT_DIALS = ("deep", "timbre", "spectrum", "pitch", "envelope")


def _num(x: float | None) -> float | None:
    return None if x is None or x == "" else float(x)


def _within(scope: str | None, previous: list | None, selection: list | None) -> list[str] | None:
    """The ids a search is restricted to (None: everything); a ValueError when the set is empty."""
    if scope in (None, "", EVERYTHING):
        return None
    ids = [str(r[0]) for r in previous or []] if scope == PREVIOUS else [str(i) for i in selection or []]
    if not ids:
        raise ValueError(f"nothing to search inside: {scope} is empty")
    return ids


def label_choices(svc: Services, library: str | None, model: str | None) -> dict:
    """'(any)' and the labels of (library, model)."""
    try:
        labels = svc.queries.labels(library, model) if library and model else []
    except Exception:
        labels = []
    return choices([ANY] + labels, ANY)


def tag_choices(svc: Services, library: str | None, model: str | None) -> dict:
    """'(any)' and the user tags of (library, model), with their counts (Qdrant facet)."""
    try:
        counts = svc.curation.tag_counts(library, model) if library and model else {}
    except Exception:
        counts = {}
    return gr.update(choices=[ANY] + [(f"{t} ({n})", t) for t, n in counts.items()], value=ANY)


def run(svc: Services, library: str | None, model: str | None, path: str | None, text: str | None = None,
        k: float = 10, label: str | None = None, one_per_file: bool = False, field: str | None = None,
        lo: float | None = None, hi: float | None = None, tag: str | None = None,
        deep: float = 1.0, timbre: float = 0.0, spectrum: float = 0.0, pitch: float = 0.0, envelope: float = 0.0,
        start_s: float | None = None, end_s: float | None = None, scope: str | None = None,
        previous: list | None = None, selection: list | None = None,
        cluster: float | None = None, pred: str | None = None, min_conf: float = 0.0,
        query_from: str | None = None) -> tuple[str, str, list]:
    """(status line, results HTML, [(id, score)] of the results) for an uploaded/recorded clip (or its
    start_s..end_s part), or a text for CLAP models; aspect dials (0 = off; the default is the deep
    model alone, as plain search), a scope (everything, previous results, the Map's selection) and a
    suggested-label filter (unlabelled clips suggested as `pred` with confidence >= min_conf);
    `query_from` = QUERY_SELECTION searches with the Map's selection (its mean) instead of the clip."""
    if not library or not model:
        return EMPTY, "", []
    lab = None if label in (None, "", ANY) else label
    where = {"tags": tag} if tag not in (None, "", ANY) else {}
    if _num(cluster) is not None:
        where["cluster"] = int(_num(cluster))
    weights = dict(zip(ASPECT_DIALS, (float(w or 0) for w in (deep, timbre, spectrum, pitch, envelope))))
    ranges = ({field: (lo, hi)} if field not in (None, "", NONE) and (lo is not None or hi is not None) else None)
    if pred not in (None, "", ANY):  # unlabelled clips suggested as `pred` with confidence >= min_conf
        where = {**(where or {}), "pred_label": pred}
        ranges = {**(ranges or {}), "pred_conf": (float(min_conf or 0.0), None)}
    try:
        if text and text.strip() and not path:
            hits = svc.queries.search_text(library, model, text.strip(), k=int(k), label=lab)
            what = f'"{text.strip()}"'
        elif path or query_from == QUERY_SELECTION:
            by_sel = query_from == QUERY_SELECTION
            hits, why = svc.queries.search(library, model, path=None if by_sel else path,
                                           point_ids=list(selection or []) if by_sel else None,
                                           start_s=None if by_sel else _num(start_s),
                                           end_s=None if by_sel else _num(end_s),
                                           weights=weights, k=int(k), label=lab, one_per_file=bool(one_per_file),
                                           ranges=ranges, where=where or None,
                                           within=_within(scope, previous, selection))
            what = f"the selection ({len(selection or [])} clips)" if by_sel else Path(path).name
            if not by_sel and (_num(start_s) is not None or _num(end_s) is not None):
                what += f" ({_num(start_s) or 0:g}–{'end' if _num(end_s) is None else f'{_num(end_s):g}'} s)"
            on = [f"{a} {w:g}" for a, w in weights.items() if w > 0]
            steer = "" if on == [f"deep {weights['deep']:g}"] else " steered by " + ", ".join(on)
            return (f"{len(hits)} results for {html.escape(what)} with **{model}**{steer}"
                    + ("" if scope in (None, "", EVERYTHING) else f", inside {scope}"),
                    hits_html(library, hits, why=why, weights=weights),
                    [[h.id, round(float(h.score), 6)] for h in hits])
        else:
            return "Upload or record a clip (or type a description) first.", "", []
    except Exception as exc:
        return "", error_html(exc), []
    return (f"{len(hits)} results for {html.escape(what)} with **{model}**", hits_html(library, hits),
            [[h.id, round(float(h.score), 6)] for h in hits])


def export_results(svc: Services, library: str | None, model: str | None, results: list | None) -> tuple:
    """(ZIP of the last results with their scores in the manifest, status)."""
    try:
        scores = {pid: score for pid, score in results or []}
        res = svc.curation.export(library, model, list(scores), scores=scores)
    except Exception as exc:
        return None, error_html(exc)
    return res["out"], f"ZIP of {res['files']} files, manifest of {res['clips']} clips with their scores."


def build(svc: Services, library: gr.Dropdown, model: gr.Dropdown, selection: gr.State | None = None) -> None:
    """Lay out the search view and wire its own events (`selection`: the Map's selected ids)."""
    with gr.Row():
        with gr.Column(scale=2):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Query clip",
                             elem_id="ae-search-audio")
            text = gr.Textbox(label="…or describe a sound (CLAP models only)", placeholder="dog barking")
        with gr.Column(scale=1):
            k = gr.Slider(1, 50, value=10, step=1, label="k")
            label = gr.Dropdown([], value=None, label="Only label", allow_custom_value=False)
            tag = gr.Dropdown([ANY], value=ANY, label="Only tag", allow_custom_value=False)
            one = gr.Checkbox(value=False, label="One result per file")
            with gr.Accordion("Only a suggested label (Review tab)", open=False):
                pred = gr.Dropdown([], value=None, label="Suggested label", allow_custom_value=False)
                min_conf = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="…with confidence at least")
            with gr.Accordion("Filter by a descriptor", open=False):
                field = gr.Dropdown([NONE, *DESCRIPTORS], value=NONE, label="Descriptor")
                with gr.Row():
                    lo = gr.Number(value=None, label="min")
                    hi = gr.Number(value=None, label="max")
            with gr.Accordion("Steer by aspect (0 = off)", open=False, elem_id="ae-search-aspects"):
                dials = [gr.Slider(0, 2, value=1.0 if a == "deep" else 0.0, step=0.1,
                                   label="deep model" if a == "deep" else a, elem_id=f"ae-dial-{a}")
                         for a in ASPECT_DIALS]
            with gr.Accordion("Part of the clip, and where to search", open=False):
                with gr.Row():
                    start = gr.Number(value=None, label="from (s)", elem_id="ae-search-start")
                    end = gr.Number(value=None, label="to (s)", elem_id="ae-search-end")
                scope = gr.Radio([EVERYTHING, PREVIOUS, SELECTION] if selection is not None else [EVERYTHING, PREVIOUS],
                                 value=EVERYTHING, label="Search inside", elem_id="ae-search-scope")
                cluster = gr.Number(value=None, label="Only cluster (id)", precision=0)
                query_from = gr.Radio([QUERY_CLIP, QUERY_SELECTION] if selection is not None else [QUERY_CLIP],
                                      value=QUERY_CLIP, label="Search with", elem_id="ae-search-query-from")
            go = gr.Button("Search", variant="primary", elem_id="ae-search-go")
    status = gr.Markdown()
    results = gr.HTML(elem_id="ae-search-results")
    last = gr.State([])
    with gr.Row():
        export_btn = gr.Button("Export these results as ZIP", scale=1, elem_id="ae-search-export")
        zip_file = gr.File(label="Download", interactive=False, scale=2, height=60, elem_classes=["ae-download"])
    for comp in (library, model):
        comp.change(bind(label_choices, svc), [library, model], label, **PRIVATE)
        comp.change(bind(label_choices, svc), [library, model], pred, **PRIVATE)
        comp.change(bind(tag_choices, svc), [library, model], tag, **PRIVATE)
    sel = selection if selection is not None else gr.State([])
    go.click(bind(run, svc), [library, model, audio, text, k, label, one, field, lo, hi, tag, *dials, start, end,
                              scope, last, sel, cluster, pred, min_conf, query_from], [status, results, last], **PRIVATE)
    export_btn.click(bind(export_results, svc), [library, model, last], [zip_file, status], **PRIVATE)
