"""The Gradio UI: one `build_<tab>(svc, ctx)` per view, wired in `build_app`.

Callbacks only call `Services` (which calls `index` / `projections`); every error a user can
cause is shown as one readable line.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from urllib.parse import quote

import gradio as gr
import plotly.graph_objects as go

from app.cli import one_line
from app.mapview import map_view
from app.services import METHOD_LABELS, Services

MAX_UPLOAD = "200mb"
METHOD_CHOICES = [(label, key) for key, label in METHOD_LABELS.items()]
MAX_CHOICES = 1000
EMPTY = "No library yet: index a folder in the Library tab (or run: python app.py index FOLDER --library NAME)."
CSS = """
.ae-hits { display: flex; flex-direction: column; gap: 6px; }
.ae-hit { display: grid; grid-template-columns: 2.2em 5em 160px 1fr 300px; gap: 10px; align-items: center;
  padding: 4px 6px; border-bottom: 1px solid #eee; font-size: 13px; }
.ae-hit img { width: 160px; height: 48px; object-fit: fill; border-radius: 3px; background: #111; }
.ae-hit audio { width: 300px; height: 32px; }
.ae-hit .lbl { display: inline-block; padding: 0 6px; border-radius: 8px; background: #eef; color: #224; }
.ae-hit .path { font-family: monospace; word-break: break-all; }
.ae-hit .score { font-variant-numeric: tabular-nums; }
.ae-error { color: #b00020; font-weight: 600; }
.ae-quality { color: #555; }
"""


# ---------------------------------------------------------------------------------------------
# small formatting helpers
def audio_url(library: str, path: str, start_s: float | None = None, end_s: float | None = None) -> str:
    """URL of a clip served by the app (optionally a time range as a media fragment)."""
    url = f"/audio/{quote(library)}/{quote(path)}"
    if start_s:
        url += f"#t={start_s:.2f}" + (f",{end_s:.2f}" if end_s else "")
    return url


def error_html(exc: BaseException | str) -> str:
    """A readable one-line error block."""
    msg = exc if isinstance(exc, str) else one_line(exc)
    return f'<div class="ae-error">Error: {html.escape(msg)}</div>'


def hits_html(library: str, hits, title: str = "") -> str:
    """Search results as rows: rank, score, thumbnail, path/label, player."""
    if not hits:
        return "<p>No results.</p>"
    rows = [f"<h4>{html.escape(title)}</h4>"] if title else []
    for i, h in enumerate(hits):
        p = h.payload if hasattr(h, "payload") else h
        path, label = p.get("path", ""), p.get("label")
        start, end = p.get("start_s"), p.get("end_s")
        seg = p.get("segment") is not None
        where = f" @ {start:.1f}–{end:.1f} s" if seg and start is not None else ""
        hid = h.id if hasattr(h, "id") else p.get("id")
        score = h.score if hasattr(h, "score") else p.get("score", 0.0)
        thumb = f'<img src="/thumb/{quote(library)}/{hid}.png" loading="lazy" onerror="this.style.visibility=\'hidden\'"/>'
        lbl = f'<span class="lbl">{html.escape(str(label))}</span>' if label else ""
        rows.append(
            f'<div class="ae-hit" data-id="{hid}" data-path="{html.escape(path)}"><b>{i + 1}</b>'
            f'<span class="score">{score:.4f}</span>{thumb}'
            f'<span><span class="path">{html.escape(path)}{where}</span> {lbl}</span>'
            f'<audio controls preload="none" src="{audio_url(library, path, start if seg else None, end if seg else None)}"></audio></div>')
    return '<div class="ae-hits">' + "".join(rows) + "</div>"


def _dd(choices: list[str], value: str | None = None, **kw) -> gr.Dropdown:
    return gr.Dropdown(choices=choices, value=value if value in choices else (choices[0] if choices else None), **kw)


# ---------------------------------------------------------------------------------------------
def build_map(svc: Services, ctx: dict) -> None:
    """Map: library x model x method x dims; colour by label/tag/descriptor; click to hear."""
    with gr.Row():
        method = gr.Radio(METHOD_CHOICES, value="pca", label="Method", info="LDA fits on labelled clips only")
        dims = gr.Radio(["2D", "3D"], value="2D", label="Dimensions")
        color = gr.Dropdown(["label"], value="label", label="Colour by", allow_custom_value=False)
        draw = gr.Button("Draw map", variant="primary")
    with gr.Accordion("Parameters", open=False):
        with gr.Row():
            n_neighbors = gr.Slider(2, 100, value=15, step=1, label="UMAP n_neighbors")
            min_dist = gr.Slider(0.0, 0.99, value=0.1, step=0.01, label="UMAP min_dist")
            perplexity = gr.Slider(2, 100, value=30, step=1, label="t-SNE perplexity")
            seed = gr.Number(value=0, precision=0, label="Seed")
    status = gr.Markdown(elem_classes=["ae-quality"])
    mv = map_view(elem_id="ae-map-main")
    with gr.Row():
        k = gr.Slider(1, 30, value=8, step=1, label="Neighbours of a clicked point", scale=1)
    neighbours = gr.HTML("<p>Click a point to hear it and see its nearest neighbours (a Qdrant query).</p>")
    clicked = gr.State(None)
    ctx["map"] = mv

    def method_params(method_, nn, md, pp) -> dict:
        return {"umap": {"n_neighbors": int(nn), "min_dist": float(md)},
                "tsne": {"perplexity": float(pp)}}.get(method_, {})

    def on_draw(library, model, method_, dims_, color_by, nn, md, pp, sd, progress=gr.Progress()):
        if not library or not model:
            return {"message": EMPTY}, ""
        progress(0.05, desc=f"{METHOD_LABELS.get(method_, method_)} map of {library} · {model} "
                            "(fitted once, then cached)")
        try:
            # the map first; its quality numbers (seconds at 50k points) in the next event, `on_quality`
            value, q = svc.map_value(library, model, method_, 3 if dims_ == "3D" else 2, color_by=color_by,
                                     seed=int(sd or 0), params=method_params(method_, nn, md, pp), quality=False)
        except Exception as exc:
            return {"message": f"Error: {one_line(exc)}"}, error_html(exc)
        return value, q

    def on_quality(library, model, method_, dims_, color_by, nn, md, pp, sd):
        if not library or not model:
            return gr.skip()
        try:
            return svc.map_status(library, model, method_, 3 if dims_ == "3D" else 2, seed=int(sd or 0),
                                  params=method_params(method_, nn, md, pp))
        except Exception as exc:
            return error_html(exc)

    def on_model(library, model):
        try:
            return gr.Dropdown(choices=svc.color_options(library, model), value="label")
        except Exception:
            return gr.Dropdown(choices=["label"], value="label")

    def on_click(library, model, k_, evt: gr.EventData):
        data = getattr(evt, "_data", None) or {}
        pid = data.get("id") or svc.map_point_id(data.get("token"), data.get("index"))
        if not pid:
            return "", None
        try:
            hits = svc.search_id(library, model, pid, k=int(k_) + 1)
        except Exception as exc:
            return error_html(exc), None
        head = hits[0].path if hits else ""
        return (hits_html(library, hits[:1], "Clicked clip") +
                hits_html(library, hits[1:], f"Nearest to {head} ({model})")), pid

    inputs = [ctx["library"], ctx["model"], method, dims, color, n_neighbors, min_dist, perplexity, seed]
    draw.click(on_draw, inputs, [mv, status]).then(on_quality, inputs, status)
    for comp in (method, dims, color):
        comp.change(on_draw, inputs, [mv, status]).then(on_quality, inputs, status)
    ctx["model"].change(on_model, [ctx["library"], ctx["model"]], color)
    mv.point_click(on_click, [ctx["library"], ctx["model"], k], [neighbours, clicked])
    ctx["draw_map"] = (on_draw, inputs, [mv, status])
    ctx["map_quality"] = (on_quality, inputs, status)


def build_playback(svc: Services, ctx: dict) -> None:
    """Playback: the file's trajectory through the map, a red marker following the audio."""
    with gr.Row():
        file = gr.Dropdown([], label="File", scale=3, allow_custom_value=True, elem_id="ae-playback-file")
        ctx["playback_file"] = file
        method = gr.Radio(METHOD_CHOICES, value="pca", label="Method", elem_id="ae-playback-method")
        dims = gr.Radio(["2D", "3D"], value="2D", label="Dimensions", elem_id="ae-playback-dims")
    with gr.Row():
        trail = gr.Slider(0, 30, value=0, step=0.5, label="Trail length (s; 0 = whole path)")
        rotate = gr.Checkbox(value=False, label="Rotate camera (3D)")
        play = gr.Button("Play", variant="primary")
    status = gr.Markdown()
    mv = map_view(elem_id="ae-map-playback")

    def files(library, model):
        try:
            paths = svc.files_of(library, model) if library and model else []
        except Exception:
            paths = []
        # a dropdown of 50k files would freeze the page: list the first ones, allow typing any path,
        # and a click on the Map tab selects the clicked file here
        return gr.Dropdown(choices=paths[:MAX_CHOICES], value=paths[0] if paths else None,
                           info=(f"first {MAX_CHOICES} of {len(paths)} files: type a path or click a point "
                                 f"on the Map" if len(paths) > MAX_CHOICES else None))

    def on_play(library, model, path, method_, dims_, trail_s, rot, progress=gr.Progress()):
        if not library or not model:
            return {"message": EMPTY}, ""
        if not path:
            return {"message": "Pick a file to play."}, ""
        progress(0.1, desc="placing the file's frames into the map")
        try:
            value, note = svc.playback_value(library, model, method_, 3 if dims_ == "3D" else 2, path,
                                             trail_s=float(trail_s), rotate=bool(rot))
        except Exception as exc:
            return {"message": f"Error: {one_line(exc)}"}, error_html(exc)
        return value, note

    for comp in (ctx["library"], ctx["model"]):
        comp.change(files, [ctx["library"], ctx["model"]], file)
    ctx["playback_files"] = (files, [ctx["library"], ctx["model"]], file)
    play.click(on_play, [ctx["library"], ctx["model"], file, method, dims, trail, rotate], [mv, status])


def build_search(svc: Services, ctx: dict) -> None:
    """Search: upload or record a clip (or type a description for CLAP); top-k with players."""
    with gr.Row():
        with gr.Column(scale=2):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Query clip",
                             elem_id="ae-search-audio")
            text = gr.Textbox(label="…or describe a sound (CLAP models only)", placeholder="dog barking")
        with gr.Column(scale=1):
            k = gr.Slider(1, 50, value=10, step=1, label="k")
            label = gr.Dropdown([], value=None, label="Only label", allow_custom_value=False)
            one = gr.Checkbox(value=False, label="One result per file")
            with gr.Accordion("Filter by a descriptor", open=False):
                rfield = gr.Dropdown(["(none)", "loudness_dbfs", "spectral_centroid_hz", "spectral_bandwidth_hz",
                                      "zero_crossing_rate", "onset_rate_hz", "tempo_bpm", "pitch_salience",
                                      "duration_s"], value="(none)", label="Descriptor")
                with gr.Row():
                    rmin = gr.Number(value=None, label="min")
                    rmax = gr.Number(value=None, label="max")
            go_ = gr.Button("Search", variant="primary", elem_id="ae-search-go")
    status = gr.Markdown()
    results = gr.HTML(elem_id="ae-search-results")

    def labels(library, model):
        try:
            labs = svc.labels(library, model) if library and model else []
        except Exception:
            labs = []
        return gr.Dropdown(choices=["(any)"] + labs, value="(any)")

    def run(library, model, path, text_, k_, label_, one_, field, lo, hi):
        if not library or not model:
            return EMPTY, ""
        lab = None if label_ in (None, "", "(any)") else label_
        ranges = ({field: (lo, hi)} if field not in (None, "", "(none)") and (lo is not None or hi is not None)
                  else None)
        try:
            if text_ and text_.strip() and not path:
                hits = svc.search_text(library, model, text_.strip(), k=int(k_), label=lab)
                what = f'"{text_.strip()}"'
            elif path:
                hits = svc.search_file(library, model, path, k=int(k_), label=lab, one_per_file=bool(one_),
                                       ranges=ranges)
                what = Path(path).name
            else:
                return "Upload or record a clip (or type a description) first.", ""
        except Exception as exc:
            return "", error_html(exc)
        return f"{len(hits)} results for {html.escape(what)} with **{model}**", hits_html(library, hits)

    for comp in (ctx["library"], ctx["model"]):
        comp.change(labels, [ctx["library"], ctx["model"]], label)
    ctx["search_labels"] = (labels, [ctx["library"], ctx["model"]], label)
    go_.click(run, [ctx["library"], ctx["model"], audio, text, k, label, one, rfield, rmin, rmax], [status, results])


def heatmap_figure(stats: dict) -> go.Figure:
    """Centroid cosine-similarity heatmap."""
    labels = stats["labels"]
    fig = go.Figure(go.Heatmap(z=stats["centroid_similarity"], x=labels, y=labels, colorscale="Viridis",
                               zmin=-1 if min(map(min, stats["centroid_similarity"])) < 0 else 0, zmax=1,
                               text=[[f"{v:.2f}" for v in row] for row in stats["centroid_similarity"]],
                               texttemplate="%{text}", hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"Centroid cosine similarity ({stats['model']})", height=460,
                      margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(autorange="reversed"))
    return fig


def build_classes(svc: Services, ctx: dict) -> None:
    """Classes: counts (facet), centroids (recommend), heatmap, agreement@k."""
    with gr.Row():
        k = gr.Slider(1, 20, value=5, step=1, label="k (neighbours for agreement)")
        go_ = gr.Button("Compute", variant="primary")
    status = gr.Markdown()
    with gr.Row():
        table = gr.Dataframe(headers=["label", "clips", "agreement@k"], interactive=False, label="Per class")
        plot = gr.Plot(label="Centroid similarity", elem_id="ae-heatmap")
    nearest = gr.HTML()

    def run(library, model, k_):
        if not library or not model:
            return EMPTY, None, None, ""
        try:
            st = svc.class_stats(library, model, k=int(k_))
        except Exception as exc:
            return f"**Error:** {one_line(exc)}", None, None, ""
        rows = [[lb, st["counts"][lb], round(st["agreement"][lb], 3)] for lb in st["labels"]]
        parts = []
        for lb in st["labels"]:
            parts.append(hits_html(library, st["typical"][lb], f"'{lb}': most typical clips (nearest the centroid)"))
            parts.append(hits_html(library, st["nearest"][lb],
                                   f"'{lb}': nearest clips from other classes (recommend, average vector)"))
        msg = (f"**Overall agreement@{st['k']}: {st['overall_agreement']:.3f}** over {st['n_labelled']} labelled "
               f"clips, {len(st['labels'])} classes ({model}). Label counts from a Qdrant facet, centroid "
               f"neighbours from recommend (average vector), agreement from the kNN graph" +
               (f" (estimated from {st['agreement_sampled']:,} clips drawn at random)."
                if st.get("agreement_sampled") else "."))
        return msg, rows, heatmap_figure(st), "".join(parts)

    go_.click(run, [ctx["library"], ctx["model"], k], [status, table, plot, nearest])


def build_library(svc: Services, ctx: dict) -> None:
    """Library: index a folder or uploads with chosen models (progress), counts, delete."""
    table = gr.Dataframe(headers=["library", "clips", "models (clips)", "root"], interactive=False,
                         label="Libraries", elem_id="ae-libraries")
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Index audio")
            name = gr.Textbox(label="Library name (new or existing)", placeholder="my-samples")
            folder = gr.Textbox(label="Server-side folder", placeholder="/path/to/samples")
            uploads = gr.File(file_count="multiple", label="…or upload files", type="filepath", elem_id="ae-upload")
            models = gr.CheckboxGroup(svc.ready_models(), value=["dsp"], label="Models (ready here)")
            with gr.Accordion("Options", open=False):
                labels = gr.Textbox(value="folder", label="Labels from",
                                    info="folder, esc50, urbansound8k, pattern:{kit}_{label}_{n}, sidecar:labels.csv")
                segment = gr.Radio(["auto", "always", "never"], value="auto", label="Split into segments",
                                   info="auto: files longer than 30 s")
                seg_len = gr.Number(value=1.0, label="Segment length (s)")
                trim = gr.Checkbox(value=False, label="Trim clips to the model window around their peak")
            go_ = gr.Button("Index", variant="primary")
            report = gr.Markdown(elem_id="ae-index-report")
        with gr.Column():
            gr.Markdown("### Models")
            models_table = gr.Dataframe(headers=["model", "family", "status", "dim", "why not ready"],
                                        interactive=False, wrap=True)
            gr.Markdown("### Delete a library")
            del_name = gr.Dropdown([], label="Library")
            confirm = gr.Checkbox(value=False, label="Yes, delete all its vectors (audio files are not touched)")
            del_btn = gr.Button("Delete", variant="stop")
            del_msg = gr.Markdown()

    def refresh():
        rows = svc.library_table()
        names = [r["name"] for r in rows]
        data = [[r["name"], r["clips"], ", ".join(f"{m} ({n})" for m, n in r["counts"].items()), r["root"]]
                for r in rows]
        mt = [[m["name"], m["family"], m["status"], m["dim"] or "", m["reason"]] for m in svc.models()]
        return data, gr.Dropdown(choices=names, value=names[0] if names else None), mt

    def run(name_, folder_, files_, models_, labels_, segment_, seg_len_, trim_, progress=gr.Progress()):
        if not name_ or not name_.strip():
            return "**Error:** give the library a name."
        if not models_:
            return "**Error:** choose at least one model."

        def cb(done, total, msg):
            progress(done / max(total, 1), desc=f"{done}/{total} {msg}")
        try:
            rep = svc.index(name_.strip(), folder=(folder_ or "").strip() or None, uploads=files_ or None,
                            models=list(models_), progress=cb, labels=(labels_ or "folder").strip(),
                            segment=segment_, segment_s=float(seg_len_ or 1.0), trim=bool(trim_))
        except Exception as exc:
            return f"**Error:** {one_line(exc)}"
        lines = [f"**{html.escape(rep.summary())}** ({rep.audio_s:.1f} s of audio in {rep.wall_s:.1f} s)"]
        if rep.failed:
            lines.append("Skipped:")
            lines += [f"- `{html.escape(p)}`: {html.escape(r)}" for p, r in rep.failed[:200]]
        return "\n".join(lines)

    def delete(name_, ok):
        if not name_:
            return "Pick a library."
        if not ok:
            return "Tick the box to confirm."
        try:
            dropped = svc.delete_library(name_)
        except Exception as exc:
            return f"**Error:** {one_line(exc)}"
        return f"Deleted library '{html.escape(name_)}' ({len(dropped)} collections)."

    with gr.Accordion("Trained models: training log", open=False):
        gr.Markdown("Train with `python app.py train autoencoder|selfsup|contrastive --library NAME ...`; "
                    "the trained model is then listed above and can be indexed like any other.")
        with gr.Row():
            trained = gr.Dropdown([], label="Trained model", scale=3)
            show = gr.Button("Show loss")
        loss_plot = gr.Plot(label="Loss per epoch")

    def trained_list():
        names = svc.trained_models()
        return gr.Dropdown(choices=names, value=names[0] if names else None)

    def loss(name):
        if not name:
            return None
        rows = svc.training_log(name)
        fig = go.Figure()
        for col in ("train_loss", "val_loss"):
            ys = [r.get(col) for r in rows]
            if any(v not in (None, "") for v in ys):
                fig.add_trace(go.Scatter(x=[r.get("epoch") for r in rows], y=ys, mode="lines+markers", name=col))
        fig.update_layout(title=f"{name}: loss per epoch", xaxis_title="epoch", yaxis_title="loss", height=360,
                          margin=dict(l=10, r=10, t=40, b=10))
        return fig

    show.click(loss, trained, loss_plot)

    outs = [table, del_name, models_table]
    ctx["refresh_library"] = (refresh, None, outs)
    ctx["trained_list"] = (trained_list, None, trained)
    go_.click(run, [name, folder, uploads, models, labels, segment, seg_len, trim], report).then(
        refresh, None, outs).then(*ctx["refresh_selectors"])
    del_btn.click(delete, [del_name, confirm], del_msg).then(refresh, None, outs).then(*ctx["refresh_selectors"])


def build_compare(svc: Services, ctx: dict) -> None:
    """Compare: the same library in 2-3 models side by side, the same clip highlighted."""
    with gr.Row():
        models = gr.CheckboxGroup([], label="Models (2 or 3)")
        method = gr.Radio(METHOD_CHOICES, value="pca", label="Method")
        dims = gr.Radio(["2D", "3D"], value="2D", label="Dimensions")
    with gr.Row():
        clip = gr.Dropdown([], label="Highlight a clip", allow_custom_value=True)
        go_ = gr.Button("Compare", variant="primary")
    status = gr.Markdown()
    with gr.Row():
        views = [map_view(elem_id=f"ae-map-compare-{i}") for i in range(3)]

    def on_library(library):
        try:
            ms = list(svc.library(library).models) if library else []
            files = svc.files_of(library, ms[0]) if ms else []
        except Exception:
            ms, files = [], []
        return (gr.CheckboxGroup(choices=ms, value=ms[:3]),
                gr.Dropdown(choices=["(none)"] + files[:MAX_CHOICES], value="(none)"))

    def run(library, models_, method_, dims_, clip_, progress=gr.Progress()):
        empty = {"message": ""}
        progress(0.05, desc="fitting one map per model (cached afterwards)")
        if not library:
            return [EMPTY] + [empty] * 3
        models_ = list(models_ or [])[:3]
        if not models_:
            return ["Choose 2 or 3 models."] + [empty] * 3
        try:
            out, rows = svc.compare(library, models_, method_, 3 if dims_ == "3D" else 2,
                                    highlight_path=None if clip_ in (None, "(none)") else clip_)
        except Exception as exc:
            return [f"**Error:** {one_line(exc)}"] + [empty] * 3
        table = "| model | trustworthiness | agreement@10 (full space) | agreement@10 (map) |\n|---|---|---|---|\n"
        table += "\n".join(f"| {r['model']} | {r['trustworthiness']:.3f} | {r['agreement_full']:.3f} | "
                           f"{r['agreement_map']:.3f} |" for r in rows)
        return [table] + out + [empty] * (3 - len(out))

    ctx["library"].change(on_library, ctx["library"], [models, clip])
    ctx["compare_init"] = (on_library, ctx["library"], [models, clip])
    go_.click(run, [ctx["library"], models, method, dims, clip], [status] + views)


def api_safe(obj):
    """Rename every "path" key to "file": gradio_client downloads any result dict with a "path" key."""
    if isinstance(obj, dict):
        return {("file" if k == "path" else k): api_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [api_safe(v) for v in obj]
    return obj


def build_api(svc: Services) -> None:
    """Programmatic endpoints (stable api_names; see the README for a gradio_client example).

    Results name a clip's path relative to its library `file` (not `path`, which gradio_client
    would try to download)."""

    def list_libraries() -> list[dict]:
        """Every library: name, root, models and clip counts."""
        return svc.library_table()

    def list_models() -> list[dict]:
        """Every model with its availability (ready / downloadable / unavailable and why)."""
        return svc.models()

    def search_by_id(library: str, model: str, point_id: str, k: int = 10) -> list[dict]:
        """The k clips nearest a clip of the library (itself first)."""
        return api_safe([h.to_dict() for h in svc.search_id(library, model, point_id, k=int(k))])

    def map_coordinates(library: str, model: str, method: str = "umap", dims: int = 2, seed: int = 0) -> dict:
        """Map coordinates with payload (path, label, tags) of every clip."""
        return api_safe(svc.map_document(library, model, method, int(dims), seed=int(seed)))

    def taggram(library: str, model: str, path: str) -> dict:
        """A clip's taggram over time: times_s, tag names, scores [T, n_tags]."""
        return api_safe(svc.taggram(library, model, path))

    def class_stats(library: str, model: str, k: int = 5) -> dict:
        """Label counts, agreement@k per class and overall, centroid similarity matrix."""
        return api_safe(svc.class_stats(library, model, k=int(k)))

    for fn in (list_libraries, list_models, search_by_id, map_coordinates, taggram, class_stats):
        gr.api(fn, api_name=fn.__name__)

    # search by uploaded audio needs a file component so gradio_client can upload
    with gr.Row(visible=False):
        lib, model = gr.Textbox(), gr.Textbox()
        f = gr.File(type="filepath")
        k = gr.Number(value=10, precision=0)
        out = gr.JSON()
        btn = gr.Button()

    def search_file(library, model_, path, k_):
        return api_safe([h.to_dict() for h in svc.search_file(library, model_, path, k=int(k_ or 10))])

    btn.click(search_file, [lib, model, f, k], out, api_name="search_file")


def build_app(svc: Services) -> gr.Blocks:
    """The whole UI."""
    with gr.Blocks(title="Audio embedding explorer") as demo:
        gr.Markdown("## Audio embedding explorer")
        banner = gr.Markdown()
        with gr.Row():
            library = gr.Dropdown([], label="Library", elem_id="ae-library")
            model = gr.Dropdown([], label="Model", elem_id="ae-model")
        ctx: dict = {"library": library, "model": model}

        def refresh_selectors(cur_lib=None, cur_model=None):
            try:
                names = [lib.name for lib in svc.libraries()]
            except Exception as exc:
                return gr.Dropdown(choices=[]), gr.Dropdown(choices=[]), f"**Error:** {one_line(exc)}"
            lib = cur_lib if cur_lib in names else (names[0] if names else None)
            models = list(svc.library(lib).models) if lib else []
            mod = cur_model if cur_model in models else (models[0] if models else None)
            msg = "" if names else EMPTY
            return gr.Dropdown(choices=names, value=lib), gr.Dropdown(choices=models, value=mod), msg

        def on_library(lib):
            models = list(svc.library(lib).models) if lib else []
            return gr.Dropdown(choices=models, value=models[0] if models else None)

        ctx["refresh_selectors"] = (refresh_selectors, [library, model], [library, model, banner])
        library.change(on_library, library, model)
        with gr.Tab("Map", id="map"):
            build_map(svc, ctx)
        with gr.Tab("Playback", id="playback"):
            build_playback(svc, ctx)
        with gr.Tab("Search", id="search"):
            build_search(svc, ctx)
        with gr.Tab("Classes", id="classes"):
            build_classes(svc, ctx)
        with gr.Tab("Library", id="library"):
            build_library(svc, ctx)
        with gr.Tab("Compare", id="compare"):
            build_compare(svc, ctx)
        build_api(svc)

        def pick_for_playback(evt: gr.EventData):
            return (getattr(evt, "_data", None) or {}).get("clip") or gr.skip()

        ctx["map"].point_click(pick_for_playback, None, ctx["playback_file"])
        fn, ins, outs = ctx["refresh_library"]
        draw, draw_in, draw_out = ctx["draw_map"]
        tl_fn, tl_in, tl_out = ctx["trained_list"]
        # the map first (what a user waits for), the library tab's tables beside it
        loaded = demo.load(refresh_selectors, [library, model], [library, model, banner])
        q_fn, q_in, q_out = ctx["map_quality"]
        loaded.then(draw, draw_in, draw_out).then(q_fn, q_in, q_out)
        loaded.then(fn, None, outs).then(tl_fn, tl_in, tl_out)
    return demo


def serve(**kwargs) -> int:
    """Serve the app (see `app.server.serve`)."""
    from app.server import serve as _serve

    return _serve(**kwargs)


__all__ = ["build_app", "serve", "hits_html", "audio_url", "json"]
