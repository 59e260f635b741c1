"""CPU execution plans of the musicnn networks, and the worker threads that run them.

Speed (CPU): one 3 s patch costs 2.80 GFLOP in MusiCNN (timbral convs 2.27, temporal 0.41,
mid end 0.12) and 1.75 GFLOP in VGG (conv2 1.30), so 200x real time needs ~190 / ~120
GFLOP/s. The torch modules (`nets`) are the readable reference (and the CUDA path); on CPU
the embedder runs a plan of the same network (`_plans`: oneDNN products with prepacked
weights, Toeplitz-blocked timbral/temporal convs, one patch per call on single-threaded
workers): the same outputs to float rounding for 2-3x less CPU time per patch than the
modules (and 4-6x their throughput on a busy machine). `-bf16` names (BF16_VARIANTS) trade a
little accuracy for ~1.6x more where oneDNN has a bfloat16 path (`bf16_unavailable()`).
"""
from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

from ..base import EmbedderError
from ..runtime import one_line
from . import nets, weights
from .models import N_MELS, PATCH_FRAMES, PRECISIONS

FREQ_BLOCKS = (4, 4)  # timbral convs (7x38, 7x67): output frequencies per row of the Toeplitz GEMM
TIME_BLOCKS = (16, 16, 16)  # temporal convs (128, 64, 32 frames): output frames per row
BF16_ISA = "AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT"  # what oneDNN's bfloat16 path needs

_plan_cache: dict[tuple[str, str], object] = {}


def clear_cache() -> None:
    """Forget the loaded networks and their plans (the next load reads the converted weights again)."""
    with nets._net_lock:
        nets._net_cache.clear()
        _plan_cache.clear()


def _mkldnn_ops():
    """torch.ops.mkldnn (oneDNN primitives with prepacked weights, as torch.compile uses them), or None."""
    import torch

    try:
        ops = torch.ops.mkldnn
        if torch.backends.mkldnn.is_available() and all(
                hasattr(ops, n) for n in ("_linear_pointwise", "_reorder_linear_weight",
                                          "_convolution_pointwise", "_reorder_convolution_weight")):
            return ops
    except (AttributeError, RuntimeError):
        pass
    return None


@functools.lru_cache(maxsize=None)
def _plans():
    """The CPU plan classes (torch imported lazily).

    A plan computes exactly what MusicnnNet / VggNet compute (same layers, same keys), with
    the same arithmetic up to float rounding, but organised for a CPU:
    - every convolution is one oneDNN matrix product with weights reordered once at load
      (torch's own conv path reorders weights, and MKL's sgemm is slow on AMD CPUs);
    - MusiCNN's timbral convs (1 input channel, 7 x 38 / 7 x 67 kernels, max over frequency)
      run as a block-Toeplitz product: each row holds 7 frames x (fb + K - 1) bins and
      yields fb (FREQ_BLOCKS) neighbouring output frequencies for all 204 filters (4-8 % more
      multiply-adds than the direct conv, but one large well-shaped GEMM);
    - the temporal convs ([k, 1] kernels over time, per frequency) likewise yield tb
      (TIME_BLOCKS) frames per row;
    - the mid end runs time-major, its 7-tap convs as one product over 7 x C columns;
    - VGG's 3 x 3 convs run channels-last with prepacked weights (oneDNN brgconv);
    - batch norms, relus and the sign trick of ConvBN.pooled act on pooled maps only.
    With dtype bfloat16 the products (and the maps between them) are bfloat16 (fp32
    accumulation inside oneDNN); batch norms, pooling over time and dense layers stay fp32.
    """
    import torch
    import torch.nn.functional as F

    ops = _mkldnn_ops()

    class Gemm:
        """x [M, K] -> x @ w.T + b, w [N, K] prepacked for oneDNN when it is available."""

        def __init__(self, w, b, dtype):
            w, self.b = w.to(dtype).contiguous(), b.to(dtype).contiguous()
            self.w = ops._reorder_linear_weight(w) if ops is not None else w

        def __call__(self, x):
            if ops is not None:
                return ops._linear_pointwise(x, self.w, self.b, "none", [], "")
            return F.linear(x, self.w, self.b)

    class Conv:
        """2-d convolution (channels-last, prepacked weights when oneDNN is available)."""

        def __init__(self, w, b, dtype, padding, stride):
            self.padding, self.stride = list(padding), list(stride)
            w, self.b = w.to(dtype).contiguous(), b.to(dtype).contiguous()
            self.w = (ops._reorder_convolution_weight(w, self.padding, self.stride, [1, 1], 1)
                      if ops is not None else w)

        def __call__(self, x):
            if ops is not None:
                return ops._convolution_pointwise(x, self.w, self.b, self.padding, self.stride,
                                                  [1, 1], 1, "none", [], "")
            return F.conv2d(x, self.w, self.b, padding=self.padding, stride=self.stride)

    def signed(block):
        """ConvBN's pooled form: (weight * sign, bias * sign, sign, bn scale, bn shift)."""
        scale, shift = block.bn.affine()
        sign = torch.where(scale < 0, -1.0, 1.0)
        w = block.conv.weight * sign.view((-1,) + (1,) * (block.conv.weight.dim() - 1))
        return w, block.conv.bias * sign, sign, scale, shift

    class PooledBN:
        """bn(relu(.)) of a max-pooled signed conv output, channels on the last axis (fp32)."""

        def __init__(self, sign, scale, shift):
            self.sign, self.scale, self.shift = sign, scale, shift

        def __call__(self, m):
            return torch.relu(m.float() * self.sign) * self.scale + self.shift

    class MusicnnPlan:
        arch = "musicnn"

        def __init__(self, net, dtype):
            self.dtype = dtype
            self.in_scale, self.in_shift = (float(v) for v in net.bn_input.affine())
            self.timbral = []
            for block, fb in zip((net.timbral74, net.timbral77), FREQ_BLOCKS):
                w, b, sign, scale, shift = signed(block)  # w [204, 1, 7, K]
                n_out, _, kt, k = w.shape
                f_out = N_MELS - k + 1
                n_blocks = -(-f_out // fb)
                k_row = fb + k - 1
                wt = w.new_zeros(fb, n_out, kt, k_row)
                for j in range(fb):
                    wt[j, :, :, j:j + k] = w[:, 0]
                self.timbral.append(dict(
                    gemm=Gemm(wt.reshape(fb * n_out, kt * k_row), b.repeat(fb), dtype),
                    bn=PooledBN(sign, scale, shift), kt=kt, k_row=k_row, f_out=f_out, n_blocks=n_blocks,
                    fb=fb, width=(n_blocks - 1) * fb + k_row, n_out=n_out))
            self.temporal = []
            for block, tb in zip((net.temporal128, net.temporal64, net.temporal32), TIME_BLOCKS):
                w, b, sign, scale, shift = signed(block)  # w [51, 1, k, 1]
                n_out, k = w.shape[0], w.shape[2]
                n_blocks = -(-PATCH_FRAMES // tb)
                k_row = tb + k - 1
                wt = w.new_zeros(tb, n_out, k_row)
                for j in range(tb):
                    wt[j, :, j:j + k] = w[:, 0, :, 0]
                self.temporal.append(dict(
                    gemm=Gemm(wt.reshape(tb * n_out, k_row), b.repeat(tb), dtype),
                    bn=PooledBN(sign, scale, shift), before=(k - 1) // 2, k_row=k_row, n_blocks=n_blocks,
                    tb=tb, length=(n_blocks - 1) * tb + k_row, n_out=n_out))
            self.mid = []
            for block in (net.mid1, net.mid2, net.mid3):
                scale, shift = block.bn.affine()
                w = block.conv.weight  # [64, C, 7] -> [64, 7 * C] (tap-major, like the time-major input)
                gemm = Gemm(w.permute(0, 2, 1).reshape(w.shape[0], -1), block.conv.bias, dtype)
                self.mid.append(dict(gemm=gemm, scale=scale, shift=shift, k=w.shape[2]))
            self.bn_pool, self.dense, self.bn_dense, self.out = net.bn_pool, net.dense, net.bn_dense, net.out

        def __call__(self, x):
            """x [B, 187, 96] float32 -> the dict of MusicnnNet.forward."""
            b, t, f = x.shape
            h = (x * self.in_scale + self.in_shift).to(self.dtype)
            front = []
            for d in self.timbral:
                w = d["width"]
                hp = F.pad(h, (0, w - f, d["kt"] // 2, d["kt"] // 2)).contiguous()  # [B, T + 6, W]
                rows = hp.as_strided((b, t, d["n_blocks"], d["kt"], d["k_row"]),
                                     ((t + d["kt"] - 1) * w, w, d["fb"], w, 1))
                z = d["gemm"](rows.reshape(-1, d["kt"] * d["k_row"]))
                z = z.view(b, t, d["n_blocks"] * d["fb"], d["n_out"])[:, :, :d["f_out"]]
                # max over frequency; max_pool2d's channels-last kernel beats amax(dim=2) here
                z = F.max_pool2d(z.permute(0, 3, 1, 2), (1, d["f_out"]))  # [B, 204, T, 1]
                front.append(d["bn"](z[..., 0].transpose(1, 2)))  # [B, T, 204]
            per_freq = h.transpose(1, 2)  # [B, F, T]
            for d in self.temporal:
                n = d["length"]
                hp = F.pad(per_freq, (d["before"], n - t - d["before"])).contiguous()  # [B, F, L]
                rows = hp.as_strided((b, f, d["n_blocks"], d["k_row"]), (f * n, n, d["tb"], 1))
                z = d["gemm"](rows.reshape(-1, d["k_row"]))
                z = z.view(b, f, d["n_blocks"] * d["tb"], d["n_out"]).amax(dim=1)[:, :t]
                front.append(d["bn"](z))  # [B, T, 51]
            front_t = torch.cat(front, dim=2)  # [B, T, 561], time-major
            feats, prev = [front_t], front_t
            for i, d in enumerate(self.mid):
                c, k = prev.shape[2], d["k"]
                xp = F.pad(prev.to(self.dtype), (0, 0, k // 2, k // 2)).contiguous()  # [B, T + 6, C]
                rows = xp.as_strided((b, t, k * c), ((t + k - 1) * c, c, 1))  # 7 frames per row
                y = torch.relu(d["gemm"](rows.reshape(-1, k * c)).float()).view(b, t, -1)
                y = y * d["scale"] + d["shift"]
                prev = y + prev if i else y
                feats.append(prev)
            feats = torch.cat(feats, dim=2)  # [B, T, 753]
            max_pool = feats.amax(dim=1)
            mean_pool = feats.mean(dim=1)
            flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF flatten order
            pool = self.bn_pool(flat)
            penultimate = self.bn_dense(torch.relu(self.dense(pool)))
            return {"pool": pool, "penultimate": penultimate, "mean_pool": mean_pool,
                    "max_pool": max_pool, "taggram": torch.sigmoid(self.out(penultimate))}

    class VggPlan:
        arch = "vgg"

        def __init__(self, net, dtype):
            self.dtype = dtype
            self.in_scale, self.in_shift = (float(v) for v in net.bn_input.affine())
            pools = [((4, 1), (2, 1))] + list(net.pools[1:])  # conv1 runs at frequency stride 2
            self.blocks = []
            for i, (size, stride) in enumerate(pools, start=1):
                w, b, sign, scale, shift = signed(getattr(net, f"block{i}"))
                shape = (1, -1, 1, 1)
                self.blocks.append((Conv(w, b, dtype, (1, 1), (1, 2) if i == 1 else (1, 1)), size, stride,
                                    sign.view(shape), scale.view(shape), shift.view(shape)))
            self.out = net.out

        def __call__(self, x):
            """x [B, 187, 96] float32 -> the dict of VggNet.forward."""
            h = (x * self.in_scale + self.in_shift).to(self.dtype).unsqueeze(1)
            for conv, size, stride, sign, scale, shift in self.blocks:
                m = F.max_pool2d(conv(h.contiguous(memory_format=torch.channels_last)), size, stride)
                h = (torch.relu(m.float() * sign) * scale + shift).to(self.dtype)
            pool5 = h.float().permute(0, 2, 3, 1).contiguous()  # [B, 2, 1, 128], TF NHWC layout
            logits = self.out(pool5.flatten(1))
            return {"pool5_map": pool5, "pool5": pool5.mean(dim=(1, 2)), "taggram": torch.sigmoid(logits)}

    return {"musicnn": MusicnnPlan, "vgg": VggPlan}


@functools.lru_cache(maxsize=None)
def bf16_unavailable() -> str:
    """'' when the bfloat16 CPU plan can run here, else why not (one line: "this CPU lacks ...").

    Asks oneDNN itself, so a limit set with $ONEDNN_MAX_CPU_ISA counts as the CPU's own.
    """
    ops = _mkldnn_ops()
    supported = getattr(ops, "_is_mkldnn_bf16_supported", None) if ops is not None else None
    if supported is None or supported():
        return ""  # (without oneDNN the plan's bfloat16 products are torch's own, which run anywhere)
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return (f"this CPU lacks the {BF16_ISA} instructions that oneDNN's bfloat16 path needs"
            + (f" (oneDNN is limited to ONEDNN_MAX_CPU_ISA={limit})" if limit else ""))


def build_plan(net, precision: str = "fp32"):
    """A CPU plan of a loaded network (see `_plans`); checked against the network itself.

    fp32: None (the caller then runs the torch module) when the plan cannot be built or
    disagrees with the module (it must match it to 1e-4 on the taggram). bf16: EmbedderError
    (one line) when this CPU has no bfloat16 path or the plan fails.
    """
    import warnings

    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    if precision == "bf16" and bf16_unavailable():
        raise EmbedderError(f"bfloat16 inference is unavailable: {bf16_unavailable()}")
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    try:
        with torch.inference_mode():
            plan = _plans()[net.arch](net, dtype)
            x = torch.rand(2, PATCH_FRAMES, N_MELS, generator=torch.Generator().manual_seed(0)) * 4
            got, want = plan(x)["taggram"], net(x)["taggram"]
        err = float((got - want).abs().max())
        tol = 1e-4 if precision == "fp32" else 0.05
        if not err <= tol:
            raise RuntimeError(f"taggram differs by {err:.2g} from the module")
    except Exception as exc:  # pragma: no cover - depends on the torch build
        if precision == "bf16":
            raise EmbedderError(f"bfloat16 inference is not available here ({one_line(exc)})") from exc
        warnings.warn(f"musicnn: fp32 CPU plan for {net.arch} unavailable ({exc}); "
                      "running the plain torch module", RuntimeWarning, stacklevel=2)
        return None
    return plan


def load_plan(checkpoint: str, data_dir: Path, precision: str = "fp32"):
    """The cached CPU plan of a checkpoint (None on CUDA, or where only the module runs)."""
    net, mel_fb = nets.load_net(checkpoint, data_dir)
    if mel_fb.device.type != "cpu":
        return None
    key = (str(weights.converted_path(Path(data_dir), checkpoint)), precision)
    with nets._net_lock:
        if key not in _plan_cache:
            _plan_cache[key] = build_plan(net, precision)
        return _plan_cache[key]


_pool_lock = threading.Lock()
_pool: tuple | None = None  # (n_workers, process id, ThreadPoolExecutor)


def cpu_workers(n: int):
    """A pool of `n` threads whose torch ops each run on one intra-op thread (None if n < 2).

    Patches are independent, so n workers with one thread each use n cores without the
    per-op fork/join of intra-op parallelism; on a busy machine (more runnable threads than
    cores) that join makes every op wait for its slowest, descheduled thread.
    `torch.set_num_threads(1)` in a worker sets that thread's own OpenMP/MKL thread count;
    the default it also records for threads started later is put back right away, so other
    threads of the process keep their settings.
    """
    global _pool
    if n < 2:
        return None
    with _pool_lock:
        if _pool is not None and _pool[:2] == (n, os.getpid()):
            return _pool[2]
        from concurrent.futures import ThreadPoolExecutor

        import torch

        def one_thread():
            torch.get_num_threads()  # torch's lazy per-thread init first: it would undo the next line
            torch.set_num_threads(1)

        ex = ThreadPoolExecutor(n, thread_name_prefix="musicnn", initializer=one_thread)
        barrier = threading.Barrier(n + 1)
        for _ in range(n):  # start all n workers now (each runs the initializer once)
            ex.submit(barrier.wait)
        barrier.wait()
        restore = threading.Thread(target=torch.set_num_threads, args=(torch.get_num_threads(),))
        restore.start()
        restore.join()
        if _pool is not None and _pool[1] == os.getpid():  # (a forked child has no workers to stop)
            _pool[2].shutdown(wait=False)
        _pool = (n, os.getpid(), ex)
        return ex
