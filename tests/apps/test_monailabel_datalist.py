"""Tests of apps/monailabel/lib/datalist.py: datastore labels of every format, datalists and training overrides.

The module runs in MONAI Label's environment; it needs no MONAI Label, so it is tested here. The bundles' own
training pipelines (``train#dataset`` of ``dfcps`` and ``ugmcl``, from the repository's configs, whose ids the exports
keep) read what it writes: the NRRD label that crashed the dataset and the 0/1 PNG that trained on empty masks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import h5py
import itk
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import ITKWriter
from monai.transforms import LoadImage
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
MODULE = "leb_monailabel_app_datalist"
_spec = importlib.util.spec_from_file_location(MODULE, ROOT / "apps" / "monailabel" / "lib" / "datalist.py")
datalist = importlib.util.module_from_spec(_spec)
sys.modules[MODULE] = datalist  # the network override names the module (as lib.datalist in the app)
_spec.loader.exec_module(datalist)

W, H = 12, 7  # not square: a transposed label would have the other shape


def _mask(shape=(W, H)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[2:6, 1:4] = 1
    mask[9, 5] = 1
    return mask


def _png(path: Path, array_wh: np.ndarray) -> Path:
    """A PNG that MONAI's PILReader reads as ``array_wh`` (``(width, height)``)."""
    Image.fromarray(np.ascontiguousarray(array_wh.T.astype(np.uint8))).save(path)
    return path


def _rgb_png(path: Path, size=(W, H)) -> Path:
    Image.fromarray(np.full((size[1], size[0], 3), 90, dtype=np.uint8)).save(path)
    return path


def _itk(path: Path, array: np.ndarray, affine=None) -> Path:
    """An NRRD as MONAI Label writes one: array axes reversed for ITK (x first); a 3D one with its affine."""
    if affine is None:
        itk.imwrite(itk.image_from_array(np.ascontiguousarray(array.T.astype(np.uint8))), str(path))
        return path
    writer = ITKWriter(output_dtype=np.uint8)
    writer.set_data_array(array, channel_dim=None)
    writer.set_metadata({"affine": affine})
    writer.write(str(path))
    return path


def _pil_read(path: Path) -> np.ndarray:
    return np.asarray(LoadImage(image_only=True, reader="PILReader")(str(path)))


# ---------------------------------------------------------------------------------------------- label_indices
def test_label_indices_drop_the_singleton_axis_of_2d_labels_without_transposing() -> None:
    mask = _mask()
    for slab in (mask[None], mask[..., None], mask[None, ..., None]):
        out = datalist.label_indices(slab, (W, H), 1)
        assert out.shape == (W, H) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, mask)


def test_label_indices_keep_01_labels_and_threshold_8bit_masks_at_half_their_maximum() -> None:
    mask = _mask()
    np.testing.assert_array_equal(datalist.label_indices(mask, (W, H), 1), mask)  # not emptied by a 128 threshold
    noisy = np.where(mask, 250, 3).astype(np.uint8)  # a JPEG-compressed 0/255 mask
    noisy[0, 0] = 255
    expected = mask.copy()
    expected[0, 0] = 1
    np.testing.assert_array_equal(datalist.label_indices(noisy, (W, H), 1), expected)  # 3 is background


def test_label_indices_reduce_colour_masks_over_rgb_not_alpha() -> None:
    mask = _mask()
    rgba = np.zeros((W, H, 4), dtype=np.uint8)
    rgba[..., 0] = mask * 255
    rgba[..., 3] = 255  # opaque everywhere: alpha must not read as foreground
    np.testing.assert_array_equal(datalist.label_indices(rgba, (W, H), 1), mask)


def test_label_indices_keep_multi_label_indices_and_refuse_what_is_not_one() -> None:
    labels = _mask() * 2
    labels[0, :] = 1
    np.testing.assert_array_equal(datalist.label_indices(labels, (W, H), 2), labels)
    np.testing.assert_array_equal(datalist.label_indices(labels, (W, H), 1), labels > 0)
    with pytest.raises(ValueError, match="not label indices"):
        datalist.label_indices(labels * 100, (W, H), 2)


def test_label_indices_refuse_a_transposed_label() -> None:
    with pytest.raises(ValueError, match=r"shape \(7, 12\) does not fit its image of spatial shape \(12, 7\)"):
        datalist.label_indices(_mask().T, (W, H), 1, name="x.png")


# ---------------------------------------------------------------------------------------------- normalise_label
def test_image_spatial_shape_is_monai_readers_order(tmp_path: Path) -> None:
    image = _rgb_png(tmp_path / "a.jpg")
    assert datalist.image_spatial_shape(image, 2) == (W, H) == LoadImage(image_only=True)(str(image)).shape[:2]
    with h5py.File(tmp_path / "v.h5", "w") as h5:
        h5["image"] = np.zeros((9, 8, 5), dtype=np.float32)
    assert datalist.image_spatial_shape(tmp_path / "v.h5", 3) == (9, 8, 5)


@pytest.mark.parametrize("form", ["nrrd_slab", "nrrd_2d", "png01", "png255", "nifti_slab"])
def test_2d_labels_of_every_format_become_the_png_the_bundle_reads(tmp_path: Path, form: str) -> None:
    image = _rgb_png(tmp_path / "case.jpg")
    mask = _mask()
    if form == "nrrd_slab":  # what MONAI Label 0.8.5 wrote for a 2D image before this app: 1 x W x H
        label = _itk(tmp_path / "case.nrrd", mask[None])
    elif form == "nrrd_2d":
        label = _itk(tmp_path / "case.nrrd", mask)
    elif form == "png01":
        label = _png(tmp_path / "case.png", mask)
    elif form == "png255":
        label = _png(tmp_path / "case.png", mask * 255)
    else:
        label = tmp_path / "case.nii.gz"
        nib.save(nib.Nifti1Image(mask[..., None], np.eye(4)), label)
    out = datalist.normalise_label(label, image, tmp_path / "labels", "case", dimension=2)
    assert out == tmp_path / "labels" / "case.png"
    np.testing.assert_array_equal(_pil_read(out), mask)  # what the bundles' PILReader gives, 0/1


def test_3d_labels_keep_array_and_affine(tmp_path: Path) -> None:
    volume = np.zeros((9, 8, 5), dtype=np.uint8)
    volume[2:5, 3:7, 1:3] = 1
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    affine[:3, 3] = [4.0, -3.0, 10.0]
    image = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), image)
    label = _itk(tmp_path / "label.nrrd", volume, affine)  # as 3D Slicer saves a segmentation
    out = datalist.normalise_label(label, image, tmp_path / "labels", "case", dimension=3)
    read = LoadImage(image_only=True)(str(out))
    np.testing.assert_array_equal(np.asarray(read), volume)
    np.testing.assert_allclose(np.asarray(read.affine), affine, atol=1e-5)


def test_normalised_label_keeps_the_source_time_and_follows_a_changed_source(tmp_path: Path) -> None:
    image = _rgb_png(tmp_path / "case.jpg")
    label = _png(tmp_path / "case.png", _mask())
    os.utime(label, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    out = datalist.normalise_label(label, image, tmp_path / "labels", "case", dimension=2)
    assert out.stat().st_mtime_ns == label.stat().st_mtime_ns
    inode = out.stat().st_ino
    assert datalist.normalise_label(label, image, tmp_path / "labels", "case", 2).stat().st_ino == inode  # kept
    changed = _mask()
    changed[:] = 0
    changed[0, 0] = 1
    _png(label, changed)
    out = datalist.normalise_label(label, image, tmp_path / "labels", "case", dimension=2)
    np.testing.assert_array_equal(_pil_read(out), changed)


# ---------------------------------------------------------------------------------------------- datalists
def test_split_labeled_shares_cases_when_too_few_and_draws_validation_otherwise() -> None:
    two = [{"id": "b"}, {"id": "a"}]
    training, validation = datalist.split_labeled(two, 0.2)
    assert [c["id"] for c in training] == [c["id"] for c in validation] == ["a", "b"]
    five = [{"id": f"c{i}"} for i in range(5)]
    training, validation = datalist.split_labeled(five, 0.2, seed=3)
    assert len(validation) == 1 and len(training) == 4  # round(0.2 * 5) = 1
    assert not {c["id"] for c in training} & {c["id"] for c in validation}
    assert datalist.split_labeled(list(reversed(five)), 0.2, seed=3) == (training, validation)  # order-free
    ten = [{"id": f"c{i}"} for i in range(10)]
    assert len(datalist.split_labeled(ten, 0.25)[1]) == 3  # 2.5 rounds half up
    assert datalist.split_labeled(five, 0.0)[1] == datalist.split_labeled(five, 0.0)[0]


def test_build_datalist_puts_unlabeled_studies_in_the_unlabeled_list(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    images = {i: _rgb_png(studies / f"{i}.jpg") for i in ("s0", "s1", "s2", "s3")}
    labels = {i: _png(tmp_path / f"{i}.png", _mask() * 255) for i in ("s1", "s3")}
    d = datalist.build_datalist(
        [{"id": i, "image": str(images[i]), "label": str(labels[i])} for i in ("s3", "s1")],
        [{"id": i, "image": str(images[i])} for i in ("s2", "s0")],
        tmp_path / "work",
        dimension=2,
    )
    assert [c["id"] for c in d["training"]] == ["s1", "s3"] and d["validation"] == d["training"]
    assert d["unlabeled"] == [{"id": "s0", "image": str(images["s0"])}, {"id": "s2", "image": str(images["s2"])}]
    assert d["test"] == []
    assert all(Path(c["label"]).parent == tmp_path / "work" / "labels" for c in d["training"])
    assert json.loads((tmp_path / "work" / "datalist.json").read_text()) == d
    with pytest.raises(ValueError, match="no labeled study"):
        datalist.build_datalist([], [{"id": "s0", "image": str(images["s0"])}], tmp_path / "work", 2)


def test_fit_batch_sizes() -> None:
    assert datalist.fit_batch_sizes(4, 2, num_labeled=2, num_unlabeled=3) == {}
    assert datalist.fit_batch_sizes(4, 2, num_labeled=1, num_unlabeled=5) == {"labeled_batch_size": 1, "batch_size": 3}
    assert datalist.fit_batch_sizes(16, 8, num_labeled=2, num_unlabeled=3) == {"labeled_batch_size": 2, "batch_size": 5}
    assert datalist.fit_batch_sizes(4, 2, num_labeled=3, num_unlabeled=1) == {"batch_size": 3}
    assert datalist.fit_batch_sizes(8, None, num_labeled=3, num_unlabeled=0) == {"batch_size": 3}
    assert datalist.fit_batch_sizes(2, None, num_labeled=3, num_unlabeled=0) == {}


def test_fit_val_interval_validates_within_the_requested_epochs() -> None:
    assert datalist.fit_val_interval(5, 1) == 1
    assert datalist.fit_val_interval(5, 3) == 3
    assert datalist.fit_val_interval(5, 12) == 5
    assert datalist.fit_val_interval(1, 4) == 1


def _checkpoint(path: Path, iteration: int, epoch_length: int = 3, max_epochs: int = 2) -> Path:
    state = {"iteration": iteration, "epoch_length": epoch_length, "max_epochs": max_epochs}
    torch.save({"trainer": state, "network": {}}, path)
    return path


def test_finished_run_reads_the_newest_interval_checkpoint(tmp_path: Path) -> None:
    assert datalist.finished_run(tmp_path) is None
    _checkpoint(tmp_path / "checkpoint_epoch=10.pt", iteration=6)  # 6 = 3 x 2: finished
    _checkpoint(tmp_path / "checkpoint_epoch=9.pt", iteration=2)
    assert datalist.finished_run(tmp_path) == tmp_path / "checkpoint_epoch=10.pt"  # by step, not by name
    _checkpoint(tmp_path / "checkpoint_epoch=10.pt", iteration=5)
    assert datalist.finished_run(tmp_path) is None  # interrupted: the bundle resumes it


def test_network_with_weights_loads_strictly(tmp_path: Path) -> None:
    source = torch.nn.Linear(3, 2)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    torch.save({"model": source.state_dict()}, tmp_path / "wrapped.pt")
    for name in ("model.pt", "wrapped.pt"):
        loaded = datalist.network_with_weights(torch.nn.Linear(3, 2), str(tmp_path / name), "cpu")
        torch.testing.assert_close(loaded.weight, source.weight)
    with pytest.raises(RuntimeError, match="size mismatch"):
        datalist.network_with_weights(torch.nn.Linear(4, 2), str(tmp_path / "model.pt"))


# ---------------------------------------------------------------------------------------------- the bundles read it
def _parser(bundle: str, root: Path, overlays=("quick.json",)) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(ROOT / "bundles" / bundle / "configs" / n) for n in ("train.json", *overlays)])
    parser["bundle_root"] = str(root)
    return parser


def _apply(parser: ConfigParser, overrides: dict) -> ConfigParser:
    for key, value in overrides.items():
        parser[key] = value
    return parser


def test_dfcps_trains_on_datastore_png_and_nrrd_labels_and_unlabeled_studies(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    images = {i: _rgb_png(studies / f"{i}.png") for i in ("a", "b", "c", "d", "e")}
    labels = {"a": _png(tmp_path / "a.png", _mask()), "b": _itk(tmp_path / "b.nrrd", _mask()[None])}
    d = datalist.build_datalist(
        [{"id": i, "image": str(images[i]), "label": str(labels[i])} for i in labels],
        [{"id": i, "image": str(images[i])} for i in ("c", "d", "e")],
        tmp_path / "work",
        dimension=2,
    )
    parser = _parser("dfcps", tmp_path)
    overrides = datalist.train_overrides(parser, d, max_epochs=1, dimension=2, dataset_dir=str(studies))
    assert overrides["label_threshold"] == 1 and "label_reader" not in overrides  # the PNG mask reader stays
    assert overrides["progress_bar"] is False and overrides["val_interval"] == 1
    _apply(parser, overrides)
    labeled = parser.get_parsed_content("train#dataset")
    for item in labeled:
        assert item["label"].sum() > 0  # the 0/1 PNG and the 1 x W x H NRRD slab are foreground, not empty
    assert len(labeled) == 2
    assert len(parser.get_parsed_content("train#unlabeled_dataset")) == 3
    assert int(parser.get_parsed_content("epoch_length")) == 4  # quick.json's; 2 labeled per batch fit
    loader = parser.get_parsed_content("train#dataloader")
    batch = next(iter(loader))
    assert batch["image"].shape[0] == 4 and batch["label"].shape[0] == 2  # 2 labeled + 2 unlabeled


def test_ugmcl_trains_on_hdf5_studies_with_nrrd_labels(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    rng = np.random.default_rng(0)
    images = {}
    for i in ("a", "b", "c"):
        images[i] = studies / f"{i}.h5"
        with h5py.File(images[i], "w") as h5:
            h5["image"] = rng.normal(size=(40, 36, 20)).astype(np.float32)
    volume = np.zeros((40, 36, 20), dtype=np.uint8)
    volume[10:30, 8:20, 4:12] = 1
    label = _itk(tmp_path / "a.nrrd", volume, np.diag([0.625, 0.625, 0.625, 1.0]))
    d = datalist.build_datalist(
        [{"id": "a", "image": str(images["a"]), "label": str(label)}],
        [{"id": i, "image": str(images[i])} for i in ("b", "c")],
        tmp_path / "work",
        dimension=3,
    )
    models = tmp_path / "models"
    models.mkdir()
    _checkpoint(models / "checkpoint_epoch=2.pt", iteration=12, epoch_length=6, max_epochs=2)
    network = _parser("ugmcl", tmp_path).get_parsed_content("network_def")
    torch.save(network.state_dict(), tmp_path / "start.pt")
    parser = _parser("ugmcl", tmp_path)
    overrides = datalist.train_overrides(parser, d, max_epochs=1, dimension=3, start_weights=str(tmp_path / "start.pt"))
    assert overrides["label_reader"] is None and overrides["resume"] is False  # a finished run: train again
    assert overrides["labeled_batch_size"] == 1 and overrides["batch_size"] == 3  # 1 labeled + 2 unlabeled
    assert overrides["network"]["_target_"] == f"{MODULE}.network_with_weights"
    _apply(parser, overrides)
    item = parser.get_parsed_content("validate#dataset")[0]
    np.testing.assert_array_equal(np.asarray(item["label"][0]), volume)  # the NRRD label in the H5 image's order
    assert item["image"].shape == (1, 40, 36, 20)
    torch.testing.assert_close(parser.get_parsed_content("network").state_dict(), network.state_dict())


def test_dmgsa_validates_within_a_one_epoch_request(tmp_path: Path) -> None:
    parser = _parser("dmgsa", tmp_path, overlays=())
    d = {"training": [{"id": "a"}], "unlabeled": [], "validation": [{"id": "a"}], "test": []}
    overrides = datalist.train_overrides(parser, d, max_epochs=1, dimension=3)
    assert parser.get_parsed_content("val_interval") == 5 and overrides["val_interval"] == 1
    assert overrides["batch_size"] == 1 and "include_labeled_as_unlabeled" not in overrides  # supervised


def test_semi_supervised_bundle_without_unlabeled_studies_uses_the_labeled_ones(tmp_path: Path) -> None:
    d = {"training": [{"id": "a"}, {"id": "b"}], "unlabeled": [], "validation": [{"id": "a"}], "test": []}
    overrides = datalist.train_overrides(_parser("asenet", tmp_path), d, max_epochs=2, dimension=3)
    assert overrides["include_labeled_as_unlabeled"] is True
    assert "batch_size" not in overrides and "labeled_batch_size" not in overrides  # 2 + 2 of 2 cases fit
