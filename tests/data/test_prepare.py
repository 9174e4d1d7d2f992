"""Tests of common.data.prepare: phantom generated once and atomically, user data read-only, clear errors."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data import DataValidationError, LesionPhantom2D, load_datalist, prepare_datalist
from common.data.prepare import MARKER_FILE

SMALL = {"size_range": ((48, 64), (56, 72))}


def small_phantom(num_cases: int = 12, seed: int = 0) -> LesionPhantom2D:
    return LesionPhantom2D(num_cases=num_cases, seed=seed, **SMALL)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime in ns) of every file under ``folder``."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def build_user_kvasir(folder: Path, count: int = 5) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / "images" / f"u{index}.jpg")
        mask = np.zeros((20, 24, 3), np.uint8)
        mask[5:12, 4:15] = 255
        Image.fromarray(mask).save(folder / "masks" / f"u{index}.jpg")


def test_generates_once_then_reuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dataset_dir = tmp_path / "data" / "kvasir"
    output = tmp_path / "datalists" / "kvasir.json"
    with caplog.at_level(logging.INFO, logger="common.data"):
        datalist = prepare_datalist(
            dataset_dir, "kvasir_seg", output, phantom=small_phantom(), generate_phantom=True, labeled=4, seed=41
        )
    assert "generated 12 phantom cases in" in caplog.text
    assert "found 12 cases" in caplog.text
    assert (len(datalist["training"]), len(datalist["unlabeled"]), len(datalist["validation"])) == (4, 6, 2)
    assert datalist["phantom"] is True and datalist["layout"] == "kvasir_seg" and datalist["seed"] == 41
    assert datalist["split"]["labeled"] == 4
    assert len(list((dataset_dir / "images").glob("*.jpg"))) == 12
    marker = json.loads((dataset_dir / MARKER_FILE).read_text())
    assert marker == {
        "layout": "kvasir_seg",
        "num_cases": 12,
        "phantom": json.loads(json.dumps(small_phantom().params())),
    }
    assert sorted(path.name for path in dataset_dir.parent.iterdir()) == ["kvasir"]  # no staging folder left

    before = snapshot(dataset_dir)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="common.data"):
        again = prepare_datalist(
            dataset_dir, "kvasir_seg", output, phantom=small_phantom(), generate_phantom=True, labeled=4, seed=41
        )
    assert "generated" not in caplog.text
    assert snapshot(dataset_dir) == before
    assert again == datalist
    assert load_datalist(output) == datalist


def test_datalist_paths_are_absolute_and_exist(tmp_path: Path) -> None:
    datalist = prepare_datalist(
        tmp_path / "busi", "busi", tmp_path / "busi.json", phantom=small_phantom(9), generate_phantom=True, seed=1
    )
    cases = [case for key in ("training", "validation") for case in datalist[key]]
    assert len(cases) == 9
    for case in cases:
        labels = [case["label"]] if isinstance(case["label"], str) else case["label"]
        assert all(os.path.isabs(path) and os.path.isfile(path) for path in [case["image"], *labels])
    on_disk = json.loads((tmp_path / "busi.json").read_text())
    assert not os.path.isabs(on_disk["training"][0]["image"])


def test_datalist_may_live_inside_the_phantom_folder(tmp_path: Path) -> None:
    dataset_dir = tmp_path / "isic"
    output = dataset_dir / "datalist.json"
    prepare_datalist(dataset_dir, "isic2018", output, phantom=small_phantom(5), generate_phantom=True)
    assert output.is_file()
    assert len(load_datalist(output)["training"]) == 4


def test_empty_folder_is_filled(tmp_path: Path) -> None:
    dataset_dir = tmp_path / "empty"
    dataset_dir.mkdir()
    prepare_datalist(dataset_dir, "kvasir_seg", tmp_path / "d.json", phantom=small_phantom(4), generate_phantom=True)
    assert (dataset_dir / MARKER_FILE).is_file()


def test_user_folder_is_never_written(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dataset_dir = tmp_path / "user_kvasir"
    build_user_kvasir(dataset_dir)
    before = snapshot(dataset_dir)
    with caplog.at_level(logging.INFO, logger="common.data"):
        datalist = prepare_datalist(
            dataset_dir, "kvasir_seg", tmp_path / "list.json", phantom=small_phantom(), generate_phantom=True
        )
    assert "holds user data" in caplog.text
    assert datalist["phantom"] is False
    assert len(datalist["training"]) + len(datalist["validation"]) == 5
    assert not (dataset_dir / MARKER_FILE).exists()
    with pytest.raises(ValueError, match="inside the user's data set folder"):
        prepare_datalist(dataset_dir, "kvasir_seg", dataset_dir / "list.json")
    assert snapshot(dataset_dir) == before


def test_marker_mismatch_is_refused(tmp_path: Path) -> None:
    dataset_dir = tmp_path / "phantom"
    prepare_datalist(
        dataset_dir, "kvasir_seg", tmp_path / "a.json", phantom=small_phantom(seed=0), generate_phantom=True
    )
    before = snapshot(dataset_dir)
    with pytest.raises(ValueError, match="other settings.*delete it to regenerate, or choose another dataset_dir"):
        prepare_datalist(
            dataset_dir, "kvasir_seg", tmp_path / "b.json", phantom=small_phantom(seed=1), generate_phantom=True
        )
    with pytest.raises(ValueError, match="'kvasir_seg' layout, not 'busi'"):
        prepare_datalist(dataset_dir, "busi", tmp_path / "b.json", phantom=small_phantom(seed=0), generate_phantom=True)
    assert snapshot(dataset_dir) == before
    assert not (tmp_path / "b.json").exists()
    # without a phantom to compare with, the existing phantom is simply read
    assert len(prepare_datalist(dataset_dir, "kvasir_seg", tmp_path / "c.json")["training"]) == 10


def test_missing_folder_without_generation(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=rf"{missing} does not exist: expected a data set in the busi layout"):
        prepare_datalist(missing, "busi", tmp_path / "x.json")
    with pytest.raises(ValueError, match="no phantom was given"):
        prepare_datalist(missing, "busi", tmp_path / "x.json", generate_phantom=True)
    assert not missing.exists()


class FailingPhantom(LesionPhantom2D):
    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index == 3:
            raise RuntimeError("killed")
        return super().generate(index)


def test_interrupted_generation_leaves_nothing_behind(tmp_path: Path) -> None:
    dataset_dir = tmp_path / "data"
    with pytest.raises(RuntimeError, match="killed"):
        prepare_datalist(
            dataset_dir, "kvasir_seg", tmp_path / "x.json", phantom=FailingPhantom(6, **SMALL), generate_phantom=True
        )
    assert list(tmp_path.iterdir()) == []
    prepare_datalist(dataset_dir, "kvasir_seg", tmp_path / "x.json", phantom=small_phantom(6), generate_phantom=True)
    assert (dataset_dir / MARKER_FILE).is_file()


def test_input_checks_run_on_user_data(tmp_path: Path) -> None:
    dataset_dir = tmp_path / "user"
    build_user_kvasir(dataset_dir)
    broken = dataset_dir / "images" / "u2.jpg"
    broken.write_bytes(broken.read_bytes()[:50])
    with pytest.raises(DataValidationError, match=rf"{broken}: unreadable or corrupt image"):
        prepare_datalist(dataset_dir, "kvasir_seg", tmp_path / "list.json", val_fraction=0.4)
    assert not (tmp_path / "list.json").exists()
    prepare_datalist(dataset_dir, "kvasir_seg", tmp_path / "list.json", check=False)
    assert (tmp_path / "list.json").is_file()


def test_3d_phantom_in_the_la_layout_is_split_like_the_benchmark(tmp_path: Path) -> None:
    """The LA layout writes train.list / test.list for its phantom: 80 / 20 as the benchmark's lists."""
    from common.data import OrganPhantom3D

    phantom = OrganPhantom3D(num_cases=10, seed=0, size_range=((32, 36), (32, 36), (24, 28)))
    dataset_dir = tmp_path / "la"
    datalist = prepare_datalist(
        dataset_dir,
        "la_heart",
        tmp_path / "datalist.json",
        phantom=phantom,
        generate_phantom=True,
        labeled=2,
        val_fraction=0.125,
        seed=1337,
    )
    assert (dataset_dir / "train.list").read_text().split() == [f"phantom_{i:04d}" for i in range(8)]
    assert [case["id"] for case in datalist["test"]] == ["phantom_0008", "phantom_0009"]
    assert (len(datalist["training"]), len(datalist["unlabeled"]), len(datalist["validation"])) == (2, 5, 1)
    assert all(Path(case["image"]).name == "mri_norm2.h5" for key in ("training", "test") for case in datalist[key])


def test_the_test_split_is_written_to_the_datalist_and_an_empty_one_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataset_dir = tmp_path / "user"
    build_user_kvasir(dataset_dir, count=10)
    output = tmp_path / "out" / "datalist.json"
    with caplog.at_level(logging.WARNING, logger="common.data"):
        datalist = prepare_datalist(dataset_dir, "kvasir_seg", output, val_fraction=0.1, test_fraction=0.2, seed=41)
    assert "test list is empty" not in caplog.text
    on_disk = json.loads(output.read_text())
    assert [case["id"] for case in on_disk["test"]] == [case["id"] for case in datalist["test"]]
    assert len(on_disk["test"]) == 2 and on_disk["split"]["test_fraction"] == 0.2 and on_disk["seed"] == 41
    assert "test_from_validation" not in on_disk["split"]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="common.data"):
        prepare_datalist(dataset_dir, "kvasir_seg", tmp_path / "other.json", val_fraction=0.1, test_fraction=0.0)
    assert "the test list is empty (test_fraction=0.0 and kvasir_seg has no official test split)" in caplog.text


def test_rewriting_a_datalist_with_other_held_out_cases_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A model trained on the split of seed 41 must not be scored on the test cases of seed 42."""
    dataset_dir = tmp_path / "user"
    build_user_kvasir(dataset_dir, count=10)
    output = tmp_path / "out" / "datalist.json"
    first = prepare_datalist(dataset_dir, "kvasir_seg", output, val_fraction=0.1, test_fraction=0.2, seed=41)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="common.data"):
        prepare_datalist(dataset_dir, "kvasir_seg", output, val_fraction=0.1, test_fraction=0.2, seed=41)
    assert "another split" not in caplog.text  # the same arguments give the same split: nothing to say

    with caplog.at_level(logging.WARNING, logger="common.data"):
        second = prepare_datalist(dataset_dir, "kvasir_seg", output, val_fraction=0.1, test_fraction=0.2, seed=42)
    earlier_seen = {c["id"] for key in ("training", "unlabeled", "validation") for c in first[key]}
    moved = len({c["id"] for c in second["test"]} & earlier_seen)
    assert moved > 0, "seeds 41 and 42 should draw different test cases on this fixture"
    assert f"(seed 41, now 42): {moved} of today's 2 test cases were training or validation cases" in caplog.text


def test_only_rank_zero_writes_the_datalist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under DDP every rank builds the same datalist; one writer, so that two ranks never race on one file."""
    import torch.distributed as dist

    data = tmp_path / "data"
    phantom = LesionPhantom2D(num_cases=10, size_range=((32, 40), (32, 40)))
    kwargs = dict(
        dataset_dir=data,
        layout="kvasir_seg",
        phantom=phantom,
        generate_phantom=True,
        val_fraction=0.2,
        test_fraction=0.2,
        seed=0,
        check=False,
    )
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    other_rank = prepare_datalist(output_file=tmp_path / "rank1.json", **kwargs)
    assert not (tmp_path / "rank1.json").exists()
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    rank0 = prepare_datalist(output_file=tmp_path / "rank0.json", **kwargs)
    assert (tmp_path / "rank0.json").is_file()
    assert other_rank["test"] == rank0["test"] and other_rank["training"] == rank0["training"]
