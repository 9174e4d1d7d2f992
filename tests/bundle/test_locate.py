"""Tests of common.bundle.locate: the bundle folder itself, bundles/<name> below it, the checkout, a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

import common.bundle.locate as locate
from common.bundle import find_bundle_root, repository_root


def make_bundle(folder: Path) -> Path:
    (folder / "configs").mkdir(parents=True)
    (folder / "configs" / "metadata.json").write_text("{}")
    return folder


@pytest.fixture
def empty_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake repository checkout without bundles, so the real one cannot satisfy the search."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.setattr(locate, "repository_root", lambda: checkout)
    return checkout


def test_repository_root_holds_the_common_package() -> None:
    root = repository_root()
    assert root.is_absolute()
    assert (root / "common" / "bundle" / "locate.py").is_file()


def test_from_the_bundle_folder_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_checkout: Path) -> None:
    bundle = make_bundle(tmp_path / "work" / "cmunext")
    monkeypatch.chdir(bundle)
    assert find_bundle_root("cmunext") == str(bundle.resolve())


def test_from_a_folder_holding_bundles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_checkout: Path) -> None:
    repo = tmp_path / "repo"
    bundle = make_bundle(repo / "bundles" / "cmunext")
    make_bundle(repo / "bundles" / "other")
    monkeypatch.chdir(repo)
    assert find_bundle_root("cmunext") == str(bundle.resolve())
    assert find_bundle_root("other") == str((repo / "bundles" / "other").resolve())


def test_working_directory_wins_over_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_checkout: Path
) -> None:
    make_bundle(empty_checkout / "bundles" / "cmunext")
    local = make_bundle(tmp_path / "repo" / "bundles" / "cmunext")
    monkeypatch.chdir(tmp_path / "repo")
    assert find_bundle_root("cmunext") == str(local.resolve())


def test_falls_back_to_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_checkout: Path) -> None:
    bundle = make_bundle(empty_checkout / "bundles" / "cmunext")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert find_bundle_root("cmunext") == str(bundle)


def test_another_bundle_folder_is_not_taken_for_the_requested_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_checkout: Path
) -> None:
    wanted = make_bundle(empty_checkout / "bundles" / "cmunext")
    monkeypatch.chdir(make_bundle(tmp_path / "bundles" / "other"))
    assert find_bundle_root("cmunext") == str(wanted)


def test_folder_without_metadata_is_not_a_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_checkout: Path
) -> None:
    # named like the bundle and with configs/, but no metadata.json: the search goes on to bundles/<name> below it
    folder = tmp_path / "cmunext"
    (folder / "configs").mkdir(parents=True)
    inner = make_bundle(folder / "bundles" / "cmunext")
    monkeypatch.chdir(folder)
    assert find_bundle_root("cmunext") == str(inner.resolve())


def test_missing_bundle_raises_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_checkout: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as raised:
        find_bundle_root("cmunext")
    message = str(raised.value)
    assert "cannot find bundle 'cmunext'" in message
    assert str(tmp_path.resolve() / "bundles" / "cmunext") in message
    assert str(empty_checkout / "bundles" / "cmunext") in message
    assert "--bundle_root" in message
