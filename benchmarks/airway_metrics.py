"""Seconds per airway metric on a CT-sized volume (512 x 512 x 300 by default).

Usage (from the repository root)::

    python benchmarks/airway_metrics.py [--size 512 512 300] [--repeats 1] [--json out.json]

The truth is the airway label of the procedural phantom (``common.data.AirwayPhantom3D``) grown at that size with a
CT-like trachea (about 600 branches, 12 generations); the prediction misses a third of the terminal branches, leaks
into a slab beside the trachea and holds a disconnected fragment larger than itself elsewhere (so the component
search has to step past it). Each metric is timed alone (computing only what it needs: IoU-like metrics need the
crop and the component search, DLR and CCF the truth's skeleton, DBR the skeleton and the tree parsing), then all
eight at once (one skeleton and one parsing shared), as ``common.metrics.AirwayMetric`` computes them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=3, default=[512, 512, 300], help="volume size (X Y Z)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per metric (median reported)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from common.data import AirwayPhantom3D
    from common.data.phantoms.airway3d import _segment_distance
    from common.metrics import AIRWAY_METRICS, airway_metrics

    scale = min(args.size) / 300
    phantom = AirwayPhantom3D(
        num_cases=1,
        shape=tuple(args.size),
        spacing=(0.7, 0.7, 1.0),
        trachea_radius=(12.0 * scale, 14.0 * scale),
        max_generations=12,
    )
    start = time.perf_counter()
    tree = phantom.tree(0)
    truth = phantom.label(0)
    built = time.perf_counter() - start

    # the prediction: a third of the terminal branches missed, a leak beside the trachea, a large fragment elsewhere
    parents = {branch.parent for branch in tree}
    terminal = [branch for index, branch in enumerate(tree) if index not in parents]
    rng = np.random.default_rng(0)
    pred = truth.copy()
    for branch in rng.choice(np.array(terminal, dtype=object), size=len(terminal) // 3, replace=False):
        start_point, end_point = np.asarray(branch.start), np.asarray(branch.end)
        box = phantom._box(start_point, end_point, branch.radius + 1, phantom.shape)
        points = phantom._box_points(box)
        near_end = np.linalg.norm(points - end_point, axis=-1) < np.linalg.norm(end_point - start_point) * 0.6
        pred[box] &= ~((_segment_distance(points, start_point, end_point) < branch.radius + 1) & near_end)
    trachea = tree[0]
    centre = np.round(np.asarray(trachea.end)).astype(int)
    radius = int(trachea.radius)
    pred[centre[0] + radius - 1 : centre[0] + radius + 6, centre[1] - 5 : centre[1] + 5, centre[2] : centre[2] + 40] = (
        True
    )
    fragment_size = int(round(float(truth.sum()) ** (1 / 3) * 1.3))
    pred[2 : 2 + fragment_size, 2 : 2 + fragment_size, 2 : 2 + fragment_size] = True

    figures: dict = {
        "size": args.size,
        "branches_generated": len(tree),
        "truth_voxels": int(truth.sum()),
        "prediction_voxels": int(pred.sum()),
        "phantom_seconds": built,
        "seconds": {},
    }
    print(
        f"airway metrics on {'x'.join(map(str, args.size))}: {len(tree)} generated branches, "
        f"{figures['truth_voxels']} truth voxels, {figures['prediction_voxels']} predicted (phantom {built:.1f} s)"
    )
    for name in AIRWAY_METRICS:
        seconds, result = _timed(lambda name=name: airway_metrics(pred, truth, [name]), args.repeats)
        figures["seconds"][name] = seconds
        print(f"  {name:>9}: {seconds:7.2f} s   value {result[name]:.4f}")
    seconds, result = _timed(lambda: airway_metrics(pred, truth, AIRWAY_METRICS), args.repeats)
    figures["seconds"]["all"] = seconds
    figures["values"] = result
    print(f"  all eight: {seconds:7.2f} s   (" + ", ".join(f"{k} {v:.3f}" for k, v in result.items()) + ")")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
