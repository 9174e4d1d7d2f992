"""Tests of common.bundle.inputs: sorted absolute paths, case-insensitive patterns, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.bundle import find_inputs


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def expected(folder: Path, *names: str) -> list[str]:
    return [str((folder / name).resolve()) for name in names]


def test_default_patterns_sorted_absolute(tmp_path: Path) -> None:
    touch(tmp_path, "c.nii.gz", "a.nii", "b.nii.gz", "notes.txt", "d.nii.gz.bak")
    found = find_inputs(str(tmp_path))
    assert found == expected(tmp_path, "a.nii", "b.nii.gz", "c.nii.gz")
    assert all(Path(p).is_absolute() for p in found)


def test_patterns_are_case_insensitive(tmp_path: Path) -> None:
    touch(tmp_path, "A.JPG", "b.jpg", "C.Jpg", "d.png")
    assert find_inputs(str(tmp_path), "*.jpg") == expected(tmp_path, "A.JPG", "C.Jpg", "b.jpg")
    assert find_inputs(str(tmp_path), "*.JPG") == expected(tmp_path, "A.JPG", "C.Jpg", "b.jpg")


def test_several_patterns_without_duplicates(tmp_path: Path) -> None:
    touch(tmp_path, "x.png", "y.jpg", "z.jpeg", "w.bmp")
    # x.png matches two patterns and must be listed once
    found = find_inputs(str(tmp_path), ["*.png", "*.jp*g", "x.*"])
    assert found == expected(tmp_path, "x.png", "y.jpg", "z.jpeg")


def test_folders_are_skipped(tmp_path: Path) -> None:
    touch(tmp_path, "a.nii.gz")
    (tmp_path / "sub.nii.gz").mkdir()
    touch(tmp_path / "nested", "b.nii.gz")
    assert find_inputs(str(tmp_path)) == expected(tmp_path, "a.nii.gz")


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="does not exist") as raised:
        find_inputs(str(missing))
    assert str(missing) in str(raised.value)


def test_no_matching_file(tmp_path: Path) -> None:
    touch(tmp_path, "a.txt")
    with pytest.raises(FileNotFoundError, match="no file matching") as raised:
        find_inputs(str(tmp_path), ["*.png", "*.jpg"])
    assert "*.png" in str(raised.value) and "--input_patterns" in str(raised.value)
