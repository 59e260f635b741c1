"""The command line: `python app.py <verb>`; no verb serves the UI.

Data goes to stdout (tables, or JSON with --json); progress and errors go to stderr.
Errors are one line and a non-zero exit.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from app.errors import CliError, one_line

ENV_VAR = "AUDIO_EXPLORER_DATA"  # same as index.DATA_ENV_VAR (not imported here: --help stays fast)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help=f"folder for Qdrant data, caches and weights (default: ${ENV_VAR} or ./data)")


def _map_options(p: argparse.ArgumentParser) -> None:
    """--library, --model and the map's --method, --dims, --seed."""
    p.add_argument("--library", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--method", default="umap", choices=["pca", "lda", "umap", "tsne"])
    p.add_argument("--dims", type=int, default=2, choices=[2, 3])
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb."""
    ap = argparse.ArgumentParser(
        prog="python app.py",
        description="Explore audio collections through deep audio embeddings (Gradio + Qdrant). "
                    "With no verb, serves the web UI.")
    sub = ap.add_subparsers(dest="verb", metavar="VERB")

    p = sub.add_parser("serve", help="serve the web UI (the default)")
    _common(p)
    p.add_argument("--host", default=None, help="bind address (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--no-demo", action="store_true", help="do not build the demo library on first run")

    p = sub.add_parser("index", help="index a folder of audio into a library")
    _common(p)
    p.add_argument("folder", help="folder of audio; sub-folder names become labels")
    p.add_argument("--library", required=True, help="library name (letters, digits, - and _)")
    p.add_argument("--models", default="dsp", help="comma-separated model names (see `models`); default: dsp")
    p.add_argument("--batch-size", type=int, default=16, help="files per embedding batch")
    p.add_argument("--labels", default="folder",
                   help="label source: folder (default), esc50, urbansound8k, 'pattern:{kit}_{label}_{n}', "
                        "sidecar:labels.csv, or tag:genre (also tag:artist, tag:album, tag:title: the files' own "
                        "metadata, read with mutagen)")
    p.add_argument("--segment", default="auto", choices=["auto", "always", "never"],
                   help="split files into segments: auto = files longer than 30 s (default)")
    p.add_argument("--segment-s", type=float, default=1.0, help="segment length and hop in seconds (default 1)")
    p.add_argument("--trim", action="store_true", help="trim clips to the model window around their peak")
    p.add_argument("--no-descriptors", action="store_true", help="skip audio descriptors")
    p.add_argument("--no-thumbnails", action="store_true", help="skip spectrogram thumbnails")
    p.add_argument("--no-aspects", action="store_true",
                   help="skip aspect vectors (timbre, spectrum, pitch, envelope) used by `search --aspects`")
    p.add_argument("--rebuild", action="store_true",
                   help="drop these models' collections of the library first (e.g. damaged ones) and index them "
                        "again; tags and labels are kept")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local (default: threads in this process) or ray (Ray Data actors; pip install 'ray[data]')")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to use with --engine ray (e.g. ray://head:10001 or auto); default: a local one")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray actors, one loaded model each (default: the cluster's CPUs, or GPUs with CUDA)")
    _cluster_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("search", help="query by example: clips most similar to a file, a clip id or a text")
    _common(p)
    p.add_argument("--library", required=True)
    p.add_argument("--model", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--file", help="audio file to search with")
    g.add_argument("--id", help="id of a clip already in the library (ID,ID,...: several, searched with their "
                                "mean, e.g. a selection)")
    g.add_argument("--text", help="text description (CLAP models only)")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--label", default=None, help="only clips with this label")
    p.add_argument("--one-per-file", action="store_true", help="at most one result per file")
    p.add_argument("--where", action="append", default=[], metavar="FIELD=MIN:MAX",
                   help="numeric payload range, e.g. loudness_dbfs=-30:-10 or duration_s=:2 (repeatable)")
    p.add_argument("--aspects", default=None, metavar="NAME=W,...",
                   help="steer by aspect: weights for deep (the model), timbre, spectrum, pitch, envelope, e.g. "
                        "deep=1,timbre=0.5,pitch=0 (unnamed aspects 0, deep 1); hits get per-aspect similarities "
                        "(`aspects`) and a `why` line")
    p.add_argument("--start", type=float, default=None, help="with --file: search with the part from START seconds")
    p.add_argument("--end", type=float, default=None, help="with --file: search with the part up to END seconds")
    p.add_argument("--in-ids", default=None, metavar="ID,ID,...",
                   help="search only among these clips (comma-separated ids, or @FILE: a previous --json output)")
    p.add_argument("--tag", default=None, help="search only among clips with this tag")
    p.add_argument("--cluster", type=int, default=None, help="search only among clips of this cluster")
    p.add_argument("--suggested", default=None, metavar="LABEL",
                   help="search only among unlabelled clips suggested as LABEL (see `classify`)")
    p.add_argument("--min-conf", type=float, default=0.5,
                   help="with --suggested: the suggestion's confidence at least this (default 0.5)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {id, score, path, label}")

    p = sub.add_parser("models", help="list every model and whether it can run here")
    _common(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("libraries", help="list libraries with their models and point counts")
    _common(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("project", help="2D/3D map of a library (PCA, LDA, UMAP, t-SNE) as JSON")
    _common(p)
    _map_options(p)
    p.add_argument("--n-neighbors", type=int, default=None, help="UMAP n_neighbors")
    p.add_argument("--min-dist", type=float, default=None, help="UMAP min_dist")
    p.add_argument("--metric", default=None, help="UMAP metric (default cosine)")
    p.add_argument("--perplexity", type=float, default=None, help="t-SNE perplexity")
    p.add_argument("--out", default=None, help="write JSON here instead of stdout")
    p.add_argument("--quality", action="store_true", help="also compute trustworthiness and kNN agreement")

    p = sub.add_parser("classes", help="label counts, centroid similarity and kNN label agreement")
    _common(p)
    p.add_argument("--library", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("-k", type=int, default=5, help="neighbours for agreement (default 5)")
    p.add_argument("--cross", default=None, metavar="FIELD",
                   help="also agreement@k with neighbours whose FIELD differs (artist, kit, source, album: "
                        "the artist effect left out)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("export", help="a static page of a map (open it from disk) plus vectors for notebooks")
    _common(p)
    _map_options(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--copy-audio", action="store_true", help="copy the audio next to the page (for hosting)")
    p.add_argument("--vectors", default="npz", choices=["npz", "parquet"], help="format of the vectors file")

    p = sub.add_parser("train", help="train an embedder on a library: autoencoder, selfsup, finetune or contrastive",
                       description="Train an embedder on a library; it is then listed by `models` and can be "
                                   "indexed like any model. Each KIND takes --data-dir DIR, --epochs, --resume, "
                                   "... (see `train KIND --help`).")
    tsub = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    kinds = {
        "autoencoder": "conditioned conv autoencoder with a 3-D latent over 0.37 s log-mel windows -> ae-NAME",
        "selfsup": "self-supervised CNN (SimCLR, audio augmentations, no labels) -> ssl-NAME",
        "finetune": "a pretrained model (VGG / MusiCNN) fine-tuned self-supervised (SimCLR, no labels) "
                    "-> BASE+ssl-NAME",
        "contrastive": "supervised-contrastive head on a frozen model already indexed -> BASE+supcon-NAME",
    }
    for kind, text in kinds.items():
        t = tsub.add_parser(kind, help=text, description=text)
        _common(t)
        t.add_argument("--library", required=True, help="library to train on")
        t.add_argument("--name", default=None, help="model name suffix (default: the library name)")
        if kind == "contrastive":
            t.add_argument("--base", required=True, help="frozen embedder indexed in the library (e.g. musicnn-msd)")
            t.add_argument("--temperature", type=float, default=None, help="SupCon temperature (default 0.07)")
        if kind == "autoencoder":
            t.add_argument("--file", default=None, help="train on this one (long) file of the library only")
        if kind in ("selfsup", "finetune"):
            t.add_argument("--temperature", type=float, default=None, help="NT-Xent temperature (default 0.2)")
        if kind == "finetune":
            t.add_argument("--base", default="vgg-msd",
                           help="pretrained model to start from: vgg-msd (default), vgg-mtt, musicnn-msd, musicnn-mtt")
            t.add_argument("--recipe", default=None, choices=["simclr", "byola"],
                           help="augmentations (default simclr: crop, mixup, gain, EQ, frequency mask; byola: "
                                "mixup, random resize crop, fader)")
            t.add_argument("--tune", default=None, choices=["all", "top"],
                           help="which layers train: all, or top (VGG blocks 3-5 / MusiCNN mid end: faster steps)")
        t.add_argument("--epochs", type=int, default=None, help="total epochs (a resumed run continues up to it)")
        t.add_argument("--minutes", type=float, default=None,
                       help="time limit: stop after the epoch that passes it, best weights kept "
                            f"(default {'10' if kind == 'finetune' else 'none'}; 0: none)")
        t.add_argument("--lr", type=float, default=None, help="learning rate")
        t.add_argument("--batch-size", type=int, default=None)
        t.add_argument("--patience", type=int, default=None, help="early stopping: epochs without improvement")
        t.add_argument("--seed", type=int, default=None)
        t.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
        g = t.add_mutually_exclusive_group()
        g.add_argument("--resume", action="store_true", help="continue from the saved epoch (optimizer included)")
        g.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
        t.add_argument("--json", action="store_true", help="print the result (history, metrics) as JSON")

    p = sub.add_parser("delete", help="delete a library (or one model's vectors in it)")
    _common(p)
    p.add_argument("--library", required=True)
    p.add_argument("--model", default=None, help="only this model's collections")

    p = sub.add_parser("tag", help="add or remove a tag, or set the label, of clips (every model of the library)")
    _common(p)
    p.add_argument("--library", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ids", help="comma-separated clip ids")
    g.add_argument("--where", action="append", metavar="FIELD=VALUE",
                   help="clips whose payload FIELD equals VALUE (label=kick, tags=keep, cluster=3; repeatable: all hold)")
    p.add_argument("--model", default=None, help="model whose payload --where reads (default: the library's first)")
    a = p.add_mutually_exclusive_group(required=True)
    a.add_argument("--add", metavar="TAG", help="add this tag")
    a.add_argument("--remove", metavar="TAG", help="remove this tag")
    a.add_argument("--label", metavar="LABEL", help="set the user label ('' restores the folder's label)")
    p.add_argument("--whole-file", action="store_true", help="apply to every segment of the files")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("clusters", help="HDBSCAN clusters of a model's vectors: names, sizes, medoids")
    _common(p)
    p.add_argument("--library", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--min-size", type=int, default=5, help="smallest cluster (default 5)")
    p.add_argument("--no-pca", action="store_true", help="cluster the full vectors without PCA to 50 dimensions")
    p.add_argument("--json", action="store_true", help="clusters with their members' ids as JSON")

    p = sub.add_parser("duplicates", help="groups of near-duplicate clips (cosine above a threshold) and exact copies")
    _common(p)
    p.add_argument("--library", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threshold", type=float, default=None,
                   help="cosine similarity (default: the model's measured best, e.g. dsp 0.999, "
                        "musicnn-msd 0.95, vgg-msd 0.96, otherwise 0.98)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("export-selection", help="copy a set of clips (ids, a tag or a cluster) with a manifest "
                                                "to a folder or a ZIP")
    _common(p)
    p.add_argument("--library", required=True)
    p.add_argument("--model", default=None, help="model whose payload is read (default: the library's first)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ids", help="comma-separated clip ids")
    g.add_argument("--tag", help="every clip with this tag")
    g.add_argument("--cluster", type=int, help="every clip of this persisted cluster (see `clusters`)")
    p.add_argument("--out", required=True, help="a folder, or FILE.zip")

    p = sub.add_parser("classify", help="suggested labels: a linear classifier on the labelled clips writes "
                                        "pred_label/pred_conf to the unlabelled ones; its cross-validated quality")
    _common(p)
    p.add_argument("--library", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--group-by", default="auto", metavar="FIELD",
                   help="what a fold keeps together: auto (a source field such as artist/kit where the clips "
                        "carry one, else the file), file, or a payload field")
    p.add_argument("--no-quality", action="store_true", help="only train and write the suggestions")
    p.add_argument("--dry-run", action="store_true", help="measure the quality only; write nothing")
    p.add_argument("--json", action="store_true")
    return ap


def _progress_bar(prefix: str):
    """A stderr progress callback (done, total, message)."""
    start = time.perf_counter()
    tty = sys.stderr.isatty()

    def cb(done: int, total: int, msg: str = "") -> None:
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30)
        line = f"{prefix} [{bar:<30}] {done}/{total} {time.perf_counter() - start:5.1f}s {msg[-40:]}"
        if tty:
            sys.stderr.write("\r" + line.ljust(110))
            if done >= total:
                sys.stderr.write("\n")
        elif done == total or done % 50 == 0:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
    return cb


def _table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in cols}
    out = ["  ".join(c.ljust(widths[c]) for c in cols)]
    out += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(out)


def _services(args):
    from app.services import Services

    return Services(args.data_dir)


def _cluster_args(p) -> None:
    """--shards / --replicas / --write-consistency: how new collections spread over a Qdrant cluster."""
    p.add_argument("--shards", type=int, default=None,
                   help="Qdrant cluster: shards per new collection ($QDRANT_SHARDS; ignored by the embedded Qdrant Edge)")
    p.add_argument("--replicas", type=int, default=None,
                   help="Qdrant cluster: copies of each shard ($QDRANT_REPLICAS; ignored by Qdrant Edge)")
    p.add_argument("--write-consistency", type=int, default=None,
                   help="Qdrant cluster: replicas that must confirm a write ($QDRANT_WRITE_CONSISTENCY)")


def _apply_cluster_args(args) -> None:
    """Put the cluster flags where the store reads them (the environment), with a note for Edge."""
    given = {"QDRANT_SHARDS": args.shards, "QDRANT_REPLICAS": args.replicas,
             "QDRANT_WRITE_CONSISTENCY": args.write_consistency}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return
    for k, v in given.items():
        if v < 1:
            raise CliError(f"--{k[7:].lower().replace('_', '-')} must be at least 1 (got {v})")
        os.environ[k] = str(v)
    if not os.environ.get("QDRANT_URL"):
        print("note: --shards/--replicas/--write-consistency apply to a Qdrant server or cluster (QDRANT_URL); "
              "the embedded Qdrant Edge keeps one local shard and ignores them", file=sys.stderr)


def _store(args):
    return _services(args).store


def cmd_index(args) -> int:
    import index

    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        raise CliError(f"not a folder: {folder}")
    from index.ingest import IngestOptions

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    opts = IngestOptions(segment=args.segment, segment_s=args.segment_s, hop_s=args.segment_s, trim=args.trim,
                         labels=None if args.labels == "folder" else args.labels,
                         descriptors=not args.no_descriptors, thumbnails=not args.no_thumbnails,
                         aspects=not args.no_aspects)
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be at least 1 (got {args.workers})")
    if args.engine != "ray" and (args.ray_address or args.workers):
        raise CliError("--ray-address and --workers go with --engine ray")
    _apply_cluster_args(args)
    store = _store(args)
    engine_options = {"address": args.ray_address, "workers": args.workers} if args.engine == "ray" else None
    report = index.index_folder(store, args.library, folder, models, data_dir=args.data_dir,
                                progress=_progress_bar(f"indexing {args.library}"),
                                batch_size=args.batch_size, options=opts, rebuild=args.rebuild,
                                engine=args.engine, engine_options=engine_options)
    for rel, why in report.failed:
        print(f"skipped {rel}: {why}", file=sys.stderr)
    print(report.summary() + f" ({report.audio_s:.1f} s of audio in {report.wall_s:.1f} s)", file=sys.stderr)
    if args.json:
        print(json.dumps({"library": report.library, "models": report.models, "files": report.files_seen,
                          "added": report.added, "unchanged": report.unchanged,
                          "skipped": [{"path": p, "reason": r} for p, r in report.failed],
                          "audio_s": round(report.audio_s, 3), "wall_s": round(report.wall_s, 3)}))
    if report.files_seen and report.added + report.unchanged == 0:
        return 1
    return 0


def _in_ids(spec: str | None) -> list[str] | None:
    """--in-ids: comma-separated ids, or @FILE holding a previous `search --json` output (or a list of ids)."""
    if spec is None:
        return None
    if spec.startswith("@"):
        try:
            data = json.loads(Path(spec[1:]).read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read ids from {spec[1:]}: {getattr(exc, 'strerror', None) or exc}") from None
        if not isinstance(data, list):
            raise CliError(f"{spec[1:]}: expected a JSON list of hits or ids")
        return [str(d["id"]) if isinstance(d, dict) and "id" in d else str(d) for d in data]
    return [i.strip() for i in spec.split(",") if i.strip()]


def cmd_search(args) -> int:
    ranges = parse_ranges(args.where)
    queries = _services(args).queries
    if (args.start is not None or args.end is not None) and not args.file:
        raise CliError("--start/--end pick a time range of --file")
    several = bool(args.id and "," in args.id)
    steered = several or any(v is not None for v in (args.aspects, args.start, args.end, args.in_ids, args.tag,
                                                       args.cluster, args.suggested))
    if steered and args.text:
        raise CliError("--aspects, --start/--end, --in-ids, --tag, --cluster and --suggested work with --file or "
                       "--id, not --text")
    if args.suggested is not None:
        if not 0.0 <= args.min_conf <= 1.0:
            raise CliError(f"--min-conf must be between 0 and 1, got {args.min_conf:g}")
        ranges["pred_conf"] = (args.min_conf, None)
    if steered:
        from index.aspects import parse_weights
        try:
            weights = parse_weights(args.aspects)
        except ValueError as exc:
            raise CliError(f"bad --aspects: {exc}") from None
        where = {k: v for k, v in (("tags", args.tag), ("cluster", args.cluster), ("pred_label", args.suggested))
                 if v is not None}
        ids = [i.strip() for i in args.id.split(",") if i.strip()] if several else None
        hits, why = queries.search(args.library, args.model, path=args.file, point_id=None if several else args.id,
                                   point_ids=ids, start_s=args.start,
                                   end_s=args.end, weights=weights, k=args.k, label=args.label,
                                   one_per_file=args.one_per_file, ranges=ranges, where=where or None,
                                   within=_in_ids(args.in_ids))
        rows = [{**h.to_dict(), "why": w} for h, w in zip(hits, why)]
        if args.json:
            print(json.dumps(rows))
        else:
            names = list(rows[0].get("aspects") or {}) if rows else []
            print(_table([{**r, "score": f"{r['score']:.4f}", "label": r["label"] or "-",
                           **{a: f"{(r.get('aspects') or {}).get(a, float('nan')):.3f}" for a in names}}
                          for r in rows], ["score", *names, "label", "path", "why"]))
        return 0
    if args.file:
        hits = queries.search_file(args.library, args.model, args.file, k=args.k, label=args.label,
                                   one_per_file=args.one_per_file, ranges=ranges)
    elif args.id:
        hits = queries.search_id(args.library, args.model, args.id, k=args.k, label=args.label, ranges=ranges)
    else:
        hits = queries.search_text(args.library, args.model, args.text, k=args.k, label=args.label)
    rows = [h.to_dict() for h in hits]
    if args.json:
        print(json.dumps(rows))
    else:
        print(_table([{**r, "score": f"{r['score']:.4f}", "label": r["label"] or "-"} for r in rows],
                     ["score", "label", "path", "id"]))
    return 0


def parse_ranges(specs: list[str]) -> dict[str, tuple[float | None, float | None]]:
    """['loudness_dbfs=-30:-10', 'duration_s=:2'] -> {field: (min, max)}; CliError on a bad spec."""
    out = {}
    for spec in specs:
        field, sep, rng = spec.partition("=")
        lo, colon, hi = rng.partition(":")
        if not sep or not colon or not field:
            raise CliError(f"bad --where '{spec}': use FIELD=MIN:MAX (either side may be empty)")
        try:
            out[field.strip()] = (float(lo) if lo.strip() else None, float(hi) if hi.strip() else None)
        except ValueError:
            raise CliError(f"bad --where '{spec}': MIN and MAX must be numbers") from None
    return out


def cmd_models(args) -> int:
    rows = [{**m, "dim": m["dim"] or ""} for m in _services(args).libs.models()]
    if args.json:
        print(json.dumps(rows))
    else:
        print(_table(rows, ["name", "family", "status", "dim", "reason"]))
    return 0


def cmd_libraries(args) -> int:
    rows = [{k: r[k] for k in ("name", "root", "models", "counts", "damaged")} for r in _services(args).libs.table()]
    for r in rows:
        for line in r["damaged"]:  # one line each, with the fix
            print(f"damaged: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print("no libraries yet: run `python app.py index FOLDER --library NAME`")
    else:
        print(_table([{"name": r["name"], "clips": max((n for n in r["counts"].values() if n is not None), default=0),
                       "models": ", ".join(f"{m} ({'damaged' if n is None else n})" for m, n in r["counts"].items()),
                       "root": r["root"]} for r in rows], ["name", "clips", "models", "root"]))
    return 0


def cmd_project(args) -> int:
    params = {k: v for k, v in {"n_neighbors": args.n_neighbors, "min_dist": args.min_dist,
                                "metric": args.metric, "perplexity": args.perplexity}.items() if v is not None}
    doc = _services(args).maps.document(args.library, args.model, args.method, args.dims, seed=args.seed,
                                        params=params, quality=args.quality,
                                        progress=_progress_bar(f"{args.method} map of {args.library}"))
    if doc.get("note"):
        print(doc["note"], file=sys.stderr)
    text = json.dumps(doc)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {len(doc['points'])} points to {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


def cmd_classes(args) -> int:
    from app.services.formatting import number
    from index.classes import class_stats_json

    stats = _services(args).queries.class_stats(args.library, args.model, k=args.k, cross=args.cross)
    if args.json:
        print(json.dumps(class_stats_json(stats)))
        return 0
    est = (f"; estimated from {stats['agreement_sampled']} clips drawn at random"
           if stats.get("agreement_sampled") else "")
    if stats.get("sampled"):
        s = stats["sampled"]
        est = (f"; sampled: {s['n']} of {s['of']} clips, {s['per_class']} per class, neighbours searched among "
               f"all clips")
    print(f"overall agreement@{args.k}: {number(stats['overall_agreement'])}  ({stats['n_labelled']} labelled clips{est})")
    cross = stats.get("cross_agreement")
    xcol = f"other {cross['field']}" if cross else None
    if cross:
        est = f", {cross['sampled']} sampled" if cross["sampled"] else ""
        print(f"agreement@{args.k} with neighbours of another {cross['field']} only: {number(cross['overall'])}  "
              f"({cross['n']} clips scored, {cross['sources']} distinct values of {cross['field']}{est})")
    rows = [{"label": lb, "count": stats["counts"][lb], f"agreement@{args.k}": number(stats['agreement'][lb]),
             **({xcol: number(cross["per_label"].get(lb, float("nan")))} if cross else {})}
            for lb in stats["labels"]]
    print(_table(rows, ["label", "count", f"agreement@{args.k}"] + ([xcol] if cross else [])))
    labels = stats["labels"]
    print("\ncentroid cosine similarity:")
    print(_table([{"": a, **{b: f"{stats['centroid_similarity'][i][j]:.2f}" for j, b in enumerate(labels)}}
                  for i, a in enumerate(labels)], [""] + labels))
    return 0


def cmd_export(args) -> int:
    from app import export

    res = export.export_map(_services(args), args.library, args.model, args.method, args.dims, args.out, seed=args.seed,
                            copy_audio=args.copy_audio, vectors=args.vectors)
    print(f"wrote {res['page']} ({res['points']} points) and {res['vectors']}", file=sys.stderr)
    return 0


def cmd_delete(args) -> int:
    libs = _services(args).libs
    if args.model:
        libs.delete(args.library, args.model)
        print(f"deleted model '{args.model}' from library '{args.library}'", file=sys.stderr)
    else:
        dropped = libs.delete(args.library)
        print(f"deleted library '{args.library}' ({len(dropped)} collections)", file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    import index
    from index import training

    store = _store(args)
    cfg_cls = {"autoencoder": "AutoencoderConfig", "selfsup": "SelfSupConfig", "finetune": "FineTuneConfig",
               "contrastive": "SupConConfig"}
    config = getattr(training, cfg_cls[args.kind])()
    fixed = [o for o in ("lr", "batch_size", "patience", "seed", "temperature", "recipe", "tune")
             if getattr(args, o, None) is not None]
    if args.resume and fixed:
        raise CliError(f"with --resume only --epochs, --minutes and --device can change (the saved settings are kept; "
                       f"drop --{fixed[0].replace('_', '-')})")
    if args.minutes is not None and args.minutes < 0:
        raise CliError("--minutes must be 0 (no limit) or more")
    for opt, key in (("epochs", "epochs"), ("lr", "lr"), ("batch_size", "batch_size"), ("patience", "patience"),
                     ("seed", "seed"), ("device", "device"), ("temperature", "temperature"), ("recipe", "recipe"),
                     ("tune", "tune"), ("minutes", "max_minutes")):
        value = getattr(args, opt, None)
        if value is not None:
            setattr(config, key, value)
    tty = sys.stderr.isatty()

    def log(line: str) -> None:  # epoch lines between progress-bar redraws
        sys.stderr.write(("\r" + line.ljust(110) if tty else line) + "\n")
        sys.stderr.flush()

    common = dict(name=args.name, data_dir=args.data_dir, config=config, resume=args.resume,
                  overwrite=args.overwrite, progress=_progress_bar("training"), log=log)
    if args.kind == "autoencoder":
        res = training.train_autoencoder(store, args.library, file=args.file,
                                         decode_progress=_progress_bar("decoding"), **common)
    elif args.kind == "selfsup":
        res = training.train_selfsup(store, args.library, decode_progress=_progress_bar("decoding"), **common)
    elif args.kind == "finetune":
        res = training.train_finetune(store, args.library, args.base, decode_progress=_progress_bar("decoding"),
                                      **common)
    else:
        res = training.train_contrastive(store, args.library, args.base, **common)
    for note in res.notes:
        log(note)
    log(f"trained '{res.model}': {res.epochs_run} epochs (best {res.best_epoch}, validation loss "
        f"{res.best_val_loss:.5f}{', stopped early' if res.stopped_early else ''}) in {res.wall_s:.1f} s; "
        f"index it with: python app.py index {index.get_library(store, args.library).root} "
        f"--library {args.library} --models {res.model}")
    if args.json:
        print(json.dumps(res.to_dict()))
    return 0


def cmd_serve(args) -> int:
    from app import server

    return server.serve(data_dir=args.data_dir, host=args.host, port=args.port, demo=not args.no_demo)


def _model_of(svc, library: str, model: str | None) -> str:
    models = svc.libs.models_of(library)
    if model:
        if model not in models:
            raise CliError(f"library '{library}' has no model '{model}' (indexed: {', '.join(models) or 'none'})")
        return model
    if not models:
        raise CliError(f"library '{library}' has no indexed model yet")
    return models[0]


def parse_where(specs: list[str]) -> dict:
    """['label=kick', 'cluster=3'] -> a payload filter; CliError on a bad spec."""
    flt: dict = {}
    for spec in specs:
        field, sep, value = spec.partition("=")
        if not sep or not field.strip():
            raise CliError(f"bad --where '{spec}': use FIELD=VALUE")
        v: object = value
        if value.lstrip("-").isdigit():
            v = int(value)
        flt[field.strip()] = v
    return flt


def cmd_tag(args) -> int:
    svc = _services(args)
    cur = svc.curation
    if args.ids:
        ids = [i.strip() for i in args.ids.split(",") if i.strip()]
    else:
        ids = cur.ids_matching(args.library, _model_of(svc, args.library, args.model), parse_where(args.where))
        if not ids:
            raise CliError("no clip matches --where")
    if args.add is not None:
        res = cur.edit(args.library, ids, add=[args.add], whole_file=args.whole_file)
    elif args.remove is not None:
        res = cur.edit(args.library, ids, remove=[args.remove], whole_file=args.whole_file)
    else:
        res = cur.edit(args.library, ids, label=args.label or None, whole_file=args.whole_file)
    print(res.summary(), file=sys.stderr)
    if args.json:
        print(json.dumps({"changed": res.changed, "clips": res.clips, "collections": res.collections,
                          "missing": res.missing}))
    return 0


def cmd_clusters(args) -> int:
    rep = _services(args).curation.clusters(args.library, args.model, min_size=args.min_size,
                                            pca_dims=None if args.no_pca else 50)
    if args.json:
        print(json.dumps(rep.to_dict()))
        return 0
    from app.services.formatting import number

    print(f"{sum(1 for r in rep.rows if r.cluster != -1)} clusters; purity {number(rep.purity)}, "
          f"adjusted Rand index {number(rep.ari)} against {rep.n_labelled} labelled clips", file=sys.stderr)
    print(_table([{"id": r.cluster, "name": r.name, "size": r.size, "medoid": r.medoid_path} for r in rep.rows],
                 ["id", "name", "size", "medoid"]))
    return 0


def cmd_duplicates(args) -> int:
    cur = _services(args).curation
    groups = cur.duplicates(args.library, args.model, threshold=args.threshold)
    threshold = args.threshold if args.threshold is not None else cur.duplicate_threshold(args.model)
    if args.json:
        print(json.dumps([{"kind": g.kind, "similarity": g.similarity, "ids": g.ids, "paths": g.paths}
                          for g in groups]))
        return 0
    print(f"{len(groups)} groups at cosine >= {threshold}", file=sys.stderr)
    for n, g in enumerate(groups, 1):
        print(f"group {n} ({g.kind}, >= {g.similarity:.4f}): " + "  ".join(g.paths))
    return 0


def cmd_export_selection(args) -> int:
    svc = _services(args)
    model = _model_of(svc, args.library, args.model)
    if args.ids:
        ids = [i.strip() for i in args.ids.split(",") if i.strip()]
    else:
        ids = svc.curation.ids_where(args.library, model, tag=args.tag, cluster=args.cluster)
    res = svc.curation.export(args.library, model, ids, out=args.out)
    for path in res["missing"]:
        print(f"missing {path} (listed in the manifest)", file=sys.stderr)
    print(f"wrote {res['files']} files and a manifest of {res['clips']} clips to {res['out']}", file=sys.stderr)
    return 0


def cmd_classify(args) -> int:
    svc = _services(args)
    _model_of(svc, args.library, args.model)
    out: dict = {"library": args.library, "model": args.model}
    if not args.dry_run:
        run = svc.labels.train(args.library, args.model)
        print(run.summary(), file=sys.stderr)
        out.update(n_labelled=run.classifier.n_train, classes=run.classifier.counts, written=run.written,
                   cleared=run.cleared, fit_s=round(run.fit_s, 3), write_s=round(run.write_s, 3),
                   suggested=svc.labels.counts(args.library, args.model)["by_label"])
    if not args.no_quality:
        q = svc.labels.quality(args.library, args.model, by=args.group_by)
        out["quality"] = q.to_dict()
        if not args.json:
            from app.services.formatting import number

            print(f"{q.n_folds}-fold cross-validation, folds grouped by {q.grouped_by} ({q.n_groups} groups): "
                  f"accuracy {number(q.accuracy)}, macro-F1 {number(q.macro_f1)}")
            print(_table([{"label": c, **v} for c, v in q.per_class.items()],
                         ["label", "precision", "recall", "f1", "support"]))
            print("learning curve (labelled clips per class -> macro-F1):")
            print(_table(q.curve, ["per_class", "n_train", "accuracy", "macro_f1"]))
    elif not args.json and not args.dry_run:
        print(_table([{"label": k, "suggested": v} for k, v in out["suggested"].items()], ["label", "suggested"]))
    if args.json:
        print(json.dumps(out))
    return 0


COMMANDS = {"classify": cmd_classify, "serve": cmd_serve, "index": cmd_index, "search": cmd_search, "models": cmd_models,
            "libraries": cmd_libraries, "project": cmd_project, "classes": cmd_classes, "export": cmd_export,
            "train": cmd_train, "delete": cmd_delete, "tag": cmd_tag, "clusters": cmd_clusters,
            "duplicates": cmd_duplicates, "export-selection": cmd_export_selection}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]
    args = build_parser().parse_args(argv)
    if args.verb is None:
        args = build_parser().parse_args(["serve"])
    if args.data_dir:
        os.environ[ENV_VAR] = str(Path(args.data_dir).expanduser().resolve())
    try:
        return COMMANDS[args.verb](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure is one line on stderr
        if os.environ.get("AUDIO_EXPLORER_DEBUG"):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1

