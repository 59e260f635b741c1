"""How the services word what they return: method names, a map's status line, quality tables."""
from __future__ import annotations

import math
from typing import Any

METHOD_LABELS = {"pca": "PCA", "lda": "LDA", "umap": "UMAP", "tsne": "t-SNE", "latent": "latent (3-D models)"}
DESCRIPTORS = ("loudness_dbfs", "spectral_centroid_hz", "spectral_bandwidth_hz", "zero_crossing_rate",
               "onset_rate_hz", "tempo_bpm", "pitch_salience", "duration_s")


def number(value: float | None, digits: int = 3) -> str:
    """A quality number, or 'n/a' where it is undefined (no labels, too few points)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def fitted_on_note(method: str, fitted_on: int, n: int) -> str:
    """'UMAP fitted on 20,000 of 180,000 clips; the rest placed by transform'."""
    return f"{METHOD_LABELS[method]} fitted on {fitted_on:,} of {n:,} clips; the rest placed by transform"


def map_status(n: int, model: str, method: str, dims: int, cached: bool, quality: dict | None,
               fitted_on: int | None = None) -> str:
    """'N clips, UMAP 2D of M (cached) · trustworthiness ... · kNN label agreement ...'; with
    ``fitted_on`` (a map fitted on a sample) it says so."""
    status = f"{n} clips, {METHOD_LABELS[method]} {dims}D of {model}" + (" (cached)" if cached else "")
    if fitted_on is not None and fitted_on < n:
        status += " · " + fitted_on_note(method, fitted_on, n)
    if not quality:
        return status + " · computing its quality numbers…"
    if quality.get("trustworthiness") is not None:
        status += f" · trustworthiness@{quality['k']} {number(quality['trustworthiness'])}"
        if quality.get("agreement_full") is not None:
            status += (f" · kNN label agreement {number(quality['agreement_full'])} in the full space, "
                       f"{number(quality['agreement_map'])} in the map")
    return status


def compare_title(model: str, quality: dict | None) -> str:
    """A compared map's title: the model and its quality numbers."""
    q = quality or {}
    title = f"{model}: trust {number(q.get('trustworthiness'), 2)}"
    if q.get("agreement_full") is not None:
        title += f", agreement {number(q['agreement_full'], 2)}"
    return title


def compare_table(rows: list[dict]) -> str:
    """Markdown table of compared models' quality numbers."""
    table = "| model | trustworthiness | agreement@10 (full space) | agreement@10 (map) |\n|---|---|---|---|\n"
    return table + "\n".join(f"| {r['model']} | {number(r.get('trustworthiness'))} | "
                             f"{number(r.get('agreement_full'))} | {number(r.get('agreement_map'))} |" for r in rows)


def plain(obj: Any) -> Any:
    """`obj` with every hit (anything with `to_dict`) turned into its dict: JSON-ready."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def without_folder(message: str, root: str) -> str:
    """A damaged-library message (its fix names the library's server folder) with the folder left out."""
    import shlex

    return message.replace(shlex.quote(root), "FOLDER").replace(root, "FOLDER")
