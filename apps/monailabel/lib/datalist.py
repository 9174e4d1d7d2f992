"""From a MONAI Label datastore to a bundle's datalist, and the overrides that train a bundle on it.

Pure logic, without MONAI Label (numpy, Pillow, nibabel, h5py, torch and MONAI only), so that it runs and is tested
where MONAI Label is not installed; :mod:`lib.trainers` is the MONAI Label glue around it.

- Labels: MONAI Label stores what a client saves (``PUT /datastore/label``) as it comes: NIfTI, NRRD (3D Slicer),
  PNG with label indices 0/1 or 8-bit masks 0/255, RGB masks, 2D labels with a singleton axis (``1 x H x W``).
  :func:`normalise_label` reads any of them with MONAI's ``LoadImage``, gives it the image's spatial shape (singleton
  axes dropped, colour channels reduced by their maximum) and label indices 0..n, and writes a PNG (2D, read back
  by the bundles' ``PILReader``) or a NIfTI file (3D), so that the bundle reads it with ``label_threshold`` 1.
- Cases: the datastore's labeled studies are the bundle's ``training`` and ``validation`` lists
  (:func:`split_labeled`), its unlabeled studies the bundle's ``unlabeled`` list, which UG-MCL, ASE-Net and DFCPS
  train on without labels (:func:`build_datalist`).
- Overrides (:func:`train_overrides`): the datalist and its readers, batch sizes that fit a few labeled cases, a
  validation interval that fits the requested epochs (so that a short training writes ``models/model.pt``), and
  ``resume`` off when the newest interval checkpoint has already finished its schedule (MONAI Label's train request
  then trains again, from the current model).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LABEL_THRESHOLD",
    "build_datalist",
    "finished_run",
    "fit_batch_sizes",
    "fit_val_interval",
    "image_spatial_shape",
    "label_indices",
    "network_with_weights",
    "normalise_label",
    "split_labeled",
    "train_overrides",
]

logger = logging.getLogger(__name__)

LABEL_THRESHOLD = 1
"""``label_threshold`` of the bundles for normalised labels: foreground is label index 1 and above."""

_PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_H5_SUFFIXES = (".h5", ".hdf5")
_STEP_PREFIX = "checkpoint_"


def _suffix(path: str | os.PathLike) -> str:
    name = os.fspath(path).lower()
    for double in (".nii.gz", ".seg.nrrd"):
        if name.endswith(double):
            return double
    return os.path.splitext(name)[1]


def image_spatial_shape(path: str | os.PathLike, dimension: int) -> tuple[int, ...]:
    """The spatial shape of an image as MONAI's readers give it, read from its header where possible.

    2D files are ``(width, height)`` (MONAI's ``PILReader`` order); an HDF5 volume is the shape of its ``image``
    dataset (the LA layout, read by the bundles' ``H5Reader``); other files are read with MONAI's ``LoadImage``.

    Args:
        path: the image file.
        dimension: 2 or 3, the bundle's spatial dimension (channels of a colour image are dropped).

    Returns:
        ``dimension`` sizes.
    """
    suffix = _suffix(path)
    if suffix in _PIL_SUFFIXES:
        from PIL import Image

        with Image.open(path) as image:
            return tuple(int(s) for s in image.size)
    if suffix in _H5_SUFFIXES:
        import h5py

        with h5py.File(path, "r") as h5:
            return tuple(int(s) for s in h5["image"].shape[:dimension])
    from monai.transforms import LoadImage

    array = LoadImage(image_only=True)(os.fspath(path))
    return tuple(int(s) for s in array.shape[:dimension])


def label_indices(array: np.ndarray, spatial_shape: Sequence[int], num_labels: int, name: str = "label") -> np.ndarray:
    """A label array as the bundle trains on it: the image's spatial shape, label indices ``0..num_labels``.

    Shape: a trailing colour axis (3 or 4 channels, where the image has none) is reduced to its maximum over the
    colour channels (alpha dropped); singleton axes are dropped until the array has the image's dimension (MONAI
    Label's 2D labels come as ``1 x W x H`` or ``W x H x 1``). Values: labels whose maximum is at most
    ``num_labels`` are label indices and kept (for one label, every non-zero value is 1); a single-label mask with a
    larger maximum (an 8-bit mask, 0/255, possibly JPEG-noisy) is foreground at or above half its maximum.

    Args:
        array: the label as MONAI's ``LoadImage`` reads it (no channel axis added).
        spatial_shape: the image's spatial shape (:func:`image_spatial_shape`).
        num_labels: number of labels besides the background (the bundle's ``channel_def`` without ``background``).
        name: the label's name in error messages (its file).

    Returns:
        a ``uint8`` array of shape ``spatial_shape``.

    Raises:
        ValueError: a shape that is not the image's once singleton axes are dropped (a transposed label too), or
            values of a multi-label model that are not label indices.
    """
    label = np.asarray(array)
    shape = tuple(int(s) for s in spatial_shape)
    if label.ndim == len(shape) + 1 and label.shape[-1] in (3, 4) and label.shape[:-1] == shape:
        label = label[..., :3].max(axis=-1)
    while label.ndim > len(shape) and 1 in label.shape:
        label = label.squeeze(axis=label.shape.index(1))
    if label.shape != shape:
        raise ValueError(
            f"{name}: a label of shape {tuple(np.asarray(array).shape)} does not fit its image of spatial shape {shape}"
            " (MONAI Label's order); save the label in the image's geometry"
        )
    if not np.all(np.isfinite(label)) or label.min() < 0:
        raise ValueError(f"{name}: label values must be finite and non-negative, got min {label.min()}")
    top = float(label.max()) if label.size else 0.0
    if top <= num_labels:
        indices = np.rint(label) if num_labels > 1 else label > 0
    elif num_labels == 1:
        indices = label >= top / 2  # an 8-bit mask: 255 (or a JPEG's near-255 values) is foreground
    else:
        raise ValueError(
            f"{name}: values up to {top:g} are not label indices of a model with {num_labels} labels (0..{num_labels})"
        )
    return np.asarray(indices, dtype=np.uint8)


def _write_label(label: np.ndarray, affine: np.ndarray | None, path: Path) -> None:
    """PNG for 2D (transposed: ``PILReader`` reads ``(width, height)``), NIfTI for 3D; atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{''.join(path.suffixes)}")
    if label.ndim == 2:
        from PIL import Image

        Image.fromarray(np.ascontiguousarray(label.T), mode="L").save(temporary, format="PNG")
    else:
        import nibabel as nib

        matrix = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        nib.save(nib.Nifti1Image(label, matrix), temporary)
    os.replace(temporary, path)


def normalise_label(
    label_path: str | os.PathLike,
    image_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    case_id: str,
    dimension: int,
    num_labels: int = 1,
) -> Path:
    """Write a datastore label as the bundle reads it: ``<out_dir>/<case_id>.png`` (2D) or ``.nii.gz`` (3D).

    The file gets the source label's modification time, and is not rewritten while the source keeps it: the
    bundles' checkpoints recognise a run by its files' names, sizes and times (``common.handlers.RunRecord``), so an
    unchanged datastore is the same run and a new or changed label a new one.

    Args:
        label_path: the datastore's label (NIfTI, NRRD, PNG, ... : what MONAI's ``LoadImage`` reads).
        image_path: its image (for the spatial shape).
        out_dir: folder of the normalised labels.
        case_id: the image id (the file name).
        dimension: the bundle's spatial dimension, 2 or 3.
        num_labels: labels besides the background.

    Returns:
        the normalised label file.
    """
    source = Path(label_path)
    out = Path(out_dir) / f"{case_id}{'.png' if dimension == 2 else '.nii.gz'}"
    stat = source.stat()
    if out.is_file() and out.stat().st_mtime_ns == stat.st_mtime_ns:
        return out
    from monai.transforms import LoadImage

    array, meta = LoadImage(image_only=False)(os.fspath(source))
    shape = image_spatial_shape(image_path, dimension)
    label = label_indices(np.asarray(array), shape, num_labels, name=os.fspath(source))
    affine = meta.get("affine") if dimension == 3 else None
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_label(label, None if affine is None else np.asarray(affine), out)
    os.utime(out, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return out


def split_labeled(
    cases: Sequence[Mapping[str, Any]], val_split: float, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Labeled cases for training and for validation (which selects ``model.pt``).

    ``round(val_split * n)`` cases (halves up) are drawn for validation with a seeded permutation of the cases sorted
    by id; the others train. When that leaves no validation case or no training case (a few labels: 2 cases and
    MONAI Label's default 0.2), every labeled case both trains and validates, and the validation score is then a
    training score (logged as a warning).

    Args:
        cases: ``{"id", "image", "label"}`` dicts.
        val_split: fraction for validation, in [0, 1); 0 or less validates on the training cases.
        seed: seed of the draw.

    Returns:
        ``(training, validation)``, each sorted by id.
    """
    ordered = sorted((dict(c) for c in cases), key=lambda c: str(c["id"]))
    n = len(ordered)
    n_val = math.floor(val_split * n + 0.5) if val_split > 0 else 0
    if n_val == 0 or n_val >= n:
        if n:
            logger.warning(
                f"{n} labeled case(s) and val_split {val_split}: every labeled case trains and validates, so the "
                "validation score that selects model.pt is a training score"
            )
        return ordered, [dict(c) for c in ordered]
    chosen = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    training = [c for i, c in enumerate(ordered) if i not in chosen]
    validation = [c for i, c in enumerate(ordered) if i in chosen]
    return training, validation


def build_datalist(
    labeled: Sequence[Mapping[str, Any]],
    unlabeled: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    dimension: int,
    num_labels: int = 1,
    val_split: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """The bundle's datalist from a datastore: labeled studies train and validate, unlabeled ones are ``unlabeled``.

    Labels are normalised into ``<out_dir>/labels/`` (:func:`normalise_label`); the datalist is also written to
    ``<out_dir>/datalist.json`` (the format of ``common.data.datalist``), for inspection.

    Args:
        labeled: ``{"id", "image", "label"}`` per labeled study (absolute paths).
        unlabeled: ``{"id", "image"}`` per study without a final label.
        out_dir: the app's working folder for this bundle.
        dimension: the bundle's spatial dimension.
        num_labels: labels besides the background.
        val_split: see :func:`split_labeled`.
        seed: see :func:`split_labeled`.

    Returns:
        ``{"name", "dataset_dir", "training", "unlabeled", "validation", "test"}``; ``test`` is empty (MONAI Label
        has no held-out split).

    Raises:
        ValueError: no labeled study.
    """
    if not labeled:
        raise ValueError("the datastore has no labeled study: save a label (PUT /datastore/label) before training")
    out = Path(out_dir)
    cases = []
    for case in labeled:
        label = normalise_label(case["label"], case["image"], out / "labels", str(case["id"]), dimension, num_labels)
        cases.append({"id": str(case["id"]), "image": os.fspath(case["image"]), "label": os.fspath(label)})
    training, validation = split_labeled(cases, val_split, seed)
    datalist = {
        "name": "monailabel_datastore",
        "dataset_dir": os.fspath(out),
        "training": training,
        "unlabeled": sorted(
            ({"id": str(c["id"]), "image": os.fspath(c["image"])} for c in unlabeled), key=lambda c: c["id"]
        ),
        "validation": validation,
        "test": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "datalist.json").write_text(json.dumps(datalist, indent=2) + "\n")
    return datalist


def fit_batch_sizes(
    batch_size: int, labeled_batch_size: int | None, num_labeled: int, num_unlabeled: int
) -> dict[str, int]:
    """Batch sizes that a few cases can fill (the bundles' loaders drop incomplete batches).

    A semi-supervised bundle's batch is ``labeled_batch_size`` labeled cases and ``batch_size - labeled_batch_size``
    unlabeled ones; each part is capped by its number of cases. A supervised bundle (``labeled_batch_size`` None)
    caps ``batch_size`` by the labeled cases.

    Returns:
        the overrides that change: ``{"batch_size": ..., "labeled_batch_size": ...}``, or ``{}``.
    """
    if labeled_batch_size is None:
        capped = max(1, min(batch_size, num_labeled))
        return {"batch_size": capped} if capped != batch_size else {}
    labeled_part = max(1, min(labeled_batch_size, num_labeled))
    unlabeled_part = max(1, min(batch_size - labeled_batch_size, num_unlabeled))
    changed = {}
    if labeled_part != labeled_batch_size:
        changed["labeled_batch_size"] = labeled_part
    if labeled_part + unlabeled_part != batch_size:
        changed["batch_size"] = labeled_part + unlabeled_part
    return changed


def fit_val_interval(val_interval: int, max_epochs: int) -> int:
    """A validation interval that validates within ``max_epochs`` (dmgsa validates every 5 epochs: a 1-epoch
    training would never write ``model.pt``, which the best-metric saver writes at a validation)."""
    return max(1, min(int(val_interval), int(max_epochs)))


def finished_run(ckpt_dir: str | os.PathLike, engine_key: str = "trainer") -> Path | None:
    """The newest interval checkpoint (``checkpoint_*=<N>.pt``) when its run had finished its schedule, else None.

    The bundles resume from it when the data and the schedule are the same (``common.handlers.ResumeCheckpointLoader``),
    which after a finished run trains zero iterations: MONAI Label's next train request, on the same labels, would do
    nothing. The app then passes ``resume`` false, and the request trains again from ``models/model.pt``.
    """
    import re

    import torch

    folder = Path(ckpt_dir)
    step = re.compile(r"=(\d+)\.pt$")
    numbered = [(int(m.group(1)), p) for p in folder.glob(f"{_STEP_PREFIX}*.pt") if (m := step.search(p.name))]
    if not numbered:
        return None
    newest = max(numbered)[1]
    try:
        state = torch.load(newest, map_location="cpu", weights_only=True, mmap=True).get(engine_key, {})
    except (RuntimeError, OSError, EOFError, AttributeError) as error:  # unreadable: the bundle's loader says why
        logger.warning(f"{newest}: cannot read its trainer state ({error})")
        return None
    total = int(state.get("max_epochs") or 0) * int(state.get("epoch_length") or 0)
    return newest if total and int(state.get("iteration", 0)) >= total else None


def network_with_weights(network: Any, path: str, device: Any = None) -> Any:
    """A bundle's ``network_def`` with the weights of ``path`` (strictly), moved to ``device``.

    The app sets the training config's ``network`` to this instead of MONAI Label's ``CheckpointLoader``, which it
    inserts first into ``train#handlers`` and so moves every handler the configs reference by position (the EMA
    teacher of ``@train#handlers#1``).

    Args:
        network: the instantiated ``network_def``.
        path: a state dict (``models/model.pt``), or a checkpoint holding it under ``model`` or ``network``.
        device: where the network goes.

    Raises:
        RuntimeError: weights that do not fit the network (names and shapes, from ``load_state_dict``).
    """
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "network"):
        if isinstance(state.get(key), Mapping):
            state = state[key]
            break
    network.load_state_dict(state, strict=True)
    return network.to(device) if device is not None else network


def train_overrides(
    parser: Any,
    datalist: Mapping[str, Any],
    max_epochs: int,
    dimension: int,
    dataset_dir: str | None = None,
    start_weights: str | None = None,
) -> dict[str, Any]:
    """The config overrides that train a bundle on a datastore's datalist (besides MONAI Label's own).

    Args:
        parser: a MONAI ``ConfigParser`` holding the training configs (``train.json`` and its overlays).
        datalist: from :func:`build_datalist`.
        max_epochs: the request's epochs.
        dimension: the bundle's spatial dimension.
        dataset_dir: the datastore's folder (shown in the training banner).
        start_weights: weights to start from (a copy of ``models/model.pt``), or None.

    Returns:
        ``{config id: value}``: ``datalist``, ``train#dataset#data``, ``validate#dataset#data``, ``label_threshold``
        (1: normalised labels), ``label_reader`` (None, chosen by suffix, for 3D bundles whose reader is the data
        set's, such as the LA layout's HDF5 reader), ``val_interval``, batch sizes, ``include_labeled_as_unlabeled``
        (a semi-supervised bundle with no unlabeled study), ``progress_bar`` off (MONAI Label logs lines),
        ``resume`` off after a finished run, ``network`` with ``start_weights``.
    """
    semi = "train#unlabeled_dataset" in parser
    overrides: dict[str, Any] = {
        "datalist": dict(datalist),
        "train#dataset#data": list(datalist["training"]),
        "validate#dataset#data": list(datalist["validation"]),
    }
    if dataset_dir is not None and "dataset_dir" in parser:
        overrides["dataset_dir"] = dataset_dir
    if "label_threshold" in parser:
        overrides["label_threshold"] = LABEL_THRESHOLD
    if dimension == 3 and "label_reader" in parser:
        overrides["label_reader"] = None
    if "progress_bar" in parser:
        overrides["progress_bar"] = False
    if "val_interval" in parser:
        val_interval = int(parser.get_parsed_content("val_interval"))
        fitted = fit_val_interval(val_interval, max_epochs)
        if fitted != val_interval:
            logger.info(f"val_interval {val_interval} -> {fitted}: validate (and write model.pt) within {max_epochs}")
        overrides["val_interval"] = fitted
    num_unlabeled = len(datalist["unlabeled"])
    if semi and not num_unlabeled and "include_labeled_as_unlabeled" in parser:
        logger.warning("no unlabeled study in the datastore: the labeled studies are also used without their labels")
        overrides["include_labeled_as_unlabeled"] = True
        num_unlabeled = len(datalist["training"])
    if "batch_size" in parser:
        labeled_batch_size = int(parser.get_parsed_content("labeled_batch_size")) if semi else None
        batch_sizes = fit_batch_sizes(
            int(parser.get_parsed_content("batch_size")), labeled_batch_size, len(datalist["training"]), num_unlabeled
        )
        if batch_sizes:
            counts = f"{len(datalist['training'])} labeled, {num_unlabeled} unlabeled"
            logger.info(f"batch sizes for {counts} cases: {batch_sizes}")
        overrides.update(batch_sizes)
    ckpt_dir = parser.get_parsed_content("ckpt_dir") if "ckpt_dir" in parser else None
    finished = finished_run(ckpt_dir) if ckpt_dir else None
    if finished is not None and "resume" in parser:
        logger.info(f"{finished} finished its schedule: this request trains again, from models/model.pt")
        overrides["resume"] = False
    if start_weights is not None and "network" in parser and "network_def" in parser:
        overrides["network"] = {
            "_target_": f"{__name__}.network_with_weights",
            "network": "@network_def",
            "path": start_weights,
            "device": "@device",
        }
    return overrides
