"""Tests of common.handlers.figures: contours drawn where the objects are (2D in PIL order, 3D), and the handler."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.axes
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from PIL import Image

from common.handlers import CaseFigureSaver, OverlayFigureSaver, draw_overlay
from common.handlers.figures import pyplot, save_figure

# PIL order (MONAI's PILReader): arrays are (W, H); a 30 pixel wide, 20 pixel high image
WIDTH, HEIGHT = 30, 20


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Record the figure and the arrays given to ``Axes.contour`` (per axes, in call order)."""
    record: dict = {"figures": [], "contours": []}
    real_subplots, real_contour = plt.subplots, matplotlib.axes.Axes.contour

    def subplots(*args, **kwargs):
        fig, axes = real_subplots(*args, **kwargs)
        record["figures"].append((fig, axes))
        return fig, axes

    def contour(self, z, *args, **kwargs):
        record["contours"].append((self, np.asarray(z), kwargs.get("colors")))
        return real_contour(self, z, *args, **kwargs)

    monkeypatch.setattr(plt, "subplots", subplots)
    monkeypatch.setattr(matplotlib.axes.Axes, "contour", contour)
    return record


def box_2d(x: slice, y: slice) -> np.ndarray:
    """(1, W, H) mask in PIL order with the object at columns ``x`` and rows ``y`` of the picture."""
    mask = np.zeros((1, WIDTH, HEIGHT), dtype=np.uint8)
    mask[0, x, y] = 1
    return mask


def coloured_centre(png: Path, colour: str) -> tuple[float, float]:
    """Mean (column, row) in figure pixels of the pixels drawn in pure red or lime green."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mask = (r > 200) & (g < 80) & (b < 80) if colour == "red" else (g > 200) & (r < 80) & (b < 80)
    rows, cols = np.nonzero(mask)
    assert rows.size > 0, f"no {colour} pixels in {png}"
    return float(cols.mean()), float(rows.mean())


def to_data(ax: matplotlib.axes.Axes, png: Path, column: float, row: float) -> tuple[float, float]:
    """Figure pixel (column, row) of the saved PNG -> (x, y) data coordinates of the panel ``ax``."""
    height = Image.open(png).height
    scale = 100 / ax.figure.dpi  # draw_overlay saves at dpi=100
    return tuple(ax.transData.inverted().transform((column / scale, (height - row) / scale)))


def test_2d_contours_land_on_the_objects(tmp_path: Path, drawn: dict) -> None:
    image = np.zeros((1, WIDTH, HEIGHT), dtype=np.float32)
    image[0, :, : HEIGHT // 2] = 1.0  # bright upper half of the picture
    pred = box_2d(slice(2, 7), slice(12, 17))  # left, lower part of the picture: x in 2..6, y in 12..16
    label = box_2d(slice(20, 27), slice(2, 5))  # right, upper part: x in 20..26, y in 2..4
    path = draw_overlay(torch.from_numpy(image), torch.from_numpy(label), pred, tmp_path / "sub" / "case.png")

    assert path == tmp_path / "sub" / "case.png" and path.is_file()
    ((fig, axes),) = drawn["figures"]
    assert axes.shape == (1, 1)
    ax = axes[0, 0]
    assert ax.images[0].get_array().shape == (HEIGHT, WIDTH)  # displayed as rows x columns
    (ax_truth, truth, truth_colour), (ax_pred, predicted, pred_colour) = drawn["contours"]
    assert ax_truth is ax_pred is ax and (truth_colour, pred_colour) == ("lime", "red")
    np.testing.assert_array_equal(predicted, pred[0].T > 0)
    np.testing.assert_array_equal(truth, label[0].T > 0)

    # read the PNG back: the red contour surrounds the predicted box, the green one the true box
    x, y = to_data(ax, path, *coloured_centre(path, "red"))
    assert x == pytest.approx(4.0, abs=1.0) and y == pytest.approx(14.0, abs=1.0)
    x, y = to_data(ax, path, *coloured_centre(path, "lime"))
    assert x == pytest.approx(23.0, abs=1.0) and y == pytest.approx(3.0, abs=1.0)


def test_2d_without_pil_order_draws_arrays_as_they_are(tmp_path: Path, drawn: dict) -> None:
    pred = np.zeros((1, HEIGHT, WIDTH), dtype=np.uint8)
    pred[0, 12:17, 2:7] = 1
    path = draw_overlay(
        np.random.default_rng(0).random((1, HEIGHT, WIDTH)), None, pred, tmp_path / "a.png", pil_order=False
    )
    ((ax, predicted, _),) = drawn["contours"]
    np.testing.assert_array_equal(predicted, pred[0] > 0)
    x, y = to_data(ax, path, *coloured_centre(path, "red"))
    assert x == pytest.approx(4.0, abs=1.0) and y == pytest.approx(14.0, abs=1.0)


def test_2d_rgb_image_and_one_hot_prediction(tmp_path: Path, drawn: dict) -> None:
    image = np.random.default_rng(0).random((3, WIDTH, HEIGHT))
    index = box_2d(slice(2, 7), slice(12, 17))[0]
    one_hot = np.stack([1 - index, index])  # (2, W, H): background, foreground
    draw_overlay(image, None, one_hot, tmp_path / "rgb.png", title="rgb")
    ((fig, axes),) = drawn["figures"]
    assert axes[0, 0].images[0].get_array().shape == (HEIGHT, WIDTH, 3)
    ((_, predicted, _),) = drawn["contours"]
    np.testing.assert_array_equal(predicted, index.T > 0)
    assert fig._suptitle.get_text() == "rgb  (green: truth, red: prediction)"


def test_3d_three_slices_through_the_truth(tmp_path: Path, drawn: dict) -> None:
    shape = (8, 10, 12)
    truth = np.zeros((1, *shape), dtype=np.uint8)
    truth[0, 2:5, 3:6, 4:9] = 1  # centre (3, 4, 6)
    pred = np.zeros_like(truth)
    pred[0, 1:6, 2:7, 3:10] = 1
    image = torch.rand(1, *shape)
    path = draw_overlay(image, truth, pred, tmp_path / "vol.png")

    assert Image.open(path).size == (3 * 450, 450)
    ((fig, axes),) = drawn["figures"]
    assert axes.shape == (1, 3)
    panels = [ax.images[0].get_array().shape for ax in axes[0]]
    assert panels == [(10, 12), (8, 12), (8, 10)]
    truths = [z for ax, z, colour in drawn["contours"] if colour == "lime"]
    preds = [z for ax, z, colour in drawn["contours"] if colour == "red"]
    expected_truths = [truth[0, 3], truth[0, :, 4], truth[0, :, :, 6]]
    expected_preds = [pred[0, 3], pred[0, :, 4], pred[0, :, :, 6]]
    for actual, expected in zip(truths + preds, expected_truths + expected_preds, strict=True):
        np.testing.assert_array_equal(actual, expected > 0)


def test_3d_without_truth_centres_on_the_prediction(tmp_path: Path, drawn: dict) -> None:
    pred = np.zeros((1, 8, 10, 12), dtype=np.uint8)
    pred[0, 5:8, 1:2, 9:12] = 1  # centre (6, 1, 10)
    draw_overlay(torch.zeros(1, 8, 10, 12), None, pred, tmp_path / "vol.png")
    preds = [z for _, z, _ in drawn["contours"]]
    assert len(preds) == 3
    for actual, expected in zip(preds, [pred[0, 6], pred[0, :, 1], pred[0, :, :, 10]], strict=True):
        np.testing.assert_array_equal(actual, expected > 0)


def test_empty_prediction_draws_no_contour(tmp_path: Path, drawn: dict) -> None:
    path = draw_overlay(np.ones((1, 6, 5)), None, np.zeros((1, 6, 5)), tmp_path / "empty.png")
    assert path.is_file() and drawn["contours"] == []


@pytest.mark.parametrize("spatial", [(16,), (4, 4, 4, 4)])
def test_invalid_dimensions(tmp_path: Path, spatial: tuple) -> None:
    with pytest.raises(ValueError, match="2D or 3D"):
        draw_overlay(np.zeros((1, *spatial)), None, np.zeros((1, *spatial)), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def case(name: str | None, with_label: bool = True) -> dict:
    image = torch.rand(1, 12, 10)
    pred = torch.zeros(1, 12, 10)
    pred[0, 3:7, 2:5] = 1
    item = {"image": MetaTensor(image, meta={"filename_or_obj": name}) if name else image, "pred": pred}
    if with_label:
        item["label"] = pred.clone()
    return item


def test_overlay_saver_writes_at_most_max_cases(tmp_path: Path) -> None:
    batches = [
        [case("/data/images/case_01.nii.gz"), case("/data/images/case_02.png", with_label=False)],
        [case("/data/images/case_03.jpg"), case("/data/images/case_04.jpg")],
        [case("/data/images/case_05.jpg")],
    ]
    evaluator = Engine(lambda engine, batch: batch)
    saver = OverlayFigureSaver(str(tmp_path / "figures"), max_cases=3)
    saver.attach(evaluator)
    evaluator.run(batches)
    names = ["overlay_case_01.png", "overlay_case_02.png", "overlay_case_03.png"]
    assert saver.written == [tmp_path / "figures" / n for n in names]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == names
    assert all(Image.open(p).format == "PNG" for p in saver.written)

    evaluator.run(batches)  # a second evaluation starts counting again
    assert len(saver.written) == 3


def test_overlay_saver_single_dict_output_and_unnamed_cases(tmp_path: Path) -> None:
    evaluator = Engine(lambda engine, batch: batch)
    saver = OverlayFigureSaver(str(tmp_path), max_cases=6, pil_order=False)
    saver.attach(evaluator)
    evaluator.run([case(None), case(None)])
    assert [p.name for p in saver.written] == ["overlay_case0.png", "overlay_case1.png"]


def test_overlay_saver_zero_and_negative_cases(tmp_path: Path) -> None:
    evaluator = Engine(lambda engine, batch: batch)
    saver = OverlayFigureSaver(str(tmp_path / "none"), max_cases=0)
    saver.attach(evaluator)
    evaluator.run([[case("/x/a.png")]])
    assert saver.written == [] and not (tmp_path / "none").exists()
    with pytest.raises(ValueError, match="max_cases"):
        OverlayFigureSaver(str(tmp_path), max_cases=-1)


def test_overlay_saver_names_cases_by_folder_when_files_share_a_name(tmp_path: Path) -> None:
    """The LA layout has one folder per case and the same file name in each: the folder tells the cases apart."""
    evaluator = Engine(lambda engine, batch: batch)
    saver = OverlayFigureSaver(str(tmp_path), max_cases=6, name_with_folder=True)
    saver.attach(evaluator)
    evaluator.run([[case("/LA/2018LA_Seg_Training Set/0RZDK210/mri_norm2.h5"), case("/LA/set/1D7CUD19/mri_norm2.h5")]])
    assert [p.name for p in saver.written] == ["overlay_0RZDK210_mri_norm2.png", "overlay_1D7CUD19_mri_norm2.png"]
    assert len(list(tmp_path.glob("*.png"))) == 2


def test_case_figure_saver_base_names_cases_and_delegates_drawing(tmp_path: Path) -> None:
    """A subclass only draws; naming (from the image, else the prediction's metadata) and counting are the base's."""

    class Recorder(CaseFigureSaver):
        prefix = "rec"

        def draw(self, item: dict, path: Path, name: str) -> None:
            self.drawn.append((name, float(item["pred"].sum())))

    saver = Recorder(str(tmp_path), max_cases=2)
    saver.drawn = []
    evaluator = Engine(lambda engine, batch: batch)
    saver.attach(evaluator)
    pred = MetaTensor(torch.ones(1, 4, 4), meta={"filename_or_obj": "/d/from_pred.nii.gz"})
    evaluator.run([[{"pred": pred}, case("/d/from_image.png"), case("/d/third.png")]])
    assert [n for n, _ in saver.drawn] == ["from_pred", "from_image"]
    assert saver.drawn[0][1] == 16.0
    assert [p.name for p in saver.written] == ["rec_from_pred.png", "rec_from_image.png"]
    with pytest.raises(NotImplementedError):
        CaseFigureSaver(str(tmp_path)).draw({}, tmp_path / "x.png", "x")


def test_save_figure_creates_folders_writes_the_dpi_and_closes(tmp_path) -> None:
    assert pyplot() is plt and plt.get_backend().lower() == "agg"
    fig = plt.figure(figsize=(2, 1))
    path = save_figure(fig, tmp_path / "a" / "b" / "f.png", dpi=50)
    assert path == tmp_path / "a" / "b" / "f.png" and path.is_file()
    assert not plt.fignum_exists(fig.number)  # closed: a long evaluation does not pile up open figures
    with open(path, "rb") as png:
        header = png.read(24)
    assert (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")) == (100, 50)  # 2x1 in at 50
