"""Curate view: clusters of the chosen model's full vectors (named, with medoids and sizes, purity
and adjusted Rand index against the labels), near-duplicate groups with players (keep one per
group: a CSV of the others, or tag them), and exports of a tag or a cluster as a ZIP."""
from __future__ import annotations

import html
import math

import gradio as gr

from app.components import EMPTY, audio_url, error_md, hits_html
from app.services import Services
from app.services.formatting import number
from app.views import PRIVATE, bind

GROUPS_SHOWN = 100


class _Medoid:
    """A cluster's medoid shown like a hit."""

    def __init__(self, row):
        self.id, self.path, self.label, self.score = row.medoid_id, row.medoid_path, row.name, float(row.size)
        self.score_text = f"{row.size} clips"
        self.payload: dict = {}


def clusters(svc: Services, library: str | None, model: str | None, min_size: float = 5,
             pca: bool = True) -> tuple[str, list[list], dict, str]:
    """(headline, cluster rows, cluster picker, the medoids with players) of an HDBSCAN clustering."""
    if not library or not model:
        return EMPTY, [], gr.update(choices=[], value=None), ""
    try:
        rep = svc.curation.clusters(library, model, min_size=int(min_size), pca_dims=50 if pca else None)
    except Exception as exc:
        return error_md(exc), [], gr.update(choices=[], value=None), ""
    found = [r for r in rep.rows if r.cluster != -1]
    noise = sum(r.size for r in rep.rows if r.cluster == -1)
    head = (f"**{len(found)} clusters** of {sum(r.size for r in rep.rows)} clips ({model}, HDBSCAN min size "
            f"{int(min_size)}{', PCA to 50 dimensions' if pca else ''}); {noise} clips are noise."
            + ("" if math.isnan(rep.purity) else
               f" Against the labels ({rep.n_labelled} clips): purity {number(rep.purity)}, adjusted Rand index "
               f"{number(rep.ari)}.") + (" (cached)" if rep.cached else "")
            + " Colour the map by `cluster` to see them.")
    rows = [[r.cluster, r.name, r.size, r.medoid_path] for r in rep.rows]
    picks = [(f"{r.cluster}: {r.name} ({r.size})", r.cluster) for r in rep.rows]
    medoids = hits_html(library, [_Medoid(r) for r in found],
                        "Each cluster's medoid (the clip nearest its mean) and the cluster's size")
    return head, rows, gr.update(choices=picks, value=picks[0][1] if picks else None), medoids


def select_cluster(svc: Services, library: str | None, model: str | None, cluster: int | None,
                   view: dict | None) -> tuple[list[str], str, dict]:
    """(selection ids, status, map value with the cluster selected): a cluster becomes the selection."""
    if cluster is None or not library or not model:
        return gr.skip(), "Compute the clusters, then pick one.", gr.skip()
    try:
        ids = svc.curation.ids_where(library, model, cluster=int(cluster))
    except Exception as exc:
        return gr.skip(), error_md(exc), gr.skip()
    value = dict(view or {})
    if value.get("token"):
        held = svc.maps.tokens
        wanted = set(ids)
        pts = held.points(value["token"])
        if pts is not None:
            value["selected_idx"] = [j for j in range(len(pts["x"])) if held.point_id(value["token"], j) in wanted]
    return ids, f"Selected cluster {int(cluster)}: {len(ids)} clips (see the Map tab).", value or gr.skip()


def threshold_for(svc: Services, model: str | None) -> float:
    """The duplicate slider's value for a newly chosen model (its measured best threshold)."""
    return svc.curation.duplicate_threshold(model)


def duplicates(svc: Services, library: str | None, model: str | None, threshold: float | None = None) -> tuple[str, str]:
    """(headline, groups with players)."""
    if not library or not model:
        return EMPTY, ""
    if threshold is None:
        threshold = svc.curation.duplicate_threshold(model)
    try:
        groups = svc.curation.duplicates(library, model, threshold=float(threshold))
    except Exception as exc:
        return error_md(exc), ""
    if not groups:
        return f"No duplicates at cosine ≥ {threshold:.3f} ({model}).", ""
    extra = sum(len(g.ids) - 1 for g in groups)
    parts = []
    for n, g in enumerate(groups[:GROUPS_SHOWN]):
        items = "".join(
            f'<li data-path="{html.escape(p)}">{"<b>keep</b> " if j == 0 else ""}<span class="path">{html.escape(p)}'
            f'</span> <audio controls preload="none" src="{html.escape(audio_url(library, p))}"></audio></li>'
            for j, p in enumerate(g.paths))
        parts.append(f'<div class="ae-dupgroup" data-kind="{g.kind}"><b>Group {n + 1}</b> · {g.kind} · '
                     f'similarity ≥ {g.similarity:.4f}<ul>{items}</ul></div>')
    more = f"<p>…and {len(groups) - GROUPS_SHOWN} more groups.</p>" if len(groups) > GROUPS_SHOWN else ""
    head = (f"**{len(groups)} groups**, {extra} clips beyond the first of each group (cosine ≥ {threshold:.3f}, "
            f"{model}; exact = same bytes).")
    return head, '<div class="ae-dups">' + "".join(parts) + more + "</div>"


def keep_one(svc: Services, library: str | None, model: str | None, threshold: float | None = None,
             tag_them: bool = False, request: gr.Request | None = None) -> tuple[str | None, str]:
    """(CSV of every duplicate but the first of each group, status); optionally tag them 'duplicate'."""
    try:
        if tag_them:
            svc.access.require(request, f"tagging the duplicates of library '{library}'", library)
        groups = svc.curation.duplicates(library, model, threshold=float(threshold))
        if not groups:
            return None, "No duplicates to list."
        path = svc.data_dir / "exports" / f"{library}-duplicates.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svc.curation.others_csv(groups))
        msg = f"{sum(len(g.ids) - 1 for g in groups)} duplicates listed."
        if tag_them:
            others = [i for g in groups for i in g.ids[1:] if i != g.ids[0]]
            if others:
                res = svc.curation.edit(library, others, add=["duplicate"])
                msg += f" Tagged 'duplicate': {res.summary()}."
    except Exception as exc:
        return None, error_md(exc)
    return str(path), msg


def export_set(svc: Services, library: str | None, model: str | None, tag: str | None = None,
               cluster: int | None = None) -> tuple[str | None, str]:
    """(ZIP of every clip with a tag, or in a cluster; status)."""
    try:
        ids = svc.curation.ids_where(library, model, tag=(tag or "").strip() or None,
                                     cluster=None if (tag or "").strip() else cluster)
        res = svc.curation.export(library, model, ids)
    except Exception as exc:
        return None, error_md(exc)
    return res["out"], f"ZIP of {res['files']} files, manifest of {res['clips']} clips."


def build(svc: Services, library: gr.Dropdown, model: gr.Dropdown, selection: gr.State, view: gr.HTML) -> None:
    """Lay out the curate view and wire its events."""
    gr.Markdown("### Clusters (HDBSCAN on the model's full vectors, never on the 2D map)")
    with gr.Row():
        min_size = gr.Slider(2, 100, value=5, step=1, label="Smallest cluster")
        pca = gr.Checkbox(value=True, label="PCA to 50 dimensions first (faster)")
        go_btn = gr.Button("Find clusters", variant="primary", elem_id="ae-clusters-go")
    head = gr.Markdown(elem_id="ae-clusters-head")
    table = gr.Dataframe(headers=["cluster", "name", "clips", "medoid"], interactive=False, elem_id="ae-clusters")
    medoids = gr.HTML(elem_id="ae-medoids")
    with gr.Row():
        pick = gr.Dropdown([], label="Cluster", scale=3)
        sel_btn = gr.Button("Select it (on the map)", scale=1)
        exp_btn = gr.Button("Export it as ZIP", scale=1)
    picked = gr.Markdown()
    gr.Markdown("### Near-duplicates")
    with gr.Row():
        threshold = gr.Slider(0.90, 1.0, value=svc.curation.duplicate_threshold(None), step=0.001,
                              label="Cosine threshold (set to the model's measured best when the model changes)",
                              elem_id="ae-dups-threshold")
        dup_btn = gr.Button("Find duplicates", variant="primary", elem_id="ae-dups-go")
        tag_them = gr.Checkbox(value=False, label="…and tag the others 'duplicate'")
        keep_btn = gr.Button("Keep one per group (CSV of the others)")
    dup_head = gr.Markdown(elem_id="ae-dups-head")
    dups = gr.HTML(elem_id="ae-dups")
    gr.Markdown("### Export a tag")
    with gr.Row():
        tag = gr.Textbox(label="Tag", scale=3)
        tag_btn = gr.Button("Export ZIP", scale=1)
    out_file = gr.File(label="Download", interactive=False, height=60, elem_classes=["ae-download"])
    out_msg = gr.Markdown()

    go_btn.click(bind(clusters, svc), [library, model, min_size, pca], [head, table, pick, medoids], **PRIVATE)
    sel_btn.click(bind(select_cluster, svc), [library, model, pick, view], [selection, picked, view], **PRIVATE)
    exp_btn.click(lambda lib, m, c: export_set(svc, lib, m, None, c), [library, model, pick], [out_file, out_msg],
                  **PRIVATE)
    model.change(bind(threshold_for, svc), [model], [threshold], **PRIVATE)
    dup_btn.click(bind(duplicates, svc), [library, model, threshold], [dup_head, dups], **PRIVATE)
    keep_btn.click(bind(keep_one, svc), [library, model, threshold, tag_them], [out_file, out_msg], **PRIVATE)
    tag_btn.click(bind(export_set, svc), [library, model, tag], [out_file, out_msg], **PRIVATE)
