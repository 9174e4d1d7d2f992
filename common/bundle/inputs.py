"""Listing the input files of an inference run."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

__all__ = ["find_inputs"]


def find_inputs(input_dir: str, patterns: str | Sequence[str] = ("*.nii.gz", "*.nii")) -> list[str]:
    """Return the files in ``input_dir`` matching any of ``patterns``, sorted, without duplicates.

    Args:
        input_dir: folder of images to run inference on.
        patterns: glob patterns, matched case-insensitively on the file name (e.g. ``"*.jpg"`` finds ``A.JPG``).

    Returns:
        absolute paths of the matching files.

    Raises:
        FileNotFoundError: when the folder does not exist or holds no matching file.
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"inference input folder {folder} does not exist (set --input_dir <folder>).")
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    lowered = [x.lower() for x in patterns]
    found = sorted(
        str(p.resolve()) for p in folder.iterdir() if p.is_file() and any(fnmatch(p.name.lower(), x) for x in lowered)
    )
    if not found:
        raise FileNotFoundError(f"no file matching {patterns} in {folder} (set --input_dir or --input_patterns).")
    return found
