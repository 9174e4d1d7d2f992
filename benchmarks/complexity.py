"""Parameters and FLOPs of the networks: CMUNeXt's variants beside the paper's figures, ASE-Net with and without DyBAC.

Usage (from the repository root)::

    python benchmarks/complexity.py [--size 256] [--variant cmunext cmunext_s] [--threads 2] [--json out.json]
    python benchmarks/complexity.py --model asenet

``--model cmunext`` (the default) reports CMUNeXt, CMUNeXt-S and CMUNeXt-L: parameters, three operation counts and
the CPU latency of a forward pass. ``--model asenet`` reports what DyBAC does to the two ASE-Net segmenters
(``DyBACVNet`` at the 3D patch 112x112x80, ``DyBACUNet`` at 256x256) and the discriminators: parameters and
``FlopCounterMode`` FLOPs of one forward pass, batch 1 (halve them for the "MACs" many papers call FLOPs).

Three operation counts are reported for a (1, in_channels, size, size) input:

* ``FlopCounterMode`` (``torch.utils.flop_counter``): counts only the convolutions (2 FLOPs per multiply-accumulate,
  bias ignored). Depthwise and group convolutions are counted correctly: the formula uses the weight shape
  ``(C_out, C_in / groups, k, k)``. BatchNorm, GELU, ReLU, max-pooling, bilinear upsampling, the residual adds and
  the concatenations are not counted at all.
* conv GMACs: the same count / 2.
* thop-style MACs: a re-implementation, with forward hooks, of the module rules of ``thop`` 0.1.1
  (``Lyken17/pytorch-OpCounter``: ``thop/profile.py``, ``thop/vision/basic_hooks.py``, ``calc_func.py``), a counter
  commonly used for the "GFLOPs" of segmentation papers: convolution = output elements x C_in / groups x k x k
  (no bias), BatchNorm with affine = 4 x elements, bilinear ``nn.Upsample`` = 11 x output elements, ReLU and
  max-pool = 0, GELU (no rule) = 0, functional ops (add, cat) = 0. thop is not a dependency of this project, so it
  is emulated rather than called.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

VARIANT_LABELS = {"cmunext": "CMUNeXt", "cmunext_s": "CMUNeXt-S", "cmunext_l": "CMUNeXt-L"}
# Published figures at 256x256 (METHODS.md, "CMUNeXt"): parameters in M and "GFLOPs"; None where not given there.
PAPER_FIGURES: dict[str, dict[str, float | None]] = {
    "cmunext": {"params_m": 3.14, "gflops": 7.41},
    "cmunext_s": {"params_m": None, "gflops": None},
    "cmunext_l": {"params_m": None, "gflops": None},
}
# ASE-Net's shapes: the LA patch (3D, 1 channel) and the ISIC crop (2D, RGB), batch 1; 2 classes predicted
ASENET_SHAPES = {3: (1, 1, 112, 112, 80), 2: (1, 3, 256, 256)}
ASENET_CLASSES = 2
IN_CHANNELS = 3
OUT_CHANNELS = 1
BATCH_SIZE = 1
# thop 0.1.1 per-element costs (thop/vision/calc_func.py): normalisation 2 x elements, doubled when affine;
# bilinear upsampling 11 ops per output element (6 muls + 5 adds).
THOP_NORM_AFFINE_OPS = 4
THOP_BILINEAR_OPS = 11


def _importable_root() -> None:
    # plain script: make the repository root importable without installing the project
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)


def _cmunext_class() -> type[nn.Module]:
    _importable_root()
    from common.networks import CMUNeXt

    return CMUNeXt


def flop_counter_mode(net: nn.Module, *inputs: torch.Tensor) -> tuple[int, dict[str, int]]:
    """FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` and the operators it counted.

    Args:
        net: the network, called as ``net(*inputs)`` under ``torch.no_grad``.
        inputs: its forward arguments (an image; a discriminator takes a prediction and an image).
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(*inputs)
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), per_op


def thop_style_macs(net: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """MACs by thop 0.1.1's module rules, split by kind of layer; also the element counts thop leaves out."""
    parts = {"conv": 0, "batchnorm": 0, "upsample": 0, "conv_bias_adds": 0, "gelu_elements": 0}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            parts["conv"] += output.numel() * (module.in_channels // module.groups) * k
            if module.bias is not None:
                parts["conv_bias_adds"] += output.numel()
        elif isinstance(module, nn.BatchNorm2d):
            parts["batchnorm"] += (THOP_NORM_AFFINE_OPS if module.affine else 2) * inputs[0].numel()
        elif isinstance(module, nn.Upsample) and module.mode == "bilinear":
            parts["upsample"] += THOP_BILINEAR_OPS * output.numel()
        elif isinstance(module, nn.GELU):
            parts["gelu_elements"] += output.numel()

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    parts["thop_total"] = parts["conv"] + parts["batchnorm"] + parts["upsample"]
    # thop 0.0.31 (2020) counted the conv bias (one add per output element) and 2 ops per BN element instead
    parts["thop_0_0_31_total"] = parts["conv"] + parts["conv_bias_adds"] + parts["batchnorm"] // 2 + parts["upsample"]
    return parts


def cpu_latency_ms(net: nn.Module, x: torch.Tensor, runs: int, warmup: int) -> list[float]:
    """Wall-clock times (ms) of ``runs`` forward passes after ``warmup`` untimed ones, in eval mode."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            net(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return times


def measure(variant: str, size: int, runs: int, warmup: int) -> dict[str, Any]:
    torch.manual_seed(0)
    net = _cmunext_class()(in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS, variant=variant).eval()
    x = torch.rand(BATCH_SIZE, IN_CHANNELS, size, size)
    params = _parameters(net)
    flops, per_op = flop_counter_mode(net, x)
    thop = thop_style_macs(net, x)
    times = cpu_latency_ms(net, x, runs, warmup)
    return {
        "variant": variant,
        "label": VARIANT_LABELS[variant],
        "params": params,
        "params_m": params / 1e6,
        "flop_counter_gflops": flops / 1e9,
        "flop_counter_ops": per_op,
        "conv_gmacs": flops / 2e9,
        "thop_style_gmacs": thop["thop_total"] / 1e9,
        "thop_style_parts_g": {k: v / 1e9 for k, v in thop.items()},
        "latency_ms_median": statistics.median(times),
        "latency_ms_all": times,
        "paper": PAPER_FIGURES[variant],
    }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def _paper_format(exact: float, published: float) -> str | None:
    """How a published two-decimal figure was obtained from the exact one: "rounded", "truncated" or None."""
    if round(exact, 2) == published:
        return "rounded"
    if math.floor(exact * 100) / 100 == published:
        return "truncated"
    return None


def report(results: list[dict[str, Any]], size: int, threads: int, runs: int) -> str:
    lines = [
        f"CMUNeXt complexity at {BATCH_SIZE}x{IN_CHANNELS}x{size}x{size} -> {OUT_CHANNELS} channel(s); "
        f"torch {torch.__version__}, {threads} CPU thread(s), latency = median of {runs} runs",
        "",
        f"{'model':<10} {'params M':>9} {'paper M':>8} {'FLOPs (FCM) G':>14} {'conv GMACs':>11} "
        f"{'thop-style GMACs':>17} {'paper GFLOPs':>13} {'CPU ms':>9}",
    ]
    for r in results:
        lines.append(
            f"{r['label']:<10} {r['params_m']:>9.3f} {_fmt(r['paper']['params_m']):>8} "
            f"{r['flop_counter_gflops']:>14.3f} {r['conv_gmacs']:>11.3f} {r['thop_style_gmacs']:>17.3f} "
            f"{_fmt(r['paper']['gflops']):>13} {r['latency_ms_median']:>9.1f}"
        )
    lines += ["", "Breakdown of the thop-style count (G):"]
    for r in results:
        p = r["thop_style_parts_g"]
        lines.append(
            f"  {r['label']:<10} conv {p['conv']:.4f} + BN {p['batchnorm']:.4f} + upsample {p['upsample']:.4f} "
            f"= {p['thop_total']:.4f}   (not counted by thop: conv bias adds {p['conv_bias_adds']:.4f}, "
            f"GELU elements {p['gelu_elements']:.4f})"
        )
    lines += ["", "Notes:"]
    lines.append(
        "  * FlopCounterMode counted only these operators: "
        + ", ".join(sorted({op for r in results for op in r["flop_counter_ops"]}))
        + ". It counts 2 FLOPs per multiply-accumulate and handles depthwise/group convolutions by their weight "
        "shape; BatchNorm, GELU, ReLU, max-pool, bilinear upsampling, residual adds and concatenations count 0."
    )
    default = next((r for r in results if r["variant"] == "cmunext"), None)
    if default is not None and size == 256:
        paper = default["paper"]
        candidates = {
            "FlopCounterMode FLOPs (2 x conv MACs)": default["flop_counter_gflops"],
            "conv-only GMACs": default["conv_gmacs"],
            "thop-style GMACs": default["thop_style_gmacs"],
        }
        gaps = {name: (value - paper["gflops"]) / paper["gflops"] * 100 for name, value in candidates.items()}
        best = min(gaps, key=lambda name: abs(gaps[name]))
        verdict = {
            "thop-style GMACs": "multiply-accumulates (MACs) as thop counts them (conv + BN + upsampling), not FLOPs",
            "conv-only GMACs": "convolution multiply-accumulates (MACs), not FLOPs",
        }.get(best, "FLOPs")
        lines.append(
            f'  * Which count is the paper\'s {paper["gflops"]} "GFLOPs" for CMUNeXt? Relative gaps: '
            + ", ".join(f"{name} {gap:+.1f}%" for name, gap in gaps.items())
            + f'. Closest: {best}; so the paper\'s "GFLOPs" are {verdict}.'
        )
        lines.append(
            f"  * The {default['thop_style_gmacs'] - default['conv_gmacs']:.3f} G between conv-only GMACs and the "
            "thop-style count is thop's BatchNorm (4 ops per element) and bilinear upsampling (11 per output element) "
            "cost, which FlopCounterMode does not count. Neither counts GELU, conv bias adds, residual adds or "
            "concatenations. The older thop 0.0.31 rules (bias counted, 2 ops per BN element) would give "
            f"{default['thop_style_parts_g']['thop_0_0_31_total']:.4f} G, further from the paper."
        )
        for what, exact, published, unit in (
            ("parameters", default["params_m"], paper["params_m"], "M"),
            ("thop-style GMACs", default["thop_style_gmacs"], paper["gflops"], "G"),
        ):
            how = _paper_format(exact, published)
            lines.append(
                f"  * Exact {what}: {exact:.4f} {unit}; the paper's {published} {unit} is this "
                + (f"{how} to two decimals" if how else "neither rounded nor truncated to two decimals")
                + f" (rounded: {exact:.2f})."
            )
    lines.append("  * METHODS.md gives no parameter or GFLOPs figures for CMUNeXt-S and CMUNeXt-L (n/a above).")
    lines.append("  * CPU latency depends on the machine and thread count; it is not comparable with GPU FPS.")
    return "\n".join(lines)


def _parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def asenet_rows() -> list[dict[str, Any]]:
    """Parameters and forward FLOPs (``FlopCounterMode``, eval mode, batch 1) of ASE-Net's networks.

    Returns:
        one row per network: ``name``, ``input`` (the spatial shape), ``params`` and ``flops``; the segmenters with
        and without DyBAC, then the 3D and the 2D discriminator (D1 and D2 share the architecture).
    """
    _importable_root()
    from common.networks import ASENetDiscriminator, DyBACUNet, DyBACVNet

    rows = []
    for name, net, shape in (
        ("3D V-Net + DyBAC", DyBACVNet(), ASENET_SHAPES[3]),
        ("3D V-Net plain", DyBACVNet(use_dybac=False), ASENET_SHAPES[3]),
        ("2D U-Net + DyBAC", DyBACUNet(), ASENET_SHAPES[2]),
        ("2D U-Net plain", DyBACUNet(use_dybac=False), ASENET_SHAPES[2]),
    ):
        flops, _ = flop_counter_mode(net.eval(), torch.randn(shape))
        rows.append({"name": name, "input": shape[2:], "params": _parameters(net), "flops": flops})
    for dims, shape in ((3, ASENET_SHAPES[3]), (2, ASENET_SHAPES[2])):
        d = ASENetDiscriminator(dims, pred_channels=ASENET_CLASSES, image_channels=shape[1]).eval()
        flops, _ = flop_counter_mode(d, torch.rand(1, ASENET_CLASSES, *shape[2:]), torch.randn(shape))
        rows.append({"name": f"discriminator {dims}D", "input": shape[2:], "params": _parameters(d), "flops": flops})
    return rows


def asenet_report(rows: list[dict[str, Any]]) -> str:
    """The table of ``--model asenet``: network, input, parameters (M), GFLOPs."""
    lines = [f"{'network':<22}{'input':>18}{'params (M)':>12}{'GFLOPs':>10}"]
    for r in rows:
        size = "x".join(map(str, r["input"]))
        lines.append(f"{r['name']:<22}{size:>18}{r['params'] / 1e6:>12.3f}{r['flops'] / 1e9:>10.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("cmunext", "asenet"), default="cmunext", help="the networks to report")
    parser.add_argument("--size", type=int, default=256, help="input height and width (divisible by 16)")
    parser.add_argument(
        "--variant", nargs="+", choices=sorted(VARIANT_LABELS), default=list(VARIANT_LABELS), help="variants to run"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--runs", type=int, default=10, help="timed forward passes (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forward passes before timing")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.size < 16 or args.size % 16:
        parser.error(f"--size must be a positive multiple of 16, got {args.size}")
    if args.threads < 1 or args.runs < 1 or args.warmup < 0:
        parser.error("--threads and --runs must be >= 1 and --warmup >= 0")

    torch.set_num_threads(args.threads)
    if args.model == "asenet":
        rows = asenet_rows()
        print(asenet_report(rows))
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"torch": torch.__version__, "results": rows}, indent=2) + "\n")
            print(f"\nwrote {args.json}")
        return 0
    results = [measure(v, args.size, args.runs, args.warmup) for v in args.variant]
    print(report(results, args.size, args.threads, args.runs))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {
            "size": args.size,
            "batch_size": BATCH_SIZE,
            "in_channels": IN_CHANNELS,
            "out_channels": OUT_CHANNELS,
            "threads": args.threads,
            "runs": args.runs,
            "warmup": args.warmup,
            "torch": torch.__version__,
        }
        args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
