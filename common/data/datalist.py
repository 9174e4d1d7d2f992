"""The datalist shared by every bundle: a Decathlon-style JSON with labeled, unlabeled, validation and test cases.

File format::

    {"name": "kvasir_seg", "layout": "kvasir_seg", "dataset_dir": "/abs/path/the/relative/paths/start/from",
     "seed": 41, "split": {"val_fraction": 0.2, ...},
     "training":   [{"id": "case0", "image": "images/case0.jpg", "label": "masks/case0.jpg"}, ...],
     "unlabeled":  [{"id": "case7", "image": "images/case7.jpg"}, ...],
     "validation": [...], "test": [...]}

``training`` holds the labeled training cases, ``unlabeled`` the training cases a semi-supervised method uses
without their label (they carry no ``"label"`` key). On disk, ``image`` and ``label`` paths are relative to
``dataset_dir``; :func:`load_datalist` returns them absolute, ready for MONAI's ``Dataset``. A ``label`` may be a
list of files whose union is the mask (BUSI's extra masks; MONAI's ``LoadImage`` stacks them along channels).

``test`` is held out: no case of it is in ``training``, ``unlabeled`` or ``validation``, so the split that selects
the checkpoint (``validation``) never scores it; :func:`evaluation_cases` is what an evaluation reads.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LIST_KEYS",
    "OFFICIAL_SPLIT_KEY",
    "PATH_KEYS",
    "evaluation_cases",
    "load_datalist",
    "save_datalist",
    "split_cases",
]

LIST_KEYS: tuple[str, ...] = ("training", "unlabeled", "validation", "test")
"""The case lists of a datalist, in file order."""

PATH_KEYS: tuple[str, ...] = ("image", "label")
"""Per-case keys that hold file paths (a path or a list of paths)."""

OFFICIAL_SPLIT_KEY = "official_split"
"""Per-case key a layout adapter sets when the data set defines the case's split itself."""

_OFFICIAL_SPLITS = ("training", "validation", "test")

logger = logging.getLogger("common.data")


def _count(fraction: float, total: int) -> int:
    """``fraction * total`` rounded half up, and at least 1 when the fraction is positive and ``total`` > 0."""
    if fraction <= 0 or total == 0:
        return 0
    return max(1, math.floor(fraction * total + 0.5))


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


def _num_labeled(labeled: int | float | None, num_training: int) -> int:
    if labeled is None:
        return num_training
    if isinstance(labeled, bool) or not isinstance(labeled, int | float):
        raise ValueError(f"labeled must be None, an int >= 1 or a float in (0, 1], got {labeled!r}")
    if isinstance(labeled, int):
        if labeled < 1:
            raise ValueError(f"labeled must be at least 1 case, got {labeled}")
        if labeled > num_training:
            raise ValueError(f"labeled={labeled} asks for more labeled cases than the {num_training} training cases")
        return labeled
    if not 0.0 < labeled <= 1.0:
        raise ValueError(f"labeled as a fraction must be in (0, 1], got {labeled}")
    return min(num_training, max(1, math.floor(labeled * num_training + 0.5)))


def _clean(case: Mapping[str, Any], *, keep_label: bool) -> dict[str, Any]:
    """A deep copy of ``case`` without ``official_split`` (and without ``label`` unless ``keep_label``)."""
    cleaned = {key: copy.deepcopy(value) for key, value in case.items() if key != OFFICIAL_SPLIT_KEY}
    if not keep_label:
        cleaned.pop("label", None)
    return cleaned


def split_cases(
    cases: Iterable[Mapping[str, Any]],
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    labeled: int | float | None = None,
    seed: int = 0,
    use_official_split: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Split cases into labeled training, unlabeled training, validation and test lists, reproducibly.

    The cases are sorted by id first, so the result depends only on the set of cases and the arguments, never on
    the input order. Test and validation cases are drawn from one random permutation (numpy ``Generator`` seeded
    from ``seed``); the labeled training cases from a second, independent one, taken as its first ``labeled``
    cases, so that for one seed the 8 labeled cases are among the 16 labeled cases (nested label budgets) and the
    train/validation/test split does not depend on ``labeled``.

    Official splits: a layout adapter sets ``"official_split"`` (``"training"``, ``"validation"`` or ``"test"``)
    when the data set defines its own split. With ``use_official_split=True``, an official held-out split replaces
    the random one: the cases officially ``"validation"`` form the validation list (``val_fraction`` is then
    unused), likewise for ``"test"`` (``test_fraction`` unused). A held-out split the data set does not define is
    drawn with its fraction from the other cases (those without ``"official_split"`` or officially
    ``"training"``), and the fraction counts among those cases. So ISIC 2018 with its validation and test folders
    gives the official 2594 / 100 / 1000 split, and ISBI 2016 (training and test folders only) gives its official
    test set plus a validation set drawn from its training cases. With ``use_official_split=False`` every case is
    split by the fractions.

    The four lists are disjoint: a case is in exactly one of them, so ``test`` is never the set that selects the
    checkpoint (protocols that report on their validation split, e.g. CMUNeXt's 70/30, are reproduced by evaluating
    ``"validation"`` explicitly, see :func:`evaluation_cases`; the figures are then selection-set figures).

    Counts: ``round(fraction * n)`` (halves up), and at least 1 when the fraction is positive; at least one
    training case must remain.

    Args:
        cases: dicts with ``"id"``, ``"image"``, ``"label"`` and optionally ``"official_split"`` and extra keys
            (kept in the output, except ``"official_split"``).
        val_fraction: fraction of the cases (not officially held out) for validation, in [0, 1); unused when some
            cases are officially ``"validation"``.
        test_fraction: fraction of the cases (not officially held out) for test, in [0, 1); unused when some cases
            are officially ``"test"``. ``val_fraction + test_fraction`` must be below 1.
        labeled: None = every training case is labeled; an int = that many labeled cases; a float in (0, 1] = that
            fraction of the training cases (rounded, at least 1). The other training cases go to ``"unlabeled"``
            without their ``"label"`` key.
        seed: seed of the random draws.
        use_official_split: honour the cases' ``"official_split"``.

    Returns:
        ``{"training": [...], "unlabeled": [...], "validation": [...], "test": [...]}``, each list sorted by id.

    Raises:
        ValueError: no cases, a case without id, duplicate ids, an unknown official split, fractions out of range,
            no training case left, or an impossible ``labeled``.
    """
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}")
    case_list = [dict(case) for case in cases]
    if not case_list:
        raise ValueError("no cases to split")
    missing_id = [index for index, case in enumerate(case_list) if "id" not in case]
    if missing_id:
        raise ValueError(f"cases at positions {missing_id[:10]} have no 'id' key")
    duplicates = sorted(
        case_id for case_id, count in Counter(str(case["id"]) for case in case_list).items() if count > 1
    )
    if duplicates:
        raise ValueError(f"duplicate case ids: {duplicates[:10]}")
    case_list.sort(key=lambda case: str(case["id"]))

    held_out: dict[str, list[dict[str, Any]]] = {"validation": [], "test": []}
    pool: list[dict[str, Any]] = []  # cases not officially held out: training, or drawn for validation / test
    for case in case_list:
        official = case.get(OFFICIAL_SPLIT_KEY) if use_official_split else None
        if official not in (None, *_OFFICIAL_SPLITS):
            raise ValueError(f"case {case['id']}: official_split must be one of {_OFFICIAL_SPLITS}, got {official!r}")
        (held_out[official] if official in held_out else pool).append(case)

    split_sequence, labeled_sequence = np.random.SeedSequence(seed).spawn(2)
    order = np.random.default_rng(split_sequence).permutation(len(pool))
    num_test = 0 if held_out["test"] else _count(test_fraction, len(pool))
    num_val = 0 if held_out["validation"] else _count(val_fraction, len(pool))
    test = held_out["test"] + [pool[i] for i in order[:num_test]]
    validation = held_out["validation"] + [pool[i] for i in order[num_test : num_test + num_val]]
    training = [pool[i] for i in order[num_test + num_val :]]
    if not training:
        raise ValueError(
            f"no training case left: {len(case_list)} cases, {len(validation)} for validation, {len(test)} for test"
        )
    training.sort(key=lambda case: str(case["id"]))

    num_labeled = _num_labeled(labeled, len(training))
    labeled_order = np.random.default_rng(labeled_sequence).permutation(len(training))
    labeled_positions = set(labeled_order[:num_labeled].tolist())

    def by_id(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(items, key=lambda case: str(case["id"]))

    return {
        "training": [_clean(case, keep_label=True) for i, case in enumerate(training) if i in labeled_positions],
        "unlabeled": [_clean(case, keep_label=False) for i, case in enumerate(training) if i not in labeled_positions],
        "validation": by_id([_clean(case, keep_label=True) for case in validation]),
        "test": by_id([_clean(case, keep_label=True) for case in test]),
    }


def _case_key(case: Mapping[str, Any]) -> str:
    """A case's identity: its id, or its image path in hand-written datalists without ids."""
    return str(case["id"]) if "id" in case else os.fspath(case["image"])


def evaluation_cases(datalist: Mapping[str, Any], split: str = "test") -> list[dict[str, Any]]:
    """The cases an evaluation scores: the datalist's held-out ``split`` list, refused when it cannot be honest.

    ``"test"`` must be non-empty and share no case with ``training``, ``unlabeled`` or ``validation`` (a hand-written
    datalist, or one from a version that copied validation into test, is refused). ``"validation"`` is allowed, to
    reproduce protocols that report on the split that also selected the checkpoint, and says so in the log: those
    figures are optimistic, not test figures.

    Args:
        datalist: a datalist (see :func:`split_cases` / :func:`load_datalist`).
        split: ``"test"`` (the default of every bundle's ``evaluate.json``) or ``"validation"``.

    Returns:
        The cases of ``split``, as a new list.

    Raises:
        ValueError: ``split`` is not a held-out split, its list is empty or missing, or ``"test"`` shares cases
            with another list.
    """
    if split not in ("test", "validation"):
        raise ValueError(f"evaluation scores a held-out split, 'test' or 'validation'; got {split!r}")
    cases = datalist.get(split) or []
    if not cases:
        raise ValueError(
            f"the datalist's {split!r} list is empty: there is nothing to score. Give the split a held-out share "
            "(test_fraction > 0, val_fraction > 0) or the data set's official test list, and prepare the datalist again"
        )
    if split == "test":
        others = {_case_key(case) for key in ("training", "unlabeled", "validation") for case in datalist.get(key, [])}
        shared = sorted({_case_key(case) for case in cases} & others)
        if shared:
            raise ValueError(
                f"{len(shared)} test case(s) are also training or validation cases ({shared[:5]}): scores on them "
                "are not test figures; prepare the datalist again with common.data.prepare_datalist"
            )
    else:
        logger.warning(
            "scoring the validation split (%d cases), which selected the checkpoint: these are selection-set figures, "
            "optimistic as test figures",
            len(cases),
        )
    return list(cases)


def _map_paths(case: Mapping[str, Any], convert: Callable[[str], str]) -> dict[str, Any]:
    mapped = dict(case)
    for key in PATH_KEYS:
        if key not in mapped:
            continue
        value = mapped[key]
        if isinstance(value, str | os.PathLike):
            mapped[key] = convert(os.fspath(value))
        else:
            mapped[key] = [convert(os.fspath(item)) for item in value]
    return mapped


def save_datalist(datalist: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a datalist as JSON atomically (temporary file + ``os.replace``), paths relative to ``dataset_dir``.

    Paths outside ``dataset_dir`` stay absolute. Parent folders of ``path`` are created.

    Args:
        datalist: a dict with ``"dataset_dir"`` and the case lists (absolute or relative paths).
        path: the JSON file to write.

    Returns:
        The path written.

    Raises:
        ValueError: ``datalist`` has no ``"dataset_dir"``.
    """
    if "dataset_dir" not in datalist:
        raise ValueError("the datalist has no 'dataset_dir': the relative paths would have no anchor")
    dataset_dir = os.path.abspath(os.fspath(datalist["dataset_dir"]))

    def relative(value: str) -> str:
        absolute = os.path.abspath(os.path.join(dataset_dir, value))
        inside = os.path.commonpath([dataset_dir, absolute]) == dataset_dir
        return Path(os.path.relpath(absolute, dataset_dir)).as_posix() if inside else absolute

    content = dict(datalist)
    content["dataset_dir"] = dataset_dir
    for key in LIST_KEYS:
        if key in content:
            content[key] = [_map_paths(case, relative) for case in content[key]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name beside the target (same file system, so os.replace is atomic); open() honours the umask,
    # unlike tempfile.mkstemp's private 0600 mode
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8") as stream:
            json.dump(content, stream, indent=2)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_datalist(path: str | os.PathLike) -> dict[str, Any]:
    """Read a datalist written by :func:`save_datalist` (or by hand) and return it with absolute paths.

    ``dataset_dir`` may be relative (to the JSON file's folder) or absent (then the JSON file's folder, as in
    MONAI's ``load_decathlon_datalist``). Absent ``unlabeled``, ``validation`` and ``test`` lists read as empty.

    Args:
        path: the datalist JSON file.

    Returns:
        The datalist dict; ``dataset_dir`` and every ``image``/``label`` path absolute.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON, not an object, has no ``"training"`` list, or has a case without an
            ``"image"`` (or, in ``"training"``, without a ``"label"``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"datalist {path} does not exist (prepare it with common.data.prepare_datalist)")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"datalist {path} is not valid JSON: {error}") from error
    if not isinstance(content, dict):
        raise ValueError(f"datalist {path}: expected a JSON object, got {type(content).__name__}")
    if not isinstance(content.get("training"), list):
        raise ValueError(f"datalist {path}: missing required key 'training' (a list of cases)")
    base = path.parent.resolve()
    dataset_dir = Path(content.get("dataset_dir", base))
    dataset_dir = dataset_dir if dataset_dir.is_absolute() else base / dataset_dir
    content["dataset_dir"] = os.fspath(dataset_dir)
    for key in LIST_KEYS:
        cases = content.setdefault(key, [])
        if not isinstance(cases, list):
            raise ValueError(f"datalist {path}: '{key}' must be a list, got {type(cases).__name__}")
        required = ("image", "label") if key == "training" else ("image",)
        for index, case in enumerate(cases):
            if not isinstance(case, dict) or any(name not in case for name in required):
                raise ValueError(f"datalist {path}: {key}[{index}] must be an object with keys {required}")
        content[key] = [
            _map_paths(case, lambda value: os.path.normpath(os.path.join(dataset_dir, value))) for case in cases
        ]
    return content
