"""The selection panel under the map: what is selected (count, labels, tags, a list with players),
and what to do with it: tag, untag, relabel (written to Qdrant in every model of the library),
undo, more like these, clear, export as a ZIP."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from app.components import error_html, error_md, hits_html
from app.services import Services
from app.views import PRIVATE, bind

LIST_ROWS = 60  # clips listed with a player; the rest are counted


@dataclass
class SelectionHandles:
    """What the wiring connects."""

    ids: gr.State          # the selection: point ids (survives colour changes and redraws)
    panel: gr.HTML         # summary and list
    status: gr.Markdown    # the last action's one-line result
    edit: gr.Group         # the tag / label controls, shown to those who may edit the library


class _Row:
    """A selected clip shown like a search hit (no score)."""

    def __init__(self, pid: str, p: dict):
        self.id, self.payload, self.score = pid, p, 1.0
        self.path, self.label = p.get("path", ""), p.get("label")


def panel(svc: Services, library: str | None, model: str | None, ids: list[str] | None) -> str:
    """Summary (count, label and tag breakdown) and the first clips with players."""
    ids = list(ids or [])
    if not library or not model or not ids:
        return ('<p class="ae-selhelp">Nothing selected. Drag a box or lasso on the map (the modebar\'s '
                'select tools), or shift-click points; shift adds to the selection.</p>')
    try:
        s = svc.curation.summary(library, model, ids)
        rows = svc.curation.payloads(library, model, ids[:LIST_ROWS])
    except Exception as exc:
        return error_html(exc)
    labels = ", ".join(f"{html.escape(str(k))} {v}" for k, v in list(s["labels"].items())[:12])
    tags = ", ".join(f"{html.escape(str(k))} {v}" for k, v in list(s["tags"].items())[:12]) or "none"
    head = (f'<div class="ae-selsum" data-n="{s["n"]}"><b>{s["n"]} selected</b> · labels: {labels} · '
            f'tags: {tags}' + (f' · {s["missing"]} no longer in the library' if s["missing"] else "") + "</div>")
    more = f"<p>…and {s['n'] - len(rows)} more.</p>" if s["n"] > len(rows) else ""
    listing = hits_html(library, [_Row(i, p) for i, p in rows]).replace('class="score">1.0000', 'class="score">')
    return head + listing + more


def select(svc: Services, library: str | None, model: str | None, token: str | None,
           indices: list[int] | None) -> tuple[list[str], str, str]:
    """(selection ids, panel, status) after a box/lasso/shift-click on the map."""
    try:
        ids = svc.curation.resolve(token, [int(i) for i in indices or []])
    except Exception as exc:
        return [], panel(svc, library, model, []), error_md(exc)
    return ids, panel(svc, library, model, ids), ""


def _tags(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def tag(svc: Services, library: str | None, model: str | None, ids: list[str] | None, text: str | None,
        remove: bool = False, whole_file: bool = False, request: gr.Request | None = None) -> tuple[str, str]:
    """(status, panel) after adding (or removing) comma-separated tags to the selection."""
    try:
        if not library:
            raise ValueError("pick a library first")
        svc.access.require(request, f"editing the tags of library '{library}'", library)
        tags = _tags(text)
        if not tags:
            raise ValueError("type a tag (several: separated by commas)")
        res = svc.curation.edit(library, list(ids or []), add=[] if remove else tags, remove=tags if remove else [],
                                whole_file=bool(whole_file))
    except Exception as exc:
        return error_md(exc), panel(svc, library, model, ids)
    verb = "removed" if remove else "added"
    return (f"Tag{'s' if len(tags) > 1 else ''} {html.escape(', '.join(tags))} {verb}: {html.escape(res.summary())}.",
            panel(svc, library, model, ids))


def relabel(svc: Services, library: str | None, model: str | None, ids: list[str] | None, label: str | None,
            whole_file: bool = False, request: gr.Request | None = None) -> tuple[str, str]:
    """(status, panel) after setting the user label of the selection ('' reverts to the folder label)."""
    try:
        if not library:
            raise ValueError("pick a library first")
        svc.access.require(request, f"editing the labels of library '{library}'", library)
        text = (label or "").strip()
        res = svc.curation.edit(library, list(ids or []), label=text or None, whole_file=bool(whole_file))
    except Exception as exc:
        return error_md(exc), panel(svc, library, model, ids)
    what = f"label set to '{html.escape(text)}'" if text else "folder labels restored"
    return f"{what.capitalize()}: {html.escape(res.summary())}.", panel(svc, library, model, ids)


def undo(svc: Services, library: str | None, model: str | None, ids: list[str] | None,
         request: gr.Request | None = None) -> tuple[str, str]:
    """(status, panel) after undoing the library's last edit."""
    try:
        if not library:
            raise ValueError("pick a library first")
        svc.access.require(request, f"undoing an edit of library '{library}'", library)
        res = svc.curation.undo(library)
    except Exception as exc:
        return error_md(exc), panel(svc, library, model, ids)
    return f"Undone: {res.changed} clips restored.", panel(svc, library, model, ids)


def more_like(svc: Services, library: str | None, model: str | None, ids: list[str] | None,
              k: float = 10, negatives: list[str] | None = None) -> str:
    """Clips most like the selection and unlike the negatives (Qdrant recommend, average vector),
    the selection and the negatives left out."""
    neg = [i for i in negatives or [] if i not in set(ids or [])]
    try:
        hits, note = svc.curation.more_like(library, model, list(ids or []), negative_ids=neg, k=int(k))
    except Exception as exc:
        return error_html(exc)
    away = f", away from {len(neg)} negatives" if neg else ""
    return hits_html(library, hits, f"More like these {len(ids or [])} clips{away} ({model}){note}")


def set_negatives(ids: list[str] | None) -> tuple[list[str], str]:
    """(negatives, status): the current selection becomes the negatives of 'more like these'."""
    ids = list(ids or [])
    return ids, (f"{len(ids)} clips set as negatives: 'More like these' moves away from them."
                 if ids else "Negatives cleared.")


def clear(svc: Services, library: str | None, model: str | None, view: dict | None) -> tuple[list, str, dict]:
    """(no selection, panel, the map value with nothing selected)."""
    value = dict(view or {})
    if value.get("points_url"):
        value["selected_idx"] = []
    return [], panel(svc, library, model, []), value if value else gr.skip()


def export(svc: Services, library: str | None, model: str | None, ids: list[str] | None) -> tuple[str | None, str]:
    """(the ZIP's path for download, status)."""
    try:
        res = svc.curation.export(library, model, list(ids or []))
    except Exception as exc:
        return None, error_md(exc)
    miss = f"; {len(res['missing'])} files missing (listed in the manifest)" if res["missing"] else ""
    return res["out"], f"ZIP of {res['files']} files and a manifest of {res['clips']} clips{miss}."


def edit_rights(svc: Services, library: str | None, request: gr.Request | None = None) -> dict:
    """Show the tag / label controls to those who may edit this library."""
    return gr.update(visible=svc.access.may_edit(request, library))


def build(svc: Services, library: gr.Dropdown, model: gr.Dropdown, view: gr.HTML, ids: gr.State) -> SelectionHandles:
    """Lay out the selection panel under the map and wire its events (`ids`: the selection state)."""
    with gr.Accordion("Selection", open=True, elem_id="ae-selection"):
        status = gr.Markdown(elem_id="ae-sel-status")
        box = gr.HTML(panel(svc, None, None, []), elem_id="ae-sel-panel")
        with gr.Group(elem_id="ae-edit") as edit_group:
            with gr.Row():
                tag_text = gr.Textbox(label="Tags (comma-separated)", placeholder="keep, kick, dusty", scale=3,
                                      elem_id="ae-tag-text")
                add_btn = gr.Button("Add tag", elem_id="ae-tag-add", scale=1)
                rm_btn = gr.Button("Remove tag", elem_id="ae-tag-remove", scale=1)
            with gr.Row():
                label_text = gr.Textbox(label="Label (empty: back to the folder's)", scale=3, elem_id="ae-label-text")
                label_btn = gr.Button("Set label", elem_id="ae-label-set", scale=1)
                whole = gr.Checkbox(value=False, label="whole files (every segment)", scale=1)
                undo_btn = gr.Button("Undo last edit", elem_id="ae-undo", scale=1)
        with gr.Row():
            k = gr.Slider(1, 50, value=10, step=1, label="More like these: k", scale=2)
            more_btn = gr.Button("More like these", elem_id="ae-more", scale=1)
            neg_btn = gr.Button("Use as negatives", elem_id="ae-negatives", scale=1)
            clear_btn = gr.Button("Clear selection", elem_id="ae-clear", scale=1)
            export_btn = gr.Button("Export ZIP", elem_id="ae-export", scale=1)
        zip_file = gr.File(label="Download", interactive=False, elem_id="ae-zip", height=60, elem_classes=["ae-download"])
        more = gr.HTML(elem_id="ae-more-results")

    def on_select(library_, model_, evt: gr.EventData):
        data = getattr(evt, "_data", None) or {}
        return select(svc, library_, model_, data.get("token"), data.get("indices"))

    view.selection(on_select, [library, model], [ids, box, status], **PRIVATE)
    sel = [library, model, ids]
    def add_tags(library_, model_, ids_, text, whole_, request: gr.Request):
        return tag(svc, library_, model_, ids_, text, False, whole_, request)

    def remove_tags(library_, model_, ids_, text, whole_, request: gr.Request):
        return tag(svc, library_, model_, ids_, text, True, whole_, request)

    add_btn.click(add_tags, sel + [tag_text, whole], [status, box], **PRIVATE)
    rm_btn.click(remove_tags, sel + [tag_text, whole], [status, box], **PRIVATE)
    label_btn.click(bind(relabel, svc), sel + [label_text, whole], [status, box], **PRIVATE)
    undo_btn.click(bind(undo, svc), sel, [status, box], **PRIVATE)
    negatives = gr.State([])
    more_btn.click(bind(more_like, svc), sel + [k, negatives], more, **PRIVATE)
    neg_btn.click(set_negatives, ids, [negatives, status], **PRIVATE)
    clear_btn.click(bind(clear, svc), [library, model, view], [ids, box, view], **PRIVATE)
    export_btn.click(bind(export, svc), sel, [zip_file, status], **PRIVATE)
    return SelectionHandles(ids, box, status, edit_group)
