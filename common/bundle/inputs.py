"""Listing the input files of an inference run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

__all__ = ["announce_inference_size", "find_inputs", "inference_datalist", "inference_output_root"]

logger = logging.getLogger("common.bundle")


def find_inputs(
    input_dir: str, patterns: str | Sequence[str] = ("*.nii.gz", "*.nii"), recursive: bool = False
) -> list[str]:
    """Return the files in ``input_dir`` matching any of ``patterns``, sorted, without duplicates.

    Args:
        input_dir: folder of images to run inference on.
        patterns: glob patterns, matched case-insensitively on the file name (e.g. ``"*.jpg"`` finds ``A.JPG``).
        recursive: also search the sub-folders (layouts with one folder per case, e.g. the LA benchmark's
            ``<case>/mri_norm2.h5``).

    Returns:
        absolute paths of the matching files.

    Raises:
        FileNotFoundError: when the folder does not exist or holds no matching file.
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"inference input folder {folder} does not exist (set --dataset_dir <folder>).")
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    lowered = [x.lower() for x in patterns]
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = sorted(
        str(p.resolve()) for p in candidates if p.is_file() and any(fnmatch(p.name.lower(), x) for x in lowered)
    )
    if not found:
        raise FileNotFoundError(f"no file matching {patterns} in {folder} (set --dataset_dir or --input_patterns).")
    return found


def inference_datalist(
    dataset_dir: str | None,
    patterns: str | Sequence[str] = ("*.nii.gz", "*.nii"),
    datalist_file: str | None = None,
    split: str = "test",
    recursive: bool = False,
) -> list[dict[str, str]]:
    """The ``{"image": path}`` inputs of an inference run: a folder's files, or a split of a training datalist.

    Args:
        dataset_dir: folder of images (see :func:`find_inputs`); empty or None to use ``datalist_file`` instead.
        patterns: file-name patterns for ``dataset_dir``.
        datalist_file: a datalist written by training (``common.data.prepare_datalist``); its ``split`` cases are the
            inputs when no ``dataset_dir`` is given (by default the held-out test cases of the last training run).
        split: the datalist list to use.
        recursive: search ``dataset_dir``'s sub-folders too.

    Returns:
        ``[{"image": absolute path}, ...]``.

    Raises:
        FileNotFoundError: no folder and no datalist file, or nothing found.
    """
    if dataset_dir:
        return [{"image": path} for path in find_inputs(dataset_dir, patterns, recursive=recursive)]
    if not datalist_file or not Path(datalist_file).is_file():
        raise FileNotFoundError(
            f"no inference input: give --dataset_dir <folder of images>, or train first so that the datalist "
            f"{datalist_file} exists (its {split!r} cases are the default inputs)."
        )
    from common.data.datalist import load_datalist

    cases = load_datalist(datalist_file)[split]
    if not cases:
        raise FileNotFoundError(f"the datalist {datalist_file} has no {split!r} case; give --dataset_dir")
    return [{"image": case["image"]} for case in cases]


def inference_output_root(dataset_dir: str | None, datalist_file: str | None = None) -> str:
    """The folder whose sub-folders inference outputs keep (``data_root_dir`` of MONAI's ``SaveImaged``).

    Inputs in layouts with one folder per case and one file name for all (the LA benchmark's
    ``<case>/mri_norm2.h5``) would overwrite each other's outputs in a flat output folder; relative to this root they
    keep their case folders. It never fails, so that the postprocessing can be built without inputs (MONAI Label
    builds it, then drops ``SaveImaged``).

    Args:
        dataset_dir: the inference input folder, when one is given.
        datalist_file: the training datalist whose cases are the default inputs (see :func:`inference_datalist`).

    Returns:
        ``dataset_dir`` (absolute); else the datalist's ``dataset_dir``; else ``""`` (MONAI's flat output).
    """
    if dataset_dir:
        return str(Path(dataset_dir).resolve())
    if datalist_file and Path(datalist_file).is_file():
        from common.data.datalist import load_datalist

        try:
            return str(load_datalist(datalist_file)["dataset_dir"])
        except ValueError:
            return ""
    return ""


def announce_inference_size(
    image_size: Sequence[int], use_sliding_window: bool = False, bundle_root: str | None = None, key: str = "image_size"
) -> str:
    """Say at the start of a 2D inference which size the network sees, and the sizes the bundle's configs train at.

    The inference config cannot know which config trained the weights it loads (the recipe and the quick run train
    at different sizes), and a network run at another size than it learned still answers, only worse. So the size is
    stated once, beside each training config's own, with the key that changes it.

    Args:
        image_size: the ``(H, W)`` every image is resized to before the network (pixels).
        use_sliding_window: whether the images are instead tiled at their own size with windows of ``image_size``.
        bundle_root: the bundle folder; the top-level ``image_size`` of each of its ``configs/*.json`` other than
            ``inference.json`` is listed.
        key: the config key that sets the size.

    Returns:
        the message, also logged at INFO level on the ``common.bundle`` logger.
    """
    import json

    def shown(value: Sequence[int]) -> str:
        return "x".join(str(int(v)) for v in value)

    trained = []
    for config in sorted(Path(bundle_root).glob("configs/*.json")) if bundle_root else []:
        if config.name == "inference.json":
            continue
        try:
            value = json.loads(config.read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            trained.append(f"{config.name} {shown(value)}")
    size = shown(image_size)
    how = f"tiled in {size}-pixel windows" if use_sliding_window else f"resized to {size} pixels"
    message = f"inference: every image is {how} ({key}); masks are written at the input's size."
    if trained:
        message += (
            f' The bundle\'s configs train at {", ".join(trained)}: pass --{key} "[H, W]" with the size of the '
            "config that trained these weights."
        )
    logger.info(message)
    return message
