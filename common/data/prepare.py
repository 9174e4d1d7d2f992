"""From a data set folder to a datalist on disk: phantom generation when needed, case listing, split, input checks.

A data set folder is in one of three states, told apart by the marker file ``phantom.json``:

- missing or empty: with ``generate_phantom=True`` the phantom is written into a hidden sibling folder
  (``.<name>.partial-<pid>-<random>``), the marker last, and the folder is renamed into place in one step; a killed
  generation therefore never leaves a half-written ``dataset_dir`` (only a hidden ``.partial`` folder, safe to
  delete). Without ``generate_phantom``: ``FileNotFoundError``.
- holds ``phantom.json``: a phantom we wrote; read it, after checking that it was made with the requested
  settings (otherwise an error asks to delete it or choose another folder; it is never overwritten).
- holds files but no marker: the user's data, strictly read-only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from common.data.checks import check_cases
from common.data.datalist import LIST_KEYS, save_datalist, split_cases
from common.data.layouts import Layout, get_layout

__all__ = ["MARKER_FILE", "PhantomGenerator", "ensure_dataset", "prepare_datalist"]

logger = logging.getLogger("common.data")

MARKER_FILE = "phantom.json"
"""Written last into a generated phantom folder; its presence marks the folder as ours and complete."""


@runtime_checkable
class PhantomGenerator(Protocol):
    """What :func:`prepare_datalist` needs from a phantom (e.g. :class:`common.data.phantoms.LesionPhantom2D`)."""

    num_cases: int

    def params(self) -> dict[str, Any]:
        """JSON-serialisable settings that fully determine the cases."""
        ...

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image (H, W, 3) uint8, mask (H, W) bool)`` of case ``index`` (3D phantoms: ``(X, Y, Z)`` float32
        and bool)."""
        ...


def _marker_content(phantom: PhantomGenerator, layout: Layout) -> dict[str, Any]:
    # a JSON round trip, so that tuples and lists compare equal to what the marker file holds
    return json.loads(json.dumps({"layout": layout.name, "num_cases": phantom.num_cases, "phantom": phantom.params()}))


def _read_marker(marker: Path) -> dict[str, Any]:
    try:
        content = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{marker} is unreadable ({error}): delete {marker.parent} to regenerate the phantom, "
            "or choose another dataset_dir"
        ) from error
    if not isinstance(content, dict):
        raise ValueError(f"{marker} is not a phantom marker: delete {marker.parent} or choose another dataset_dir")
    return content


def _check_marker(dataset_dir: Path, phantom: PhantomGenerator | None, layout: Layout) -> None:
    found = _read_marker(dataset_dir / MARKER_FILE)
    if found.get("layout") != layout.name:
        raise ValueError(
            f"{dataset_dir} holds a phantom in the {found.get('layout')!r} layout, not {layout.name!r}: "
            "delete it or choose another dataset_dir"
        )
    if phantom is not None and found != _marker_content(phantom, layout):
        raise ValueError(
            f"{dataset_dir} holds a phantom generated with other settings than the requested ones "
            f"(found {found.get('phantom')}, requested {phantom.params()}); it is never overwritten: "
            "delete it to regenerate, or choose another dataset_dir"
        )


def _generate(dataset_dir: Path, phantom: PhantomGenerator, layout: Layout) -> None:
    """Write the phantom into a staging sibling folder, marker last, and rename it to ``dataset_dir``."""
    dataset_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = dataset_dir.parent / f".{dataset_dir.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    start = time.perf_counter()
    try:
        case_ids = [layout.phantom_case_id(index) for index in range(phantom.num_cases)]
        report_every = max(10, phantom.num_cases // 10)  # large (3D) phantoms take a while: show progress
        for index, case_id in enumerate(case_ids):
            image, mask = phantom.generate(index)
            layout.write_case(staging, case_id, image, mask)
            if (index + 1) % report_every == 0 and index + 1 < phantom.num_cases:
                logger.info(
                    "phantom: %d of %d cases written (%.0f s)",
                    index + 1,
                    phantom.num_cases,
                    time.perf_counter() - start,
                )
        layout.write_phantom_splits(staging, case_ids)
        (staging / MARKER_FILE).write_text(json.dumps(_marker_content(phantom, layout), indent=2) + "\n")
        try:
            os.rename(staging, dataset_dir)  # atomic; replaces dataset_dir only if it is an empty folder
        except OSError:
            if (dataset_dir / MARKER_FILE).is_file():  # another process (e.g. another DDP rank) finished first
                _check_marker(dataset_dir, phantom, layout)
                logger.info("%s was generated by another process meanwhile; using it", dataset_dir)
                return
            if dataset_dir.is_dir() and not any(dataset_dir.iterdir()):  # platforms that do not replace folders
                dataset_dir.rmdir()
                os.rename(staging, dataset_dir)
            else:
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "generated %d phantom cases in %.1f s into %s (%s layout)",
        phantom.num_cases,
        time.perf_counter() - start,
        dataset_dir,
        layout.name,
    )


def ensure_dataset(
    dataset_dir: str | os.PathLike,
    layout: str | Layout,
    *,
    phantom: PhantomGenerator | None = None,
    generate_phantom: bool = False,
) -> bool:
    """Make sure ``dataset_dir`` holds a data set in ``layout``, generating the phantom where allowed.

    Args:
        dataset_dir: the data set folder.
        layout: a layout name or adapter.
        phantom: the phantom to write (and to compare with an existing phantom's marker).
        generate_phantom: allow writing the phantom when ``dataset_dir`` is missing or empty.

    Returns:
        True when ``dataset_dir`` holds our phantom, False when it holds the user's data.

    Raises:
        FileNotFoundError: ``dataset_dir`` is missing or empty and no phantom may be generated.
        NotADirectoryError: ``dataset_dir`` is a file.
        ValueError: ``generate_phantom`` without a phantom, or an existing phantom made with other settings.
    """
    layout = get_layout(layout)
    dataset_dir = Path(dataset_dir).expanduser().absolute()
    if dataset_dir.exists() and not dataset_dir.is_dir():
        raise NotADirectoryError(f"dataset_dir {dataset_dir} is a file, expected a folder in the {layout.name} layout")
    if (dataset_dir / MARKER_FILE).is_file():
        _check_marker(dataset_dir, phantom, layout)
        return True
    if dataset_dir.is_dir() and any(dataset_dir.iterdir()):
        logger.info("%s holds user data (no %s): reading it, never writing into it", dataset_dir, MARKER_FILE)
        return False
    state = "does not exist" if not dataset_dir.exists() else "is empty"
    if not generate_phantom:
        raise FileNotFoundError(
            f"dataset_dir {dataset_dir} {state}: expected a data set in the {layout.name} layout "
            f"({layout.description}): point --dataset_dir at it (and --dataset_layout at its layout); "
            "a bundle writes its demo phantom only when dataset_dir is left at its default, the phantom folder"
        )
    if phantom is None:
        raise ValueError(f"dataset_dir {dataset_dir} {state} and generate_phantom is set, but no phantom was given")
    if not isinstance(phantom, PhantomGenerator):
        raise TypeError(f"phantom must have num_cases, params() and generate(index), got {type(phantom).__name__}")
    _generate(dataset_dir, phantom, layout)
    return True


def _warn_if_held_out_cases_moved(
    output_file: Path, dataset_dir: Path, layout: Layout, lists: dict[str, list[dict[str, Any]]], seed: int
) -> None:
    """Warn when ``output_file`` holds this data set's datalist with other held-out cases than ``lists``.

    A model trained on the earlier split may have trained on cases that are test cases now; the file is about to be
    overwritten, so this is the last moment to say so.
    """
    if not output_file.is_file():
        return
    try:
        earlier = json.loads(output_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return  # not a datalist we can compare with; save_datalist replaces it
    if not isinstance(earlier, dict) or earlier.get("layout") != layout.name:
        return
    if os.path.abspath(str(earlier.get("dataset_dir", ""))) != str(dataset_dir):
        return

    def case_ids(content: dict[str, Any], keys: tuple[str, ...]) -> set[str]:
        return {str(case.get("id")) for key in keys for case in content.get(key) or [] if isinstance(case, dict)}

    test_now = case_ids(lists, ("test",))
    if test_now == case_ids(earlier, ("test",)) and case_ids(lists, ("validation",)) == case_ids(
        earlier, ("validation",)
    ):
        return
    seen = test_now & case_ids(earlier, ("training", "unlabeled", "validation"))
    logger.warning(
        "%s held another split of %s (seed %s, now %s): %d of today's %d test cases were training or validation "
        "cases there; a model trained on that split must not be scored on this one (use another output_dir)",
        output_file,
        dataset_dir,
        earlier.get("seed"),
        seed,
        len(seen),
        len(test_now),
    )


def prepare_datalist(
    dataset_dir: str | os.PathLike,
    layout: str | Layout,
    output_file: str | os.PathLike,
    *,
    phantom: PhantomGenerator | None = None,
    generate_phantom: bool = False,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    labeled: int | float | None = None,
    seed: int = 0,
    use_official_split: bool = True,
    check: bool = True,
    name: str | None = None,
) -> dict[str, Any]:
    """Build, check and save the datalist of a data set folder; write the phantom first if the folder is missing.

    The split is drawn once from ``seed`` and written to ``output_file``, which is the record of which cases were
    held out; training and evaluation of one run rebuild the same split from the same arguments. Two warnings guard
    the test split: an empty ``test`` list (evaluation would have nothing to score) and, when ``output_file`` already
    holds a datalist of the same data set whose held-out cases differ (another seed or fractions), the count of
    today's test cases that the earlier split used for training or validation.

    Args:
        dataset_dir: the data set folder, in ``layout`` (see the layout adapters for the folders they accept).
        layout: a layout name (``"kvasir_seg"``, ``"isic2018"``, ``"isic2016"``, ``"busi"``, ...) or adapter.
        output_file: the datalist JSON to write. It may lie inside ``dataset_dir`` only when that is our phantom.
        phantom: the phantom to write when ``dataset_dir`` is missing or empty (and to compare with an existing
            phantom's marker).
        generate_phantom: allow writing the phantom.
        val_fraction: see :func:`common.data.split_cases`.
        test_fraction: see :func:`common.data.split_cases`.
        labeled: see :func:`common.data.split_cases`.
        seed: see :func:`common.data.split_cases`.
        use_official_split: see :func:`common.data.split_cases`.
        check: run :func:`common.data.check_cases` on every case of the datalist.
        name: the datalist's name (default: the layout name).

    Returns:
        The datalist (absolute paths), as saved to ``output_file``.

    Raises:
        FileNotFoundError: no data set and no phantom to write, or the layout is not found in ``dataset_dir``.
        ValueError: ``output_file`` inside the user's ``dataset_dir``, a phantom made with other settings,
            or an impossible split.
        common.data.DataValidationError: the input checks found problems (all listed).
    """
    layout = get_layout(layout)
    dataset_dir = Path(dataset_dir).expanduser().absolute()
    output_file = Path(output_file).expanduser().absolute()
    is_phantom = ensure_dataset(dataset_dir, layout, phantom=phantom, generate_phantom=generate_phantom)
    if not is_phantom and output_file.resolve().is_relative_to(dataset_dir.resolve()):
        raise ValueError(
            f"output_file {output_file} lies inside the user's data set folder {dataset_dir}, which is read-only: "
            "write the datalist elsewhere"
        )

    cases = layout.find_cases(dataset_dir)
    logger.info("found %d cases in %s (%s layout)", len(cases), dataset_dir, layout.name)
    split_arguments = {
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "labeled": labeled,
        "use_official_split": use_official_split,
    }
    lists = split_cases(cases, seed=seed, **split_arguments)
    logger.info("split (seed %d): %s", seed, ", ".join(f"{len(lists[key])} {key}" for key in LIST_KEYS))
    if not lists["test"]:
        logger.warning(
            "the test list is empty (test_fraction=%s and %s has no official test split): evaluation will have "
            "nothing to score; set test_fraction > 0",
            test_fraction,
            layout.name,
        )
    _warn_if_held_out_cases_moved(output_file, dataset_dir, layout, lists, seed)

    if check:
        start = time.perf_counter()
        unique = {case["id"]: case for key in LIST_KEYS for case in lists[key]}
        check_cases(unique.values(), label_values=layout.label_values, label_threshold=layout.label_threshold)
        logger.info("checked the files of %d cases in %.1f s", len(unique), time.perf_counter() - start)

    datalist = {
        "name": name or layout.name,
        "layout": layout.name,
        "dataset_dir": str(dataset_dir),
        "phantom": is_phantom,
        "seed": seed,
        "split": split_arguments,
        **lists,
    }
    if _is_main_process():
        save_datalist(datalist, output_file)
        logger.info("wrote %s", output_file)
    return datalist


def _is_main_process() -> bool:
    # under DDP every rank builds the same datalist from the same seed; rank 0 alone writes it (two writers of one
    # file would race), and the others use it from memory
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
