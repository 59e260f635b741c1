"""Load: concurrent searchers against the served app on localhost, through Gradio's HTTP API.

    python benchmarks/load_test.py                          # builds a library, serves it, 20 searchers for 60 s
    python benchmarks/load_test.py --workers 20 --duration 60 --json out.json
    python benchmarks/load_test.py --url http://127.0.0.1:7860 --library demo   # a server already running here
    python benchmarks/load_test.py --index-while 0 --taggers 0                  # searchers only

Each searcher calls the app's API endpoints over plain HTTP (`POST /gradio_api/call/<name>`, then
the result from `GET /gradio_api/call/<name>/<event_id>`; uploads through `/gradio_api/upload`,
what any other program would do) and loops until the deadline: mostly
`/search_by_id` (a random clip, a random model of the library), and every `--file-every`-th call
`/search_file` (uploads a clip, decoded and embedded on the server). The loop stops by itself.

Meanwhile, in the same server:
- `--index-while N`: a folder of N new clips is indexed into a NEW library through the Library
  tab's own UI event, as a browser sends it (UI events are not API endpoints: the page's queue
  request is replayed: `GET /config` names the `run_index` dependency, `POST
  /gradio_api/queue/join`, then the server-sent events of `/gradio_api/queue/data` until
  `process_completed`); then `/list_libraries` must list the library with N clips. The library
  is deleted afterwards (the Library tab's delete event, replayed the same way).
- `--taggers T`: T users tag random clips of the searched library through `/tag_clips`: each
  call adds a unique tag to 1-4 clips and every third call or so also removes one of the
  user's earlier tags. Each user logs the tag set it expects on every clip; at the end every
  clip's tags are read back from `/map_coordinates` of every model of the library (the model
  collections must agree) and compared: a "lost update" is a (clip, tag) whose final presence
  in some model collection differs from the log. The users' tags are removed afterwards.

Reported: calls, errors per endpoint, latency p50/p90/p99/max per endpoint (search p99 also
split into while-indexing and otherwise), throughput, the indexing wall time, lost updates, and
the server process's resident memory (VmRSS from /proc, sampled every 0.5 s): at the start, its
maximum, at the end, and its slope over the second half of the run (MB/min). Only loopback URLs;
every loop is bounded by the deadline.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def server_pid(port: int) -> int | None:
    """The pid of the `app.py serve` process listening on `port` (from /proc), if any."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in args and b"--port" in args and str(port).encode() in args:
            return int(proc.name)
    return None


def rss_mb(pid: int) -> float:
    """Resident memory of a process (MB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ApiClient:
    """Calls the served app's `api_name` endpoints through Gradio's REST API (stdlib HTTP only)."""

    def __init__(self, url: str, timeout: float = 120.0, session: bool = True):
        self.base = url.rstrip("/")
        self.timeout = timeout
        # one session per client, as a browser tab or gradio_client has; without, each call is a
        # new session on the server (what a curl loop does)
        self.session = uuid.uuid4().hex[:11] if session else None

    def _open(self, req: urllib.request.Request | str) -> bytes:
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return resp.read()

    def upload(self, path: Path) -> dict:
        """Upload a file; the FileData that names it in a call."""
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + \
            f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(f"{self.base}/gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        server_path = json.loads(self._open(req))[0]
        return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def predict(self, *args, api_name: str):
        """The endpoint's first output, or RuntimeError with the app's message."""
        name = api_name.lstrip("/")
        req = urllib.request.Request(f"{self.base}/gradio_api/call/{name}", method="POST",
                                     data=json.dumps({"data": list(args), "session_hash": self.session}).encode(),
                                     headers={"Content-Type": "application/json"})
        event_id = json.loads(self._open(req))["event_id"]
        event = None
        for line in self._open(f"{self.base}/gradio_api/call/{name}/{event_id}").decode().splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                data = json.loads(line[5:].strip() or "null")
                if event == "error":
                    raise RuntimeError(f"{api_name}: {data}")
                return data[0]
        raise RuntimeError(f"{api_name}: no result")


def ui_event(url: str, api_name: str, data: list, session: str | None = None, timeout: float = 900.0) -> list:
    """Send the page's own queue request for a UI event (a dependency with `api_visibility="private"`,
    which is no API endpoint), as a browser does: its `fn_index` and trigger id from `/config`, `POST
    /gradio_api/queue/join`, then the session's server-sent events until `process_completed`. The
    event's outputs (a list), or RuntimeError."""
    base = url.rstrip("/")
    with urllib.request.urlopen(base + "/config", timeout=60) as resp:
        config = json.loads(resp.read())
    deps = [d for d in config["dependencies"] if d.get("api_name") == api_name]
    if not deps:
        raise RuntimeError(f"no UI event {api_name!r} in the page config")
    dep = deps[0]
    session = session or uuid.uuid4().hex[:11]
    body = {"data": data, "fn_index": dep["id"], "trigger_id": dep["targets"][0][0], "session_hash": session,
            "event_data": None}
    req = urllib.request.Request(base + "/gradio_api/queue/join", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        json.loads(resp.read())  # {"event_id": ...}
    stream = f"{base}/gradio_api/queue/data?session_hash={urllib.parse.quote(session)}"
    with urllib.request.urlopen(stream, timeout=timeout) as resp:
        for raw in resp:  # one SSE line at a time; the stream is closed after the last message
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed":
                out = msg.get("output") or {}
                if not msg.get("success", True) or "error" in out:
                    raise RuntimeError(f"{api_name}: {out.get('error') or out!r:.200}")
                return out.get("data") or []
            if msg.get("msg") == "unexpected_error":
                raise RuntimeError(f"{api_name}: {msg.get('message')}")
    raise RuntimeError(f"{api_name}: the event stream ended without a result")


def library_tags(url: str, library: str) -> dict[str, dict[str, set[str]]]:
    """{model: {clip id: tags}} of a served library, read from `/map_coordinates` of every model."""
    client = ApiClient(url)
    libs = {lib["name"]: lib for lib in client.predict(api_name="/list_libraries")}
    out = {}
    for model in libs[library]["models"]:
        doc = client.predict(library, model, "pca", 2, 0, api_name="/map_coordinates")
        out[model] = {p["id"]: set(p.get("tags") or []) for p in doc["points"]}
    return out


def write_clips(folder: Path, n: int, seed: int = 1) -> Path:
    """`n` new synthetic clips (round-robin over the demo classes, a seed of their own) in `folder/<class>/`."""
    import soundfile as sf

    from app.demo import CLASSES, SR, make_clip

    rng = np.random.default_rng(10_000 + seed)
    kinds = list(CLASSES)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        (folder / kind).mkdir(parents=True, exist_ok=True)
        sf.write(str(folder / kind / f"new_{kind}_{i:03d}.wav"), make_clip(kind, rng), SR, subtype="PCM_16")
    return folder


def lost_updates(ids: list[str], baseline: dict[str, set[str]], own: list[dict[str, set[str]]],
                 actual: dict[str, dict[str, set[str]]], unsure: set[tuple[str, str]] = frozenset()
                 ) -> tuple[int, int, list[str]]:
    """(lost, disagree, samples): a clip's expected tags are its tags before the run plus every
    user's logged tags on it; `lost` counts the (clip, tag) pairs whose presence in some model
    collection (`actual`: {model: {clip: tags}}) differs from that, except the `unsure` ones (a
    call that failed); `disagree` the clips whose model collections hold different tags."""
    lost = disagree = 0
    samples: list[str] = []
    for i in ids:
        expected = set(baseline.get(i, set())).union(*(o.get(i, set()) for o in own))
        per_model = {m: set(actual[m].get(i) or ()) for m in actual}
        if len({frozenset(v) for v in per_model.values()}) > 1:
            disagree += 1
        bad = {tg for got in per_model.values() for tg in expected ^ got if (i, tg) not in unsure}
        lost += len(bad)
        if bad and len(samples) < 5:
            samples.append(f"{i}: expected {sorted(expected)}, got "
                           f"{ {m: sorted(v) for m, v in per_model.items()} }")
    return lost, disagree, samples


def delete_library_ui(url: str, library: str) -> str:
    """Delete a library through the Library tab's delete event (replayed; the session's picker is
    filled first by the tab's `tables` event, as the page's load does)."""
    session = uuid.uuid4().hex[:11]
    ui_event(url, "tables", [], session)
    out = ui_event(url, "delete", [library, True], session)
    return str(out[0] if out else "")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_load(url: str, library: str, clip_ids: dict[str, list[str]], query_files: list[Path], duration_s: float = 60,
             workers: int = 20, file_every: int = 5, file_model: str | None = None, pid: int | None = None,
             seed: int = 0, sessionless: bool = False, index_folder: Path | None = None,
             index_library: str | None = None, index_clips: int = 0, index_after_s: float | None = None,
             taggers: int = 0, tag_pause_s: float = 0.1) -> dict:
    """`workers` concurrent searchers for `duration_s` seconds; latencies, errors and server RSS.
    `sessionless`: every call without a session hash (each one a new session on the server).
    `index_folder`: meanwhile (from `index_after_s`), index it into the new library `index_library`
    (`index_clips` clips expected) through the Library tab's UI event. `taggers`: that many users
    tagging random clips of `library` through `/tag_clips` (a pause of `tag_pause_s` between calls);
    their log is checked against the tags read back at the end (lost updates)."""
    host = urllib.parse.urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load {url}: loopback addresses only")
    models = sorted(clip_ids)
    file_model = file_model or models[0]
    clients = [ApiClient(url, session=not sessionless) for _ in range(workers)]
    lat: dict[str, list[float]] = {"search_by_id": [], "search_file": [], "tag_clips": []}
    spans: list[tuple[float, float]] = []  # (start, end) of every search call, s since t0
    errors: dict[str, list[str]] = {"search_by_id": [], "search_file": [], "tag_clips": [], "run_index": []}
    lock = threading.Lock()
    rss: list[tuple[float, float]] = []
    run_id = uuid.uuid4().hex[:6]  # this run's tags: t-<run>-<user>-<n>
    tag_ids = sorted(set().union(*clip_ids.values()))
    baseline = {}
    if taggers:
        before = library_tags(url, library)
        baseline = {i: set().union(*(before[m].get(i, set()) for m in before)) for i in tag_ids}
    # per user: {clip: tags of this user expected on it}; edits sent; (clip, tag) pairs whose outcome is unknown
    own: list[dict[str, set[str]]] = [{} for _ in range(taggers)]
    tag_edits = [0] * taggers
    unsure: set[tuple[str, str]] = set()
    indexing: dict = {}
    t0 = time.perf_counter()
    deadline = t0 + duration_s

    def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        client = clients[i]
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            t = time.perf_counter()
            kind = "search_file" if file_every and n % file_every == 0 else "search_by_id"
            try:
                if file_every and n % file_every == 0:
                    kind = "search_file"
                    hits = client.predict(library, file_model, client.upload(rng.choice(query_files)), 5,
                                          api_name="/search_file")
                else:
                    kind = "search_by_id"
                    model = rng.choice(models)
                    hits = client.predict(library, model, rng.choice(clip_ids[model]), 5, api_name="/search_by_id")
                if not hits or not np.isfinite(hits[0]["score"]):
                    raise RuntimeError(f"empty or bad result: {hits!r:.120}")
                t1 = time.perf_counter()
                with lock:
                    lat[kind].append((t1 - t) * 1000)
                    spans.append((t - t0, t1 - t0))
            except Exception as exc:  # counted, never raised: the loop goes on to the deadline
                with lock:
                    errors[kind].append(f"{type(exc).__name__}: {str(exc)[:200]}")

    def tagger(u: int) -> None:
        rng = random.Random(seed * 1000 + 500 + u)
        client = ApiClient(url, session=not sessionless)
        mine = own[u]
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            ids = rng.sample(tag_ids, min(len(tag_ids), rng.randint(1, 4)))
            add = [f"t-{run_id}-{u}-{n}"]
            remove: list[str] = []
            if n % 3 == 0:  # now and then: take back one of this user's earlier tags from these clips
                held = sorted(set().union(*(mine.get(i, set()) for i in ids)))
                if held:
                    remove = [rng.choice(held)]
            t = time.perf_counter()
            try:
                res = client.predict(library, ids, add, remove, None, None, api_name="/tag_clips")
                if res.get("missing") or res.get("changed") != len(ids) or res.get("collections") != len(models):
                    raise RuntimeError(f"unexpected result {res!r:.160} for {len(ids)} clips, {len(models)} models")
                with lock:
                    lat["tag_clips"].append((time.perf_counter() - t) * 1000)
                ok = True
            except Exception as exc:
                with lock:
                    errors["tag_clips"].append(f"{type(exc).__name__}: {str(exc)[:200]}")
                ok = False
            for i in ids:
                tags = mine.setdefault(i, set())
                tags.difference_update(remove)
                tags.update(add)
                if not ok:  # the server may or may not have applied it: not counted either way
                    unsure.update((i, tg) for tg in add + remove)
            tag_edits[u] += len(ids) * (len(add) + len(remove))
            time.sleep(tag_pause_s)

    def indexer() -> None:
        wait = index_after_s if index_after_s is not None else min(5.0, duration_s / 5)
        time.sleep(max(0.0, t0 + wait - time.perf_counter()))
        t = time.perf_counter()
        indexing.update(start_s=t - t0, library=index_library, clips_expected=index_clips)
        try:
            out = ui_event(url, "run_index", [index_library, str(index_folder), None, ["dsp"], "folder", "auto",
                                              1.0, False])
            indexing["wall_s"] = time.perf_counter() - t
            indexing["report"] = str(out[0] if out else "")[:300]
            if not out or "**Error" in str(out[0]):
                raise RuntimeError(f"run_index: {indexing['report']}")
            libs = {lib["name"]: lib for lib in ApiClient(url).predict(api_name="/list_libraries")}
            got = libs.get(index_library)
            indexing["clips_listed"] = got["clips"] if got else None
            if not got or got["clips"] != index_clips:
                raise RuntimeError(f"/list_libraries: {index_library!r} has {indexing['clips_listed']} clips, "
                                   f"expected {index_clips}")
        except Exception as exc:
            indexing.setdefault("wall_s", time.perf_counter() - t)
            with lock:
                errors["run_index"].append(f"{type(exc).__name__}: {str(exc)[:300]}")
        finally:
            indexing["end_s"] = time.perf_counter() - t0

    def sampler() -> None:
        while time.perf_counter() < deadline + 1.0:
            if pid:
                try:
                    rss.append((time.perf_counter() - t0, rss_mb(pid)))
                except OSError:
                    pass
            time.sleep(0.5)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    threads += [threading.Thread(target=tagger, args=(u,), daemon=True) for u in range(taggers)]
    if index_folder is not None:
        threads.append(threading.Thread(target=indexer, daemon=True))
    sam = threading.Thread(target=sampler, daemon=True)
    sam.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=max(1.0, deadline + 900 - time.perf_counter()))  # bounded: the indexer's own timeout
    wall = time.perf_counter() - t0
    sam.join(timeout=5)
    every = lat["search_by_id"] + lat["search_file"]
    n_err = sum(len(v) for v in errors.values())
    out = {"workers": workers, "duration_s": round(wall, 1), "calls": len(every), "errors": n_err,
           "errors_by_endpoint": {k: len(v) for k, v in errors.items()},
           "error_samples": [f"{k}: {m}" for k, v in errors.items() for m in v][:5],
           "calls_per_s": round(len(every) / wall, 1)}

    def stats(vals: list[float]) -> dict:
        return {"n": len(vals), "p50_ms": round(_pct(vals, 50), 1), "p90_ms": round(_pct(vals, 90), 1),
                "p99_ms": round(_pct(vals, 99), 1), "max_ms": round(max(vals), 1) if vals else float("nan")}

    for kind, vals in (("all", every), *lat.items()):
        out[kind] = stats(vals)
    if indexing:
        a, b = indexing["start_s"], indexing["end_s"]
        during = [(e - s0) * 1000 for s0, e in spans if s0 < b and e > a]
        outside = [(e - s0) * 1000 for s0, e in spans if not (s0 < b and e > a)]
        out["indexing"] = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in indexing.items()}
        out["search_while_indexing"] = stats(during)
        out["search_otherwise"] = stats(outside)
    if taggers:
        # after the run: every clip's tags in every model collection against the users' logs
        try:
            actual = library_tags(url, library)
        except Exception as exc:
            errors["tag_clips"].append(f"reading the tags back: {type(exc).__name__}: {str(exc)[:200]}")
            actual = {}
        lost, disagree, samples = lost_updates(tag_ids, baseline, own, actual, unsure) if actual else (None, 0, [])
        out["tagging"] = {"users": taggers, "calls": len(lat["tag_clips"]) + len(errors["tag_clips"]),
                          "clip_tag_edits": sum(tag_edits), "clips": len(tag_ids), "models": len(actual),
                          "lost_updates": lost, "models_disagree_on": disagree, "unsure": len(unsure),
                          "lost_samples": samples}
        out["errors"] = sum(len(v) for v in errors.values())
        out["errors_by_endpoint"] = {k: len(v) for k, v in errors.items()}
        # leave the library as it was: this run's tags off again (one call)
        run_tags = sorted({tg for o in own for tags in o.values() for tg in tags} | {tg for _, tg in unsure})
        touched = sorted({i for o in own for i in o})
        if run_tags and touched:
            try:
                ApiClient(url).predict(library, touched, [], run_tags, None, None, api_name="/tag_clips")
            except Exception as exc:
                out["tagging"]["cleanup_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    if index_folder is not None and index_library:
        try:
            out.setdefault("indexing", {})["deleted"] = delete_library_ui(url, index_library)[:200]
        except Exception as exc:
            out.setdefault("indexing", {})["deleted"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    if rss:
        ts, ms = np.array([r[0] for r in rss]), np.array([r[1] for r in rss])
        half = ts >= ts[-1] / 2
        slope = float(np.polyfit(ts[half], ms[half], 1)[0] * 60) if half.sum() >= 3 else float("nan")
        first = ms[ts <= ts[-1] / 2]
        out["rss"] = {"start_mb": round(float(ms[0]), 1), "max_first_half_mb": round(float(first.max()), 1),
                      "max_mb": round(float(ms.max()), 1), "end_mb": round(float(ms[-1]), 1),
                      "slope_second_half_mb_per_min": round(slope, 1), "samples": len(ms),
                      "every_10s_mb": [round(float(ms[np.argmin(np.abs(ts - t))])) for t in np.arange(0, ts[-1], 10)]}
    return out


def library_ids(url: str, library: str) -> dict[str, list[str]]:
    """{model: clip ids} of a served library, through the API."""
    client = ApiClient(url)
    libs = {lib["name"]: lib for lib in client.predict(api_name="/list_libraries")}
    ids = {}
    for model in libs[library]["models"]:
        doc = client.predict(library, model, "pca", 2, 0, api_name="/map_coordinates")
        ids[model] = [p["id"] for p in doc["points"]]
    return ids


def table(res: dict) -> str:
    errs = res.get("errors_by_endpoint", {})
    rows = [("endpoint", "calls", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms")]

    def row(name: str, r: dict, e: str) -> None:
        rows.append((name, str(r["n"]), e, str(r["p50_ms"]), str(r["p90_ms"]), str(r["p99_ms"]), str(r["max_ms"])))

    for kind in ("search_by_id", "search_file"):
        row(kind, res[kind], str(errs.get(kind, 0)))
    row("search (all)", res["all"], str(errs.get("search_by_id", 0) + errs.get("search_file", 0)))
    if "search_while_indexing" in res:
        row("  while indexing", res["search_while_indexing"], "")
        row("  otherwise", res["search_otherwise"], "")
    if "tagging" in res:
        row("tag_clips", res["tag_clips"], str(errs.get("tag_clips", 0)))
    ix = res.get("indexing") or {}
    if "wall_s" in ix:
        ms = str(round(ix["wall_s"] * 1000, 1))
        rows.append(("run_index (UI)", "1", str(errs.get("run_index", 0)), ms, ms, ms, ms))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    text = "\n".join(lines)
    text += (f"\n{res['workers']} searchers, {res['duration_s']} s: {res['calls']} search calls "
             f"({res['calls_per_s']}/s); errors: {res['errors']} "
             f"({', '.join(f'{k} {v}' for k, v in errs.items())})")
    if "wall_s" in ix:
        text += (f"\nindexing from the Library tab: {ix.get('clips_expected')} new clips (dsp) into "
                 f"'{ix.get('library')}' in {ix['wall_s']} s (from t={ix.get('start_s')} s); /list_libraries: "
                 f"{ix.get('clips_listed')} clips")
    if "tagging" in res:
        tg = res["tagging"]
        text += (f"\ntagging: {tg['users']} user(s), {tg['calls']} /tag_clips calls, {tg['clip_tag_edits']} clip-tag "
                 f"edits on {tg['clips']} clips x {tg['models']} models"
                 f"\nlost updates: {'not checked' if tg['lost_updates'] is None else tg['lost_updates']} "
                 f"of {tg['clip_tag_edits']}"
                 f" (model collections disagree on {tg['models_disagree_on']} clips; {tg['unsure']} unsure)")
    if "rss" in res:
        m = res["rss"]
        text += (f"\nserver RSS: start {m['start_mb']} MB, max {m['max_mb']} MB (first half {m['max_first_half_mb']}),"
                 f" end {m['end_mb']} MB; slope over the second half {m['slope_second_half_mb_per_min']} MB/min"
                 f"\nserver RSS every 10 s (MB): {m['every_10s_mb']}")
    return text


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None, help="a running server (loopback); default: build and serve one")
    ap.add_argument("--library", default="demo")
    ap.add_argument("--models", default="dsp,vgg-msd", help="models of the library built here")
    ap.add_argument("--per-class", type=int, default=20, help="clips per class of the library built here")
    ap.add_argument("--workers", type=int, default=20)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--file-every", type=int, default=5, help="every n-th call of a searcher is /search_file")
    ap.add_argument("--index-while", type=int, default=40, metavar="N",
                    help="meanwhile index N new clips into a new library from the Library tab (0: none)")
    ap.add_argument("--taggers", type=int, default=1, help="users tagging random clips meanwhile (/tag_clips)")
    ap.add_argument("--tag-pause", type=float, default=0.1, help="seconds between a tagger's calls")
    ap.add_argument("--sessionless", action="store_true",
                    help="calls without a session hash: every call is a new session on the server")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="load-test-"))
    proc = log = None
    try:
        from app.demo import write_demo_library

        folder = write_demo_library(work / "audio", per_class=args.per_class)
        queries = sorted(folder.rglob("*.wav"))[:: max(1, args.per_class // 2)]
        url = args.url
        pid = None
        if url is None:
            data = work / "data"
            env = {**os.environ, "AUDIO_EXPLORER_DATA": str(data), "GRADIO_ANALYTICS_ENABLED": "False",
                   "GRADIO_TEMP_DIR": str(work / "gradio")}
            env.pop("QDRANT_URL", None)
            t = time.perf_counter()
            subprocess.run([sys.executable, "app.py", "index", str(folder), "--library", args.library, "--models",
                            args.models], cwd=ROOT, env=env, check=True, capture_output=True, timeout=3600)
            print(f"indexed {len(list(folder.rglob('*.wav')))} clips in {time.perf_counter() - t:.0f} s",
                  file=sys.stderr)
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            log = open(work / "serve.log", "wb")  # noqa: SIM115 (closed in the finally below)
            proc = subprocess.Popen([sys.executable, "app.py", "serve", "--no-demo", "--port", str(port)], cwd=ROOT,
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.time() + 300
            while True:
                try:
                    urllib.request.urlopen(url + "/", timeout=2)
                    break
                except Exception:
                    if proc.poll() is not None or time.time() > deadline:
                        tail = (work / "serve.log").read_text(errors="replace")[-2000:]
                        raise SystemExit(f"the server did not start:\n{tail}")
                    time.sleep(0.5)
            pid = proc.pid
        else:
            pid = server_pid(urllib.parse.urlparse(url).port or 80)
        ids = library_ids(url, args.library)
        # warm up: load the models in the server before timing
        run_load(url, args.library, ids, queries, duration_s=5, workers=2, file_every=2, pid=None)
        new_folder = write_clips(work / "new_audio", args.index_while) if args.index_while > 0 else None
        res = run_load(url, args.library, ids, queries, duration_s=args.duration, workers=args.workers,
                       file_every=args.file_every, pid=pid, sessionless=args.sessionless,
                       index_folder=new_folder, index_library=f"load-{uuid.uuid4().hex[:6]}",
                       index_clips=args.index_while, taggers=args.taggers, tag_pause_s=args.tag_pause)
        print(table(res))
        print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
        if res["errors"]:
            print("errors:", *res["error_samples"], sep="\n  ", file=sys.stderr)
        lost = res.get("tagging", {}).get("lost_updates", 0)
        if lost:  # None (not checked) goes with an error
            print("lost updates:", *res["tagging"]["lost_samples"], sep="\n  ", file=sys.stderr)
        return 0 if res["errors"] == 0 and lost == 0 else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if log is not None:
            log.close()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
