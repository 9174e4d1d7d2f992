"""Tests of common.transforms.masks: channel union and threshold, metadata kept, MONAI loading of real-layout masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.data.image_reader import PILReader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from PIL import Image

from common.transforms import BinaryMask, BinaryMaskd, single_channel_mask


def lesion_mask(height: int = 20, width: int = 30) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[3:9, 4:14] = True
    return mask


def test_rgb_jpeg_like_mask_with_noise() -> None:
    mask = lesion_mask()
    rng = np.random.default_rng(0)
    raw = np.where(mask, 255, 0)[None].repeat(3, axis=0).astype(np.int16)
    raw += rng.integers(-40, 41, raw.shape).astype(np.int16)
    raw = raw.clip(0, 255).astype(np.uint8)  # (3, H, W) values near 0 and 255, like a lossy JPEG mask
    output = BinaryMask()(raw)
    assert isinstance(output, np.ndarray) and output.dtype == np.float32 and output.shape == (1, 20, 30)
    np.testing.assert_array_equal(output[0], mask.astype(np.float32))


def test_union_of_stacked_mask_files_keeps_metadata() -> None:
    first, second = lesion_mask(), np.zeros((20, 30), dtype=bool)
    second[12:18, 20:28] = True
    stacked = MetaTensor(
        torch.from_numpy(np.stack([first, second]).astype(np.uint8) * 255),
        affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])),
        meta={"filename_or_obj": "benign (2)_mask.png"},
    )
    output = BinaryMask()(stacked)
    assert isinstance(output, MetaTensor) and output.dtype == torch.float32 and output.shape == (1, 20, 30)
    assert output.meta["filename_or_obj"] == "benign (2)_mask.png"
    assert torch.equal(output.affine, stacked.affine)
    np.testing.assert_array_equal(output[0].numpy(), (first | second).astype(np.float32))


def test_threshold_and_bool_input() -> None:
    raw = torch.tensor([[[0, 1, 127, 128, 200]]], dtype=torch.uint8)
    assert BinaryMask()(raw).tolist() == [[[0.0, 0.0, 0.0, 1.0, 1.0]]]
    assert BinaryMask(threshold=1)(raw).tolist() == [[[0.0, 1.0, 1.0, 1.0, 1.0]]]
    assert BinaryMask()(torch.tensor([[[True, False]]])).tolist() == [[[1.0, 0.0]]]
    with pytest.raises(ValueError, match="channel-first"):
        BinaryMask()(torch.zeros(5))


def test_dictionary_version() -> None:
    data = {"image": np.ones((3, 4, 4), np.float32), "label": np.full((2, 4, 4), 200, np.uint8)}
    output = BinaryMaskd(keys="label")(data)
    assert output["image"] is data["image"]
    assert output["label"].shape == (1, 4, 4) and output["label"].min() == 1.0
    assert BinaryMaskd(keys="other", allow_missing_keys=True)(data).keys() == data.keys()


def write_rgb(path: Path, height: int = 20, width: int = 30) -> None:
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def test_monai_loads_a_busi_case_with_two_mask_files_as_their_union(tmp_path: Path) -> None:
    """MONAI's PILReader stacks a list of grey files along a new first (channel) axis: (2, W, H)."""
    first, second = lesion_mask(), np.zeros((20, 30), dtype=bool)
    second[12:18, 20:28] = True
    write_rgb(tmp_path / "benign (2).png")
    Image.fromarray(first.astype(np.uint8) * 255).save(tmp_path / "benign (2)_mask.png")
    Image.fromarray(second.astype(np.uint8) * 255).save(tmp_path / "benign (2)_mask_1.png")
    case = {
        "image": str(tmp_path / "benign (2).png"),
        "label": [str(tmp_path / "benign (2)_mask.png"), str(tmp_path / "benign (2)_mask_1.png")],
    }
    loaded = Compose([LoadImaged(keys=["image", "label"], reader="PILReader", image_only=True)])(case)
    assert tuple(loaded["label"].shape) == (2, 30, 20)  # stacked along channels; PIL's (W, H) order

    pipeline = Compose(
        [
            LoadImaged(keys=["image", "label"], reader="PILReader", image_only=True),
            EnsureChannelFirstd(keys=["image", "label"]),
            BinaryMaskd(keys="label"),
        ]
    )
    output = pipeline(case)
    assert tuple(output["image"].shape) == (3, 30, 20)
    assert tuple(output["label"].shape) == (1, 30, 20)
    np.testing.assert_array_equal(output["label"][0].numpy(), (first | second).T.astype(np.float32))


def test_mixed_mode_mask_files_need_the_single_channel_converter(tmp_path: Path) -> None:
    """A grey and an RGBA mask file do not stack as they are; the converter makes them stackable, alpha ignored."""
    first, second = lesion_mask(), np.zeros((20, 30), dtype=bool)
    second[12:18, 20:28] = True
    write_rgb(tmp_path / "image.png")
    Image.fromarray(first.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[second, :3] = 255
    rgba[..., 3] = 255  # opaque everywhere: counted as foreground if alpha were kept
    Image.fromarray(rgba).save(tmp_path / "mask_1.png")
    case = {"image": str(tmp_path / "image.png"), "label": [str(tmp_path / "mask.png"), str(tmp_path / "mask_1.png")]}
    with pytest.raises(ValueError, match="same shape"):  # numpy cannot stack (W, H) with (W, H, 4)
        LoadImaged(keys="label", reader="PILReader", image_only=True)(dict(case))

    pipeline = Compose(
        [
            LoadImaged(keys="image", reader="PILReader", image_only=True),
            LoadImaged(keys="label", reader=PILReader(converter=single_channel_mask), image_only=True),
            EnsureChannelFirstd(keys=["image", "label"]),
            BinaryMaskd(keys="label"),
        ]
    )
    output = pipeline(case)
    assert tuple(output["image"].shape) == (3, 30, 20)
    np.testing.assert_array_equal(output["label"][0].numpy(), (first | second).T.astype(np.float32))


def test_monai_loads_a_kvasir_rgb_jpeg_mask(tmp_path: Path) -> None:
    mask = lesion_mask(40, 50)
    Image.fromarray(np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=2)).save(
        tmp_path / "mask.jpg", quality=75
    )
    write_rgb(tmp_path / "image.jpg", 40, 50)
    pipeline = Compose(
        [
            LoadImaged(keys=["image", "label"], reader="PILReader", image_only=True),
            EnsureChannelFirstd(keys=["image", "label"]),
            BinaryMaskd(keys="label"),
        ]
    )
    output = pipeline({"image": str(tmp_path / "image.jpg"), "label": str(tmp_path / "mask.jpg")})
    assert tuple(output["label"].shape) == (1, 50, 40)
    assert output["label"].meta["filename_or_obj"].endswith("mask.jpg")
    np.testing.assert_array_equal(output["label"][0].numpy(), mask.T.astype(np.float32))
