"""Classes view: label counts (Qdrant facet), agreement@k per class and overall (kNN graph), the
centroid cosine-similarity heatmap, each class's most typical clips and its nearest clips from
other classes (recommend, average-vector strategy)."""
from __future__ import annotations

import html

import gradio as gr
import plotly.graph_objects as go

from app.components import EMPTY, error_md, hits_html
from app.services import Services
from app.services.formatting import number
from app.views import PRIVATE, bind


def heatmap_figure(stats: dict) -> go.Figure:
    """Centroid cosine-similarity heatmap."""
    labels, sim = stats["labels"], stats["centroid_similarity"]
    fig = go.Figure(go.Heatmap(z=sim, x=labels, y=labels, colorscale="Viridis",
                               zmin=-1 if sim and min(map(min, sim)) < 0 else 0, zmax=1,
                               text=[[f"{v:.2f}" for v in row] for row in sim],
                               texttemplate="%{text}", hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"Centroid cosine similarity ({stats['model']})", height=460,
                      margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(autorange="reversed"))
    return fig


def summary(stats: dict, model: str) -> str:
    """The view's headline: overall agreement and how it was computed."""
    sampled = stats.get("agreement_sampled")
    head = (f"**Overall agreement@{stats['k']}: {number(stats['overall_agreement'])}** over {stats['n_labelled']:,} "
            f"labelled clips, {len(stats['labels'])} classes ({model}). ")
    if stats.get("sampled"):
        s = stats["sampled"]
        return head + (f"**Sampled: {s['n']:,} of {s['of']:,} clips** ({s['per_class']:,} per class; label counts "
                       f"exact from a Qdrant facet): centroids are the samples' means, agreement is the sampled clips' "
                       f"neighbours, typical and nearest clips are searched among all clips.")
    return head + ("Label counts from a Qdrant facet, centroid neighbours from recommend (average vector), agreement "
                   "from the kNN graph" + (f" (estimated from {sampled:,} clips drawn at random)." if sampled else "."))


CROSS_FIELDS = ("(none)", "artist", "source", "kit", "album")  # "neighbours from another ...": the artist effect


def compute(svc: Services, library: str | None, model: str | None, k: float = 5, cross: str | None = None):
    """(headline, per-class rows, heatmap figure, typical/nearest clips HTML); with `cross` a field
    (artist, source...), a column of agreement with neighbours of another value of it only."""
    if not library or not model:
        return EMPTY, None, None, ""
    cross = None if cross in (None, "", CROSS_FIELDS[0]) else cross
    try:
        st = svc.queries.class_stats(library, model, k=int(k), cross=cross)
    except Exception as exc:
        return error_md(exc), None, None, ""
    x = st.get("cross_agreement")
    rows = [[lb, st["counts"][lb], number(st["agreement"][lb])]
            + ([number(x["per_label"].get(lb, float("nan")))] if x else []) for lb in st["labels"]]
    parts = []
    for i, lb in enumerate(st["labels"]):  # one fold per class (the first open): 17 classes are 170 rows
        summary_ = f"{lb}: {st['counts'][lb]} clips, agreement@{st['k']} {number(st['agreement'][lb])}"
        parts.append(f'<details class="ae-class"{" open" if i == 0 else ""}>'
                     f"<summary>{html.escape(summary_, quote=False)}</summary>")
        parts.append(hits_html(library, st["typical"][lb], f"'{lb}': most typical clips (nearest the centroid)"))
        parts.append(hits_html(library, st["nearest"][lb],
                               f"'{lb}': nearest clips from other classes (recommend, average vector)"))
        parts.append("</details>")
    head = summary(st, model)
    if x:
        head += (f"\n\n**Agreement@{st['k']} with neighbours of another {x['field']} only: {number(x['overall'])}** "
                 f"({x['n']:,} clips scored, {x['sources']:,} distinct values of {x['field']}"
                 + (f", {x['sampled']:,} sampled" if x["sampled"] else "") + ").")
    headers = ["label", "clips", "agreement@k"] + ([f"other {x['field']}"] if x else [])
    return head, gr.update(value=rows, headers=headers), heatmap_figure(st), "".join(parts)


def build(svc: Services, library: gr.Dropdown, model: gr.Dropdown) -> None:
    """Lay out the classes view and wire its own events."""
    with gr.Row():
        k = gr.Slider(1, 20, value=5, step=1, label="k (neighbours for agreement)")
        cross = gr.Dropdown(list(CROSS_FIELDS), value=CROSS_FIELDS[0], label="Also: neighbours from another…",
                            elem_id="ae-classes-cross")
        go_btn = gr.Button("Compute", variant="primary")
    status = gr.Markdown()
    with gr.Row():
        table = gr.Dataframe(headers=["label", "clips", "agreement@k"], interactive=False, label="Per class")
        plot = gr.Plot(label="Centroid similarity", elem_id="ae-heatmap")
    nearest = gr.HTML()
    go_btn.click(bind(compute, svc), [library, model, k, cross], [status, table, plot, nearest], **PRIVATE)
