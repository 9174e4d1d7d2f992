"""Figures people would rather look at than numbers: prediction overlays written as PNG by an evaluator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["CaseFigureSaver", "OverlayFigureSaver", "draw_overlay", "pyplot", "save_figure"]

logger = logging.getLogger(__name__)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend: figures go to files, a training machine has no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int) -> Path:
    """Lay out ``fig``, write it to ``path`` (its folders created) at ``dpi`` dots per inch, and close it.

    Returns:
        the path written.
    """
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def _to_index(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, *spatial) one-hot or (1, *spatial) index map -> (*spatial) index map."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return x.argmax(0) if x.shape[0] > 1 else x[0]


def _display_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, *spatial) intensities of any range -> (*spatial, 3) or (*spatial) in [0, 1] for display."""
    x = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, dtype=float)
    lo, hi = np.percentile(x, (0.5, 99.5))
    x = np.clip((x - lo) / max(hi - lo, 1e-8), 0, 1)
    return np.moveaxis(x[:3], 0, -1) if x.shape[0] >= 3 else x[0]


def draw_overlay(
    image: torch.Tensor | np.ndarray,
    label: torch.Tensor | np.ndarray | None,
    pred: torch.Tensor | np.ndarray,
    path: str | Path,
    title: str = "",
    pil_order: bool = True,
) -> Path:
    """Draw truth (green) and prediction (red) contours over the image and save a PNG.

    2D inputs are drawn as one panel; 3D inputs as three orthogonal slices through the centre of the truth (or of
    the prediction when there is no truth).

    Args:
        image: (C, *spatial) image, any intensity range (scaled by percentiles for display).
        label: (N, *spatial) one-hot or (1, *spatial) index truth, or None.
        pred: (N, *spatial) one-hot or (1, *spatial) index prediction.
        path: output PNG file.
        title: figure title.
        pil_order: 2D arrays loaded by MONAI's PILReader are (W, H); transpose them back for display.

    Returns:
        the path written.
    """
    plt = pyplot()
    shown = _display_image(image)
    truth = None if label is None else _to_index(label)
    predicted = _to_index(pred)
    spatial = predicted.shape
    if len(spatial) == 2:
        if pil_order:
            shown = np.swapaxes(shown, 0, 1)
            predicted = predicted.T
            truth = None if truth is None else truth.T
        panels = [(shown, truth, predicted)]
    elif len(spatial) == 3:
        ref = truth if truth is not None and truth.any() else predicted
        centre = [int(round(c.mean())) if c.size else s // 2 for c, s in zip(np.nonzero(ref), spatial)]
        panels = []
        for axis in range(3):
            take = lambda a, ax=axis: np.take(a, centre[ax], axis=ax)  # noqa: E731
            panels.append((take(shown), None if truth is None else take(truth), take(predicted)))
    else:
        raise ValueError(f"draw_overlay expects 2D or 3D data, got spatial shape {spatial}.")

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    for ax, (img, gt, pr) in zip(axes[0], panels):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        if gt is not None and gt.any():
            ax.contour(gt > 0, levels=[0.5], colors="lime", linewidths=1.2)
        if pr.any():
            ax.contour(pr > 0, levels=[0.5], colors="red", linewidths=1.2)
        ax.set_axis_off()
    fig.suptitle(f"{title}  (green: truth, red: prediction)" if title else "green: truth, red: prediction")
    return save_figure(fig, path, dpi=100)


class CaseFigureSaver:
    """Evaluator handler base: save one PNG for each of the first ``max_cases`` cases of a run.

    Reads the decollated evaluator output (a list of dicts); the file is ``<prefix>_<case>.png``, ``<case>`` being the
    input file's name without extensions (from the metadata of ``image_key``, else of ``pred_key``). Subclasses draw.

    Args:
        output_dir: folder of the figures.
        max_cases: number of cases drawn.
        image_key: key whose metadata names the case.
        pred_key: key of the prediction.
        label_key: key of the truth.
        name_with_folder: prefix the case name with the input's folder name (``<prefix>_<folder>_<file>.png``), for
            layouts with one folder per case whose files share a name (the LA benchmark's ``<case>/mri_norm2.h5``).
    """

    main_process_only = True
    prefix = "case"

    def __init__(
        self,
        output_dir: str,
        max_cases: int = 6,
        image_key: str = "image",
        pred_key: str = "pred",
        label_key: str = "label",
        name_with_folder: bool = False,
    ) -> None:
        if max_cases < 0:
            raise ValueError(f"max_cases must be >= 0, got {max_cases}.")
        self.output_dir = Path(output_dir)
        self.max_cases = max_cases
        self.image_key, self.pred_key, self.label_key = image_key, pred_key, label_key
        self.name_with_folder = name_with_folder
        self.written: list[Path] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.written.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def case_name(self, item: dict) -> str:
        """The case's name from the metadata of its image (or prediction)."""
        meta = getattr(item.get(self.image_key), "meta", None) or getattr(item[self.pred_key], "meta", {})
        source = Path(str(meta.get("filename_or_obj", f"case{len(self.written)}")))
        name = source.name.split(".")[0]
        return f"{source.parent.name}_{name}" if self.name_with_folder and source.parent.name else name

    def draw(self, item: dict, path: Path, name: str) -> None:
        """Draw ``item`` (one decollated output) into the PNG ``path``."""
        raise NotImplementedError

    def __call__(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for item in outputs:
            if len(self.written) >= self.max_cases:
                return
            name = self.case_name(item)
            path = self.output_dir / f"{self.prefix}_{name}.png"
            self.draw(item, path, name)
            self.written.append(path)
        if len(self.written) == self.max_cases:
            logger.info(f"wrote {len(self.written)} {self.prefix} figures to {self.output_dir}")


class OverlayFigureSaver(CaseFigureSaver):
    """Evaluator handler: save overlay PNGs (truth and prediction contours) of the first ``max_cases`` cases.

    Reads the decollated evaluator output (a list of dicts with ``image``, ``pred`` and optionally ``label``,
    already inverted to the original image grid by the postprocessing). Files are ``overlay_<case>.png``.

    Args:
        output_dir: folder for ``overlay_<case>.png``.
        max_cases: number of cases to draw.
        image_key: key of the image in the output dicts.
        pred_key: key of the prediction.
        label_key: key of the truth (skipped when absent).
        pil_order: see :func:`draw_overlay`.
        name_with_folder: see :class:`CaseFigureSaver`.
    """

    prefix = "overlay"

    def __init__(
        self,
        output_dir: str,
        max_cases: int = 6,
        image_key: str = "image",
        pred_key: str = "pred",
        label_key: str = "label",
        pil_order: bool = True,
        name_with_folder: bool = False,
    ) -> None:
        super().__init__(output_dir, max_cases, image_key, pred_key, label_key, name_with_folder)
        self.pil_order = pil_order

    def draw(self, item: dict, path: Path, name: str) -> None:
        label, pred = item.get(self.label_key), item[self.pred_key]
        draw_overlay(item[self.image_key], label, pred, path, title=name, pil_order=self.pil_order)
