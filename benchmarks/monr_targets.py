"""MONR targets with torch on the batch versus a straightforward scipy version per volume: same values, speed ratio.

Usage (from the repository root)::

    python benchmarks/monr_targets.py [--size 128 96 144] [--batch 2] [--repeats 5] [--threads 2] [--formula power]
        [--json out.json]

DMGSA computes its multi-order normalized responses (2 MONI + 6 MONG channels) for every training batch. The
reference is what one would write first: numpy per volume, ``scipy.ndimage.sobel`` per order and axis, float64. The
torch version (``common.transforms.MultiOrderResponses``) runs on the batch in float32, the Sobel kernel as separable
passes of shifted slices (on the GPU when the batch is there). Both use the default formula ``MONI_k = (Xa / 255)^k``
(``--formula as_written``: the degenerate formula whose two orders coincide). Printed: the largest absolute difference
over all channels (the responses lie in [0, 1] for MONI and [-16, 16] for MONG), and the median time of each over
``--repeats`` runs on the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage


def scipy_monr(volume: np.ndarray, orders=(0.5, 1.5), formula: str = "power") -> np.ndarray:
    """The formulas of ``common.transforms.monr`` for one ``(D, H, W)`` volume with numpy/scipy, float64.

    ``MONI_k = Phi_n(Xa^k) / 255`` (``"power"``, which is ``(Xa / 255)^k``), or its ``1/k`` root (``"as_written"``).
    """
    x = volume.astype(np.float64)
    xa = 255.0 * (x - x.min()) / max(x.max() - x.min(), 1e-8)
    moni, mong = [], []
    for k in orders:
        xk = xa**k
        xm = (xk - xk.min()) / max(xk.max() - xk.min(), 1e-8)
        xm = xm ** (1.0 / k) if formula == "as_written" else xm
        moni.append(xm)
        mong.extend(ndimage.sobel(xm, axis=axis) for axis in range(3))
    return np.stack(moni + mong)


def _timed(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=3, default=[128, 96, 144], help="volume size (D H W)")
    parser.add_argument("--batch", type=int, default=2, help="volumes per batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--formula", default="power", choices=["power", "as_written"], help="the MONI formula")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from common.transforms import MultiOrderResponses

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    # CT-like values in [0, 1] (a windowed patch): smooth structures plus noise
    batch = ndimage.gaussian_filter(rng.random((args.batch, 1, *args.size)), (0, 0, 2, 2, 2)).astype(np.float32)
    batch += 0.05 * rng.standard_normal(batch.shape).astype(np.float32)
    tensor = torch.from_numpy(batch)
    monr = MultiOrderResponses(formula=args.formula)

    reference = np.stack([scipy_monr(volume[0], formula=args.formula) for volume in batch])
    result = monr(tensor).numpy()
    difference = np.abs(result.astype(np.float64) - reference)
    figures = {
        "size": args.size,
        "batch": args.batch,
        "threads": args.threads,
        "formula": args.formula,
        "max_abs_difference": float(difference.max()),
        "max_abs_difference_moni": float(difference[:, :2].max()),
        "max_abs_difference_mong": float(difference[:, 2:].max()),
        "scipy_seconds": _timed(
            lambda: [scipy_monr(volume[0], formula=args.formula) for volume in batch], args.repeats
        ),
        "torch_seconds": _timed(lambda: monr(tensor), args.repeats),
    }
    figures["speed_ratio"] = figures["scipy_seconds"] / figures["torch_seconds"]
    size = "x".join(map(str, args.size))
    print(f"MONR targets ({args.formula}) of a batch of {args.batch} x {size} ({args.threads} CPU threads)")
    print(
        f"  max |torch - scipy|: {figures['max_abs_difference']:.2e} "
        f"(MONI {figures['max_abs_difference_moni']:.2e}, MONG {figures['max_abs_difference_mong']:.2e})"
    )
    print(f"  scipy per volume (float64): {figures['scipy_seconds']:.3f} s")
    print(f"  torch on the batch (float32): {figures['torch_seconds']:.3f} s")
    print(f"  speed ratio scipy / torch: {figures['speed_ratio']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
