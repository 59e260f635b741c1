"""Load: concurrent searchers against the served app on localhost, through Gradio's HTTP API.

    python benchmarks/load_test.py                          # builds a library, serves it, 20 searchers for 60 s
    python benchmarks/load_test.py --workers 20 --duration 60 --json out.json
    python benchmarks/load_test.py --url http://127.0.0.1:7860 --library demo   # a server already running here

Each searcher calls the app's API endpoints over plain HTTP (`POST /gradio_api/call/<name>`, then
the result from `GET /gradio_api/call/<name>/<event_id>`; uploads through `/gradio_api/upload`,
what any other program would do) and loops until the deadline: mostly
`/search_by_id` (a random clip, a random model of the library), and every `--file-every`-th call
`/search_file` (uploads a clip, decoded and embedded on the server). The loop stops by itself.
Reported: calls, errors, latency p50/p90/p99/max per endpoint, throughput, and the server
process's resident memory (VmRSS from /proc, sampled every 0.5 s): at the start, its maximum,
at the end, and its slope over the second half of the run (MB/min). Only loopback URLs.
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


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_load(url: str, library: str, clip_ids: dict[str, list[str]], query_files: list[Path], duration_s: float = 60,
             workers: int = 20, file_every: int = 5, file_model: str | None = None, pid: int | None = None,
             seed: int = 0, sessionless: bool = False) -> dict:
    """`workers` concurrent searchers for `duration_s` seconds; latencies, errors and server RSS.
    `sessionless`: every call without a session hash (each one a new session on the server)."""
    host = urllib.parse.urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load {url}: loopback addresses only")
    models = sorted(clip_ids)
    file_model = file_model or models[0]
    clients = [ApiClient(url, session=not sessionless) for _ in range(workers)]
    lat: dict[str, list[float]] = {"search_by_id": [], "search_file": []}
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + duration_s
    rss: list[tuple[float, float]] = []
    t0 = time.perf_counter()

    def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        client = clients[i]
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            t = time.perf_counter()
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
                with lock:
                    lat[kind].append((time.perf_counter() - t) * 1000)
            except Exception as exc:  # counted, never raised: the loop goes on to the deadline
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")

    def sampler() -> None:
        while time.perf_counter() < deadline + 1.0:
            if pid:
                try:
                    rss.append((time.perf_counter() - t0, rss_mb(pid)))
                except OSError:
                    pass
            time.sleep(0.5)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    sam = threading.Thread(target=sampler, daemon=True)
    sam.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=duration_s + 300)
    wall = time.perf_counter() - t0
    sam.join(timeout=5)
    every = lat["search_by_id"] + lat["search_file"]
    out = {"workers": workers, "duration_s": round(wall, 1), "calls": len(every), "errors": len(errors),
           "error_samples": errors[:5], "calls_per_s": round(len(every) / wall, 1)}
    for kind, vals in (("all", every), *lat.items()):
        out[kind] = {"n": len(vals), "p50_ms": round(_pct(vals, 50), 1), "p90_ms": round(_pct(vals, 90), 1),
                     "p99_ms": round(_pct(vals, 99), 1), "max_ms": round(max(vals), 1) if vals else float("nan")}
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
    rows = [("endpoint", "calls", "p50 ms", "p90 ms", "p99 ms", "max ms")]
    for kind in ("search_by_id", "search_file", "all"):
        r = res[kind]
        rows.append((kind, str(r["n"]), str(r["p50_ms"]), str(r["p90_ms"]), str(r["p99_ms"]), str(r["max_ms"])))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    text = "\n".join(lines)
    text += (f"\n{res['workers']} searchers, {res['duration_s']} s: {res['calls']} calls "
             f"({res['calls_per_s']}/s), {res['errors']} errors")
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
    ap.add_argument("--sessionless", action="store_true",
                    help="calls without a session hash: every call is a new session on the server")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="load-test-"))
    proc = None
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
            proc = subprocess.Popen([sys.executable, "app.py", "serve", "--no-demo", "--port", str(port)], cwd=ROOT,
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 300
            while True:
                try:
                    urllib.request.urlopen(url + "/", timeout=2)
                    break
                except Exception:
                    if proc.poll() is not None or time.time() > deadline:
                        raise SystemExit("the server did not start")
                    time.sleep(0.5)
            pid = proc.pid
        else:
            pid = server_pid(urllib.parse.urlparse(url).port or 80)
        ids = library_ids(url, args.library)
        # warm up: load the models in the server before timing
        run_load(url, args.library, ids, queries, duration_s=5, workers=2, file_every=2, pid=None)
        res = run_load(url, args.library, ids, queries, duration_s=args.duration, workers=args.workers,
                       file_every=args.file_every, pid=pid, sessionless=args.sessionless)
        print(table(res))
        print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
        return 0 if res["errors"] == 0 else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
