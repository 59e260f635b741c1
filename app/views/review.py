"""Review view: suggested labels. A linear classifier on the labelled clips suggests a label (with
its confidence) for every unlabelled clip; its cross-validated quality and learning curve; the
queue of clips to label next (most uncertain first, or most like one label), one at a time with
its player, thumbnail and suggestion: accept (key A) or correct it in one click, skip (key N);
each answer is a user label, the classifier retrains and the queue refreshes. Suggested labels
colour the map ('predicted label') and filter searches."""
from __future__ import annotations

import html
from dataclasses import dataclass
from urllib.parse import quote

import gradio as gr

from app.components import EMPTY, audio_url, error_html, error_md
from app.services import Services
from app.services.formatting import number
from app.views import PRIVATE, bind

QUEUE_SHOWN = 20
MODES = [("Most uncertain first (smallest margin between the top two labels)", "uncertain"),
         ("Most like a label, not yet labelled", "like")]

# keys A (accept) and N (next) while the Review tab shows a clip; never while typing in a field
KEYS_JS = """
if (!window.__aeReviewKeys) {
  window.__aeReviewKeys = true;
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) return;
    const card = document.querySelector('#ae-review-card .ae-review-item');
    if (!card || !card.offsetParent) return;  // the Review tab is not showing a clip
    const k = (e.key || '').toLowerCase();
    const target = k === 'a' ? 'ae-review-accept' : k === 'n' ? 'ae-review-next' : null;
    if (!target) return;
    const el = document.getElementById(target);
    const b = el && (el.tagName === 'BUTTON' ? el : el.querySelector('button'));
    if (b && !b.disabled) { e.preventDefault(); b.click(); }
  });
}
"""


@dataclass
class ReviewHandles:
    """What the wiring connects."""

    changed: list  # events after which the library's payloads changed (suggestions written)


def counts_html(svc: Services, library: str, model: str, note: str = "", counts: dict | None = None) -> str:
    """Labelled / suggested counts (data attributes for tests and scripts); `counts`: already read."""
    c = counts if counts is not None else svc.labels.counts(library, model)
    by = ", ".join(f"{html.escape(k)} {v}" for k, v in list(c["by_label"].items())[:12]) or "none yet"
    return (f'<div class="ae-review-counts" data-labelled="{c["labelled"]}" data-suggested="{c["suggested"]}" '
            f'data-unlabelled="{c["unlabelled"]}"><b>{c["labelled"]}</b> labelled · <b>{c["suggested"]}</b> of '
            f'{c["unlabelled"]} unlabelled clips have a suggestion ({by})'
            + (f'<br>{html.escape(note)}' if note else "") + "</div>")


def card_html(library: str, item: dict | None, pos: int, total: int, unlabelled: int | None = None) -> str:
    """The clip under review: thumbnail, player, path and suggestion (`unlabelled`: how many clips
    have no label, when known)."""
    if not item:
        if total == 0 and unlabelled == 0:
            return ('<p class="ae-review-empty">Nothing to review: every clip has a label (labels are suggested '
                    'for unlabelled clips only).</p>')
        return '<p class="ae-review-empty">Nothing to review: press “Suggest labels”.</p>' if total == 0 else \
            '<p class="ae-review-empty">End of the queue: press “Suggest labels” to rank again.</p>'
    p = item.get("payload") or {}
    seg = p.get("segment") is not None
    src = html.escape(audio_url(library, item["path"], p.get("start_s") if seg else None, p.get("end_s") if seg else None))
    thumb = (f'<img src="/thumb/{quote(library)}/{quote(item["id"])}.png" '
             f'onerror="this.style.visibility=\'hidden\'"/>')
    top = " · ".join(f"{html.escape(c)} {pr:.2f}" for c, pr in item["top"])
    return (f'<div class="ae-review-item" data-id="{html.escape(item["id"])}" '
            f'data-suggestion="{html.escape(item["suggestion"])}">'
            f'<div>{pos + 1} of {total} · <span class="path">{html.escape(item["path"])}</span></div>{thumb}'
            f'<div class="ae-review-sugg">suggested: <b>{html.escape(item["suggestion"])}</b> '
            f'(confidence {item["conf"]:.2f}, margin {item["margin"]:.2f}) — {top}</div>'
            f'<audio controls preload="metadata" src="{src}"></audio>'
            f'<div class="ae-review-keys">Keys: <kbd>A</kbd> accept · <kbd>N</kbd> next</div></div>')


def queue_html(library: str, queue: list[dict], pos: int) -> str:
    """The rest of the queue with players."""
    rest = queue[pos + 1:pos + 1 + QUEUE_SHOWN]
    if not rest:
        return ""
    rows = "".join(
        f'<li data-id="{html.escape(it["id"])}"><span class="path">{html.escape(it["path"])}</span> → '
        f'<b>{html.escape(it["suggestion"])}</b> {it["conf"]:.2f} '
        f'<audio controls preload="none" src="{html.escape(audio_url(library, it["path"]))}"></audio></li>'
        for it in rest)
    return f'<div class="ae-review-queue"><b>Next in the queue</b><ol>{rows}</ol></div>'


def _queue(svc: Services, library: str, model: str, mode: str, cls: str | None) -> list[dict]:
    items = svc.labels.queue(library, model, mode or "uncertain", cls, n=200)
    return [{**it.to_dict(), "payload": {k: it.payload.get(k) for k in ("segment", "start_s", "end_s")}}
            for it in items]


def _show(svc: Services, library: str, model: str, queue: list[dict], pos: int, note: str = "") -> tuple:
    item = queue[pos] if 0 <= pos < len(queue) else None
    c = svc.labels.counts(library, model)
    return (counts_html(svc, library, model, note, c), card_html(library, item, pos, len(queue), c["unlabelled"]),
            queue_html(library, queue, pos), queue, pos,
            gr.update(value=item["suggestion"] if item else None))


def suggest(svc: Services, library: str | None, model: str | None, mode: str = "uncertain", cls: str | None = None,
            request: gr.Request | None = None) -> tuple:
    """(counts, card, queue list, queue state, position, correction picker, label choices, status): train
    the classifier, write the suggestions, rank the queue."""
    if not library or not model:
        return EMPTY, "", "", [], 0, gr.update(), gr.update(), ""
    try:
        svc.access.require(request, f"suggesting labels in library '{library}'", library)
        run = svc.labels.train(library, model)
        queue = _queue(svc, library, model, mode, cls if mode == "like" else None)
    except Exception as exc:
        return error_html(exc), "", "", [], 0, gr.update(), gr.update(), error_md(exc)
    classes = run.classifier.classes
    out = _show(svc, library, model, queue, 0)
    return (*out, gr.update(choices=classes, value=cls if cls in classes else classes[0]), run.summary())


def _answer(svc: Services, library: str | None, model: str | None, mode: str, cls: str | None,
            queue: list[dict] | None, pos: int, label: str | None, request: gr.Request | None) -> tuple:
    queue = list(queue or [])
    pos = int(pos or 0)
    if not library or not model or not 0 <= pos < len(queue):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), "Nothing to answer: press “Suggest labels”."
    item = queue[pos]
    label = (label or "").strip() or item["suggestion"]
    try:
        svc.access.require(request, f"labelling clips of library '{library}'", library)
        res, run = svc.labels.accept(library, model, [item["id"]], label)
        queue = _queue(svc, library, model, mode, cls if mode == "like" else None)
    except Exception as exc:
        return (gr.skip(),) * 6 + (error_md(exc),)
    verb = "accepted" if label == item["suggestion"] else f"corrected ({item['suggestion']} → {label})"
    msg = f"{item['path']}: {verb}; {res.summary()}. Retrained: {run.summary()}."
    return (*_show(svc, library, model, queue, 0), msg)


def accept(svc: Services, library: str | None, model: str | None, mode: str, cls: str | None,
           queue: list[dict] | None, pos: int, request: gr.Request | None = None) -> tuple:
    """Accept the shown clip's suggestion (a user label); retrain; the refreshed queue."""
    return _answer(svc, library, model, mode, cls, queue, pos, None, request)


def correct(svc: Services, library: str | None, model: str | None, mode: str, cls: str | None,
            queue: list[dict] | None, pos: int, label: str | None, request: gr.Request | None = None) -> tuple:
    """Give the shown clip another label (a user label); retrain; the refreshed queue."""
    if not (label or "").strip():
        return (gr.skip(),) * 6 + ("Pick or type the right label first.",)
    return _answer(svc, library, model, mode, cls, queue, pos, label, request)


def skip(svc: Services, library: str | None, queue: list[dict] | None, pos: int) -> tuple:
    """(card, queue list, position, correction picker) of the next clip in the queue."""
    queue = list(queue or [])
    pos = min(int(pos or 0) + 1, len(queue))
    item = queue[pos] if pos < len(queue) else None
    return (card_html(library or "", item, pos, len(queue)), queue_html(library or "", queue, pos), pos,
            gr.update(value=item["suggestion"] if item else None))


def quality(svc: Services, library: str | None, model: str | None, group_by: str = "auto") -> tuple[str, list, list]:
    """(headline, per-class rows, learning-curve rows): grouped cross-validation of the classifier."""
    if not library or not model:
        return EMPTY, [], []
    try:
        q = svc.labels.quality(library, model, by=group_by or "auto")
    except Exception as exc:
        return error_md(exc), [], []
    head = (f"**{q.n_folds}-fold cross-validation**, folds grouped by {q.grouped_by} ({q.n_groups} groups: no "
            f"group is in a training and a test fold): accuracy **{number(q.accuracy)}**, macro-F1 "
            f"**{number(q.macro_f1)}**.")
    rows = [[c, v["precision"], v["recall"], v["f1"], v["support"]] for c, v in q.per_class.items()]
    curve = [[c["per_class"], c["n_train"], c["accuracy"], c["macro_f1"]] for c in q.curve]
    return head, rows, curve


def select_predicted(svc: Services, library: str | None, model: str | None, label: str | None, min_conf: float,
                     view: dict | None) -> tuple:
    """(selection ids, status, map value with them selected): clips suggested as `label` with
    confidence >= min_conf become the selection."""
    if not library or not model or not label:
        return gr.skip(), "Suggest labels first, then pick one.", gr.skip()
    try:
        ids = svc.labels.predicted_ids(library, model, label, float(min_conf))
    except Exception as exc:
        return gr.skip(), error_md(exc), gr.skip()
    value = dict(view or {})
    if value.get("token"):
        held, wanted = svc.maps.tokens, set(ids)
        pts = held.points(value["token"])
        if pts is not None:
            value["selected_idx"] = [j for j in range(len(pts["x"])) if held.point_id(value["token"], j) in wanted]
    return (ids, f"Selected {len(ids)} clips suggested as '{label}' with confidence ≥ {float(min_conf):.2f} "
                 f"(see the Map tab; colour it by 'predicted label').", value or gr.skip())


def build(svc: Services, library: gr.Dropdown, model: gr.Dropdown, selection: gr.State,
          view: gr.HTML) -> ReviewHandles:
    """Lay out the review view and wire its events."""
    with gr.Row():
        go = gr.Button("Suggest labels (train the classifier)", variant="primary", elem_id="ae-review-go", scale=2)
        mode = gr.Radio(MODES, value="uncertain", label="Queue", scale=3)
        cls = gr.Dropdown([], value=None, label="Label (for 'most like')", allow_custom_value=False, scale=1)
    status = gr.Markdown(elem_id="ae-review-status")
    counts = gr.HTML(elem_id="ae-review-counts")
    card = gr.HTML(elem_id="ae-review-card", js_on_load=KEYS_JS)
    with gr.Row():
        accept_btn = gr.Button("Accept (A)", variant="primary", elem_id="ae-review-accept")
        next_btn = gr.Button("Next (N)", elem_id="ae-review-next")
        fix = gr.Dropdown([], value=None, label="…or the right label", allow_custom_value=True,
                          elem_id="ae-review-fix")
        fix_btn = gr.Button("Set this label", elem_id="ae-review-correct")
    rest = gr.HTML(elem_id="ae-review-queue")
    queue = gr.State([])
    pos = gr.State(0)
    with gr.Accordion("Quality of the classifier (cross-validated)", open=False):
        with gr.Row():
            group_by = gr.Textbox(value="auto", label="Folds grouped by (auto, file, or a field: artist, kit, ...)")
            q_btn = gr.Button("Measure", elem_id="ae-review-quality")
        q_head = gr.Markdown()
        q_rows = gr.Dataframe(headers=["label", "precision", "recall", "F1", "clips"], interactive=False)
        gr.Markdown("Learning curve: the same folds with at most n labelled clips per class to learn from.")
        q_curve = gr.Dataframe(headers=["per class", "training clips", "accuracy", "macro-F1"], interactive=False)
    with gr.Accordion("Select on the map: suggested as … with confidence at least …", open=False):
        with gr.Row():
            sel_label = gr.Dropdown([], value=None, label="Suggested label", allow_custom_value=False)
            sel_conf = gr.Slider(0.0, 1.0, value=0.8, step=0.05, label="Confidence at least")
            sel_btn = gr.Button("Select them")
        sel_msg = gr.Markdown()

    shown = [counts, card, rest, queue, pos, fix]
    trained = go.click(bind(suggest, svc), [library, model, mode, cls], shown + [cls, status], **PRIVATE)
    accepted = accept_btn.click(bind(accept, svc), [library, model, mode, cls, queue, pos], shown + [status],
                                **PRIVATE)
    corrected = fix_btn.click(bind(correct, svc), [library, model, mode, cls, queue, pos, fix], shown + [status],
                              **PRIVATE)
    next_btn.click(bind(skip, svc), [library, queue, pos], [card, rest, pos, fix], **PRIVATE)
    for ev in (trained, accepted, corrected):
        ev.then(lambda lib, m: _label_choices(svc, lib, m), [library, model], [fix, sel_label], **PRIVATE)
    q_btn.click(bind(quality, svc), [library, model, group_by], [q_head, q_rows, q_curve], **PRIVATE)
    sel_btn.click(bind(select_predicted, svc), [library, model, sel_label, sel_conf, view],
                  [selection, sel_msg, view], **PRIVATE)
    return ReviewHandles([trained, accepted, corrected])


def _label_choices(svc: Services, library: str | None, model: str | None) -> tuple:
    """The labels the classifier knows (correction picker keeps its value; selection picker)."""
    run = svc.labels.last(library, model, train=False) if library and model else None
    classes = run.classifier.classes if run else []
    return gr.update(choices=classes), gr.update(choices=classes, value=classes[0] if classes else None)
