"""The conv VAE's stride-1 output layer: ``ConvTranspose2d`` against the same map as ``Conv2d``.

Forward + backward of the 5x5, 32 -> C channel output layer at 32x32 (C = 3 for the Gaussian
heads, 768 for the 256-way categorical on RGB), float32 and bf16 autocast, best of a few
repeats. ``sigmavae.models.conv.StrideOneTransposedConv`` uses the conv form from
``WIDE`` output channels on, where this shows it faster.

    python benchmarks/output_layer.py --threads 1
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from _common import machine, time_steps


def compare(out_channels: int, batch: int, bf16: bool, repeats: int) -> dict[str, float]:
    layer = torch.nn.ConvTranspose2d(32, out_channels, 5, stride=1, padding=2)
    x = torch.randn(batch, 32, 32, 32, requires_grad=True)

    def transposed() -> torch.Tensor:
        return layer(x)

    def conv() -> torch.Tensor:
        return F.conv2d(x, layer.weight.transpose(0, 1).flip(2, 3), layer.bias, padding=2)

    with torch.no_grad():  # the same map, or the timing means nothing
        torch.testing.assert_close(transposed(), conv(), atol=1e-4, rtol=1e-4)
    seconds = {}
    for name, forward in (("conv_transpose_s", transposed), ("conv_s", conv)):
        def step(forward=forward) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = forward()
            y.float().sum().backward()

        seconds[name] = min(time_steps(step, 1, warmup=1) for _ in range(repeats))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(machine()))
    for out_channels, batch in ((3, 128), (768, 32)):
        for bf16 in (False, True):
            s = compare(out_channels, batch, bf16, args.repeats)
            print(f"C={out_channels:4d} batch {batch:3d} {'bf16' if bf16 else 'fp32'}: "
                  f"transposed {s['conv_transpose_s']:.3f} s, conv {s['conv_s']:.3f} s "
                  f"(conv/transposed {s['conv_s'] / s['conv_transpose_s']:.2f}x)")


if __name__ == "__main__":
    main()
