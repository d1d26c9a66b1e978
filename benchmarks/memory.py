"""Peak memory and time of the ``categorical`` head's ``log_prob`` + backward, per memory mode.

For a batch of ``--batch`` colour images of ``--size`` x ``--size`` (default 2 x 3 x 256 x 256),
the decoder output ``params`` ``(B, 256*C, H, W)`` (float32, 256 values per data dimension, the
paper's App. D) is allocated first; then one call

    head(params, target=x).log_prob(x).sum().backward()

is measured for each variant:

* ``log_softmax``: the textbook ``log_softmax(logits, -1).gather(-1, x)`` (via ``log_prob_fn``);
* ``plain``: ``create("categorical", memory="plain")``, one-shot gather minus ``logsumexp``;
* ``bounded``: ``create("categorical")`` (the default, ``memory="bounded"``), chunked.

``--dtype bfloat16 --layout channels_last`` gives ``params`` as a bf16-mixed run's decoder
output on a CPU (``--precision auto``): the bounded path reads it in place and computes in
float32 chunk by chunk, the others upcast a copy of it.

Peak memory is the extra memory of that call over what was allocated before it (``params``,
``x``), so it includes the gradient of ``params`` (as large as ``params``; every variant must
produce it), also reported separately. Each variant runs in a fresh subprocess. On CPU the peak
is the process's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) minus the resident
size just before the call; on CUDA ``torch.cuda.max_memory_allocated`` minus the allocated memory
before the call. Time per call is the median of ``--repeats`` further calls. The values (per data
dimension) and gradients of every variant are compared with ``plain`` in a separate subprocess,
asserted close, and the maximum absolute differences printed.

    python benchmarks/memory.py [--batch 2] [--size 256] [--device auto|cpu|cuda]
                                [--dtype float32|bfloat16] [--layout contiguous|channels_last]
                                [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import machine, write_json

from sigmavae.likelihoods import create

VARIANTS = ("log_softmax", "plain", "bounded")
MIB = 2.0**20
#: Tolerances (float32) for the check against ``plain`` (``bounded`` is bit-identical on CPU;
#: ``log_softmax`` rounds differently, ~1e-6).
LOG_PROB_ATOL = 1e-5  # nats per data dimension
#: Per dtype of ``params``: the gradient is rounded to it, so bf16 ones may differ by one bf16
#: step (2^-8 relative; |grad| <= 1) where float32 sums in another order round differently.
GRAD_ATOL = {"float32": 1e-5, "bfloat16": 2.0**-7}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def log_softmax_gather(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The textbook version: a full ``(..., 256)`` log-softmax, then the gather."""
    return torch.log_softmax(logits, -1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)


def make_head(variant: str, chunk_pixels: int | None):
    if variant == "log_softmax":
        return create("categorical", log_prob_fn=log_softmax_gather)
    if variant == "plain":
        return create("categorical", memory="plain")
    return create("categorical", memory="bounded", chunk_pixels=chunk_pixels)


def make_inputs(args, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, 256 * args.channels, args.size, args.size)
    # drawn in place, in its dtype and layout: no temporary raises the process's peak memory
    # above what the measured call needs
    params = torch.empty(shape, dtype=DTYPES[args.dtype], memory_format=LAYOUTS[args.layout])
    params = params.normal_(0.0, 3.0, generator=gen).to(device).requires_grad_()
    x = torch.randint(0, 256, (args.batch, args.channels, args.size, args.size), generator=gen)
    return params, x.to(device)


def _rss_bytes() -> int:
    """Current resident set size (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _maxrss_bytes()


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # macOS: bytes, Linux: KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args) -> dict:
    """One variant in this (fresh) process: peak extra memory of one call, then timing."""
    device = torch.device(args.device)
    head = make_head(args.worker, args.chunk_pixels)

    def call(params, x):
        params.grad = None
        head(params, target=x).log_prob(x).sum().backward()

    warm = argparse.Namespace(batch=1, channels=args.channels, size=8, dtype=args.dtype,
                              layout=args.layout)
    warm_p, warm_x = make_inputs(warm, device)
    call(warm_p, warm_x)  # lazy initialisation (kernels, thread pools) outside the measurement
    del warm_p, warm_x
    params, x = make_inputs(args, device)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call(params, x)
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        method = "torch.cuda.max_memory_allocated"
    else:
        before, maxrss_before = _rss_bytes(), _maxrss_bytes()
        call(params, x)
        peak = _maxrss_bytes() - before
        method = "getrusage ru_maxrss - resident size before the call"
        if _maxrss_bytes() <= maxrss_before:  # the call never exceeded an earlier peak
            method += " (upper bound: an earlier peak was higher)"
    times = []
    for _ in range(args.repeats):
        _sync(device)
        start = time.perf_counter()
        call(params, x)
        _sync(device)
        times.append(time.perf_counter() - start)
    return {
        "variant": args.worker, "peak_extra_bytes": peak, "method": method,
        "time_ms_median": 1e3 * statistics.median(times),
        "time_ms_all": [1e3 * t for t in times],
        "head": repr(head),
    }


def check(args) -> dict:
    """Values per data dimension and gradients of every variant against ``plain``."""
    device = torch.device(args.device)
    params, x = make_inputs(args, device)
    results = {}
    for variant in VARIANTS:
        dist = make_head(variant, args.chunk_pixels)(params, target=x)
        values = dist.elementwise_log_prob(x)
        (grad,) = torch.autograd.grad(values.sum(), params)
        results[variant] = (values.detach(), grad)
        del dist, values, grad
    ref_values, ref_grad = results["plain"]
    out = {}
    for variant in VARIANTS:
        values, grad = results[variant]
        out[variant] = {
            "max_abs_diff_log_prob": float((values - ref_values).abs().max()),
            "max_abs_diff_grad": float((grad - ref_grad).abs().max()),
        }
    # Sanity: plain is PyTorch's cross-entropy on the (B, 256, C, H, W) view (in float32).
    ce = -torch.nn.functional.cross_entropy(
        params.detach().float().unflatten(1, (256, args.channels)), x, reduction="none"
    )
    out["plain_vs_cross_entropy"] = float((ce - ref_values).abs().max())
    return out


def run_subprocess(args, mode: list[str]) -> dict:
    cmd = [sys.executable, __file__, *mode, "--batch", str(args.batch), "--size", str(args.size),
           "--channels", str(args.channels), "--device", args.device,
           "--repeats", str(args.repeats), "--threads", str(args.threads),
           "--dtype", args.dtype, "--layout", args.layout]
    if args.chunk_pixels is not None:
        cmd += ["--chunk-pixels", str(args.chunk_pixels)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(mode)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="image height and width")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--chunk-pixels", type=int, default=None,
                        help="bounded mode's chunk (default: the head's default)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES),
                        help="dtype of params (bfloat16: a bf16-mixed run's decoder output)")
    parser.add_argument("--layout", default="contiguous", choices=list(LAYOUTS),
                        help="memory format of params")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per variant")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (default: torch's default)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory.json"))
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.worker or args.check:
        print(json.dumps(worker(args) if args.worker else check(args)))
        return

    params_bytes = args.batch * 256 * args.channels * args.size**2 * DTYPES[args.dtype].itemsize
    device_name = (torch.cuda.get_device_name() if args.device == "cuda"
                   else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)")
    print(f"categorical head, log_prob + backward, x: {args.batch}x{args.channels}x{args.size}x"
          f"{args.size}; device: {device_name}")
    print(f"params (B, 256*C, H, W) {args.dtype}, {args.layout}: {params_bytes / MIB:.1f} MiB "
          f"(256 x the image); its gradient: {params_bytes / MIB:.1f} MiB")
    rows = [run_subprocess(args, ["--worker", v]) for v in VARIANTS]
    diffs = run_subprocess(args, ["--check"])
    plain = next(r for r in rows if r["variant"] == "plain")
    print(f"\n{'variant':<12} {'peak extra MiB':>15} {'beyond grad MiB':>16} {'x params':>9} "
          f"{'ms / call':>10} {'vs plain':>9} {'max|dlogp|':>11} {'max|dgrad|':>11}")
    for r in rows:
        d = diffs[r["variant"]]
        r.update(d)
        r["peak_extra_mib"] = r["peak_extra_bytes"] / MIB
        r["beyond_grad_mib"] = (r["peak_extra_bytes"] - params_bytes) / MIB
        print(f"{r['variant']:<12} {r['peak_extra_mib']:>15.1f} {r['beyond_grad_mib']:>16.1f} "
              f"{r['peak_extra_bytes'] / params_bytes:>9.2f} {r['time_ms_median']:>10.1f} "
              f"{r['time_ms_median'] / plain['time_ms_median']:>9.2f} "
              f"{d['max_abs_diff_log_prob']:>11.2e} {d['max_abs_diff_grad']:>11.2e}")
    print(f"\nmemory: {rows[0]['method'].split(' (')[0]}; plain vs F.cross_entropy: "
          f"{diffs['plain_vs_cross_entropy']:.2e} nats")
    for r in rows:  # a peak the call never reached is a bound, not a measurement
        if "upper bound" in r["method"]:
            print(f"{r['variant']}: its peak is an upper bound (an earlier peak was higher)")
    for r in rows:
        assert r["max_abs_diff_log_prob"] <= LOG_PROB_ATOL, r
        assert r["max_abs_diff_grad"] <= GRAD_ATOL[args.dtype], r
    assert diffs["plain_vs_cross_entropy"] <= LOG_PROB_ATOL, diffs
    write_json({
        "benchmark": "categorical log_prob + backward, peak extra memory",
        "device": args.device, "device_name": device_name, "machine": machine(),
        "command": " ".join(["python", "benchmarks/memory.py", *sys.argv[1:]]),
        "batch": args.batch, "channels": args.channels, "size": args.size,
        "dtype": args.dtype, "layout": args.layout,
        "params_mib": params_bytes / MIB, "results": rows,
        "plain_vs_cross_entropy": diffs["plain_vs_cross_entropy"],
    }, Path(args.out))


if __name__ == "__main__":
    main()
