"""Airway figures: maximum-intensity projections of truth and prediction, branches coloured detected or missed.

For each case, the truth is parsed into branches and each branch is called detected or missed exactly as the DBR
metric does (``common.metrics.airway_metrics``); the left panel projects the truth with detected branches in green and
missed ones in red, the right panel the prediction's airway component with its voxels inside the truth in white and
its leakage in orange (other predicted blobs, not scored, in grey). Projections run along one axis (default the
second, anterior-posterior for RAS volumes: a coronal view) over the crop the metrics use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.handlers.figures import CaseFigureSaver, pyplot, save_figure
from common.metrics.airway import airway_metrics

__all__ = ["AirwayFigureSaver", "draw_airway_projection"]


_COLOURS = {
    "detected": (0.1, 0.85, 0.2),
    "missed": (0.95, 0.15, 0.1),
    "unparsed": (0.4, 0.6, 1.0),
    "inside": (1.0, 1.0, 1.0),
    "leakage": (1.0, 0.6, 0.0),
    "ignored": (0.45, 0.45, 0.45),
}


def _binary(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(C, *spatial)`` one-hot (channel 1 = airway) or ``(1, *spatial)`` binary -> ``(*spatial)`` bool."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return (x[1] if x.shape[0] > 1 else x[0]) > 0.5


def _project(codes: np.ndarray, axis: int, colours: list[tuple[float, float, float]]) -> np.ndarray:
    """Project integer codes (higher code wins) along ``axis``; returns an ``(H, W, 3)`` image, up = last axis."""
    top = codes.max(axis=axis)
    palette = np.array([(0.0, 0.0, 0.0), *colours], dtype=np.float32)
    image = palette[top]
    return np.flip(np.swapaxes(image, 0, 1), axis=0)  # rows = last spatial axis, superior at the top


def draw_airway_projection(
    pred: torch.Tensor | np.ndarray,
    label: torch.Tensor | np.ndarray,
    path: str | Path,
    title: str = "",
    axis: int = 1,
    crop_margin: int = 20,
) -> dict[str, float]:
    """Draw the truth (detected / missed branches) and prediction projections of one case and save a PNG.

    Args:
        pred: ``(C, X, Y, Z)`` one-hot or ``(1, X, Y, Z)`` binary prediction.
        label: the truth, same convention.
        path: the PNG to write (parent folders are created).
        title: the figure's title (the metrics are appended).
        axis: the spatial axis to project along.
        crop_margin: the metrics' crop margin.

    Returns:
        The case's IoU, DLR and DBR, and its numbers of branches and detected branches.
    """
    from matplotlib.patches import Patch

    plt = pyplot()

    truth, predicted = _binary(label), _binary(pred)
    if truth.ndim != 3:
        raise ValueError(f"draw_airway_projection expects 3D volumes, got spatial shape {truth.shape}")
    result = airway_metrics(predicted, truth, ("iou", "dlr", "dbr"), crop_margin=crop_margin, return_details=True)
    summary = {key: result[key] for key in ("iou", "dlr", "dbr")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5))
    if "_parsing" in result:
        crop, parsing, detected, component = (
            result["_crop"],
            result["_parsing"],
            result["_detected"],
            result["_component"],
        )
        truth_c, pred_c = truth[crop], predicted[crop]
        status = np.zeros(parsing.labels.max() + 1, dtype=np.uint8)
        status[1:] = np.where(detected, 2, 3)  # 1: truth outside every branch territory, 2 detected, 3 missed
        truth_codes = np.where(truth_c, np.maximum(status[parsing.labels], 1), 0)
        pred_codes = np.where(component, np.where(truth_c, 2, 3), np.where(pred_c, 1, 0))
        truth_image = _project(truth_codes, axis, [_COLOURS["unparsed"], _COLOURS["detected"], _COLOURS["missed"]])
        pred_image = _project(pred_codes, axis, [_COLOURS["ignored"], _COLOURS["inside"], _COLOURS["leakage"]])
        summary.update(branches=float(parsing.num_branches), detected=float(detected.sum()))
        axes[0].imshow(truth_image, interpolation="nearest")
        axes[0].set_title(f"truth: {int(detected.sum())} of {parsing.num_branches} branches detected")
        axes[1].imshow(pred_image, interpolation="nearest")
        axes[1].set_title("prediction (airway component)")
        axes[0].legend(
            handles=[
                Patch(color=_COLOURS["detected"], label="detected"),
                Patch(color=_COLOURS["missed"], label="missed"),
            ],
            loc="lower right",
            fontsize=8,
        )
        axes[1].legend(
            handles=[
                Patch(color=_COLOURS["inside"], label="in truth"),
                Patch(color=_COLOURS["leakage"], label="leakage"),
                Patch(color=_COLOURS["ignored"], label="other blobs"),
            ],
            loc="lower right",
            fontsize=8,
        )
    else:  # empty truth: nothing to parse
        for panel, volume, name in ((axes[0], truth, "truth (empty)"), (axes[1], predicted, "prediction")):
            panel.imshow(np.flip(volume.max(axis=axis).T, axis=0), cmap="gray", interpolation="nearest")
            panel.set_title(name)
    for panel in axes:
        panel.set_axis_off()
    scores = "  ".join(f"{k.upper()} {v:.3f}" for k, v in summary.items() if k in ("iou", "dlr", "dbr"))
    fig.suptitle(f"{title}  {scores}".strip())
    save_figure(fig, path, dpi=90)
    return summary


class AirwayFigureSaver(CaseFigureSaver):
    """Evaluator handler: save :func:`draw_airway_projection` PNGs of the first ``max_cases`` cases.

    Reads the decollated evaluator output (a list of dicts with ``pred`` and ``label``; the image's metadata names the
    file ``airway_<case>.png``).

    Args:
        output_dir: the folder of the figures.
        max_cases: the number of cases drawn.
        pred_key: the prediction's key.
        label_key: the truth's key.
        image_key: the key whose metadata holds the file name.
        axis: the projection axis.
        crop_margin: the metrics' crop margin.
    """

    prefix = "airway"

    def __init__(
        self,
        output_dir: str,
        max_cases: int = 4,
        pred_key: str = "pred",
        label_key: str = "label",
        image_key: str = "image",
        axis: int = 1,
        crop_margin: int = 20,
    ) -> None:
        super().__init__(output_dir, max_cases, image_key=image_key, pred_key=pred_key, label_key=label_key)
        self.axis = axis
        self.crop_margin = crop_margin

    def draw(self, item: dict, path: Path, name: str) -> None:
        pred, label = item[self.pred_key], item[self.label_key]
        draw_airway_projection(pred, label, path, title=name, axis=self.axis, crop_margin=self.crop_margin)
