"""Checkpoints that survive a killed run: atomic writes, and resumption from the newest one."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import random
import re
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

__all__ = [
    "AtomicCheckpointSaver",
    "GradScalerStates",
    "RandomStates",
    "ResumeCheckpointLoader",
    "RunRecord",
    "data_fingerprint",
    "find_loaders",
    "find_random_generators",
    "latest_checkpoint",
]

SCALERS_KEY = "amp_scalers"
"""Checkpoint key of the engine's gradient scalers (saved and restored with ``engine_key``)."""

RANDOM_STATES_KEY = "random_states"
"""Checkpoint key of every random generator of the run (:class:`RandomStates`; saved and restored with
``engine_key``)."""

RUN_KEY = "run"
"""Checkpoint key of what identifies the run (:class:`RunRecord`: the data and the loaders' batch sizes)."""

PREVIOUS_RUNS = "previous_runs"
"""Sub-folder of ``ckpt_dir`` where the files of a run that is not resumed are moved, one folder per move."""

_STEP = re.compile(r"=(\d+)\.pt$")


def _flag(value: bool | str, name: str) -> bool:
    """A boolean from a config or the command line, where ``--resume false`` arrives as the string ``"false"``."""
    if isinstance(value, str):
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if value.strip().lower() not in words:
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return words[value.strip().lower()]
    return bool(value)


def _load_lazily(checkpoint: Path) -> dict:
    """A checkpoint's content, memory-mapped: only what is read of it is loaded."""
    return torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)


class _AtomicDiskSaver(DiskSaver):
    """Ignite's atomic ``DiskSaver`` (temporary file, then ``os.replace``) with MONAI's fixed-filename option.

    Ignite asks to remove the superseded file *before* writing the new one; a run killed in between would have no
    checkpoint at all. Removals are therefore deferred until the new file is in place.
    """

    def __init__(self, dirname: str | Path, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename
        self._pending_removal: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        target = self.filename or filename
        super().__call__(checkpoint, target, metadata)
        for old in self._pending_removal:
            if old != target and (Path(self.dirname) / old).exists():
                super().remove(old)
        self._pending_removal = []

    def remove(self, filename: str) -> None:
        self._pending_removal.append(self.filename or filename)


class GradScalerStates:
    """The AMP gradient scalers of an engine, as one checkpointable object.

    MONAI's trainers create their ``GradScaler`` in ``run()`` (and :class:`common.engines.MultiDiscriminatorTrainer`
    one per discriminator, in ``d_scalers``), after the handlers are attached, so the scalers are looked up on the
    engine each time a checkpoint is written or read. Without them a resumed AMP run would restart the loss scale at
    its initial value and skip steps until it has found it again.

    Args:
        engine: the trainer.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def scalers(self) -> dict[str, torch.amp.GradScaler]:
        """The engine's enabled scalers by attribute name (``"scaler"``, ``"d_scalers.moni"``, ...)."""
        found = {}
        for name, value in vars(self.engine).items():
            items = value.items() if isinstance(value, Mapping) else [(None, value)]
            for key, item in items:
                if isinstance(item, torch.amp.GradScaler) and item.is_enabled():
                    found[name if key is None else f"{name}.{key}"] = item
        return found

    def state_dict(self) -> dict:
        return {name: scaler.state_dict() for name, scaler in self.scalers().items()}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore the scalers saved under the same names; others keep their initial state (e.g. AMP newly on)."""
        scalers = self.scalers()
        for name, state in state_dict.items():
            if name in scalers and state:
                scalers[name].load_state_dict(state)


# --- random states ---------------------------------------------------------------------------------------------------

# values that hold no generator and are not worth walking into
_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), torch.Tensor, np.ndarray, np.generic)
_OPAQUE = (types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type, logging.Logger, torch.device)
_MAX_DEPTH = 24


def _attributes(obj: Any) -> Iterator[tuple[str, Any]]:
    """The attributes of ``obj`` to walk, in a fixed order: public ones (``vars`` order, which is creation order and
    the same in every process for the same config), then, for an Ignite engine, its event handlers.

    Private attributes are skipped: they hold iterators, caches and the like, whose presence differs between a run
    at epoch ``k`` and a fresh process resuming at epoch ``k`` (e.g. Ignite's ``_dataloader_iter``), and would make
    the names of the generators differ between the two.
    """
    try:
        items = list(vars(obj).items())
    except TypeError:
        return
    is_engine = isinstance(obj, Engine)
    for name, value in items:
        if name.startswith("_") or (is_engine and name == "state"):
            continue
        yield name, value
    if not is_engine:
        return
    # a State holds the last batch and output; only the data given to ``run`` can hold generators
    yield "state.dataloader", obj.state.dataloader
    # handlers by class and number, not by position: a handler registered during a run must not rename the others
    counts: dict[str, int] = {}
    listed: set[int] = set()
    for handlers in obj._event_handlers.values():
        for handler, *_ in handlers:
            target = _handler_object(handler)
            if target is None or id(target) in listed:
                continue
            listed.add(id(target))
            kind = type(target).__name__
            counts[kind] = counts.get(kind, -1) + 1
            yield f"handlers.{kind}{counts[kind]}", target


def _handler_object(handler: Any) -> Any:
    """The object behind an event handler: a bound method's instance (a ValidationHandler leads to its validator),
    through Ignite's event-filter wrappers (``__wrapped__``); None for a plain function."""
    for _ in range(8):
        wrapped = getattr(handler, "__wrapped__", None)
        if wrapped is None:
            break
        handler = wrapped
    if isinstance(handler, types.MethodType):
        return handler.__self__
    if isinstance(handler, (types.FunctionType, types.BuiltinFunctionType)):
        return None
    return handler


def find_random_generators(root: Any) -> dict[str, np.random.RandomState | np.random.Generator | torch.Generator]:
    """Every random generator reachable from ``root``, by the path that first reaches it.

    The walk follows public attributes, list/tuple items and dict values (and, from an Ignite engine, its data and
    event handlers), so from a trainer it reaches its data loaders (a :class:`common.data.LabeledUnlabeledLoader`'s
    two loaders included), their samplers and datasets, every transform of their pipelines, and the validator's. It
    collects the ``R`` of every MONAI ``Randomizable`` (a ``numpy.random.RandomState``, shared ones once), NumPy
    ``Generator`` objects and ``torch.Generator`` objects (a ``DataLoader``'s ``generator``, which also draws its
    sampler's order and its workers' base seed; torch's default generator is left to :class:`RandomStates`).

    Args:
        root: the object to start from (a trainer).

    Returns:
        ``{path: generator}`` in walk order, e.g. ``{"data_loader.dataset.transform.transforms.7.R": RandomState}``.
    """
    found: dict[str, Any] = {}
    seen: set[int] = set()

    def walk(obj: Any, path: str, depth: int) -> None:
        if isinstance(obj, _LEAVES) or isinstance(obj, _OPAQUE) or id(obj) in seen or depth > _MAX_DEPTH:
            return
        seen.add(id(obj))
        if isinstance(obj, (np.random.RandomState, np.random.Generator)):
            found[path] = obj
            return
        if isinstance(obj, torch.Generator):
            if obj is not torch.default_generator:
                found[path] = obj
            return
        if isinstance(obj, Mapping):
            children: Iterator[tuple[str, Any]] = ((str(k), v) for k, v in obj.items())
        elif isinstance(obj, (list, tuple)):
            children = ((str(i), v) for i, v in enumerate(obj))
        else:
            children = _attributes(obj)
        for name, child in children:
            walk(child, f"{path}.{name}" if path else name, depth + 1)

    walk(root, "", 0)
    return found


def _numpy_state(generator: np.random.RandomState | np.random.Generator) -> dict:
    """A generator's state in types ``torch.load(weights_only=True)`` reads (no NumPy arrays)."""
    if isinstance(generator, np.random.Generator):
        return {"bit_generator": dict(generator.bit_generator.state)}
    kind, keys, pos, has_gauss, gauss = generator.get_state(legacy=True)
    return {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": has_gauss,
        "gauss": float(gauss),
    }


def _set_numpy_state(generator: np.random.RandomState | np.random.Generator, state: Mapping) -> None:
    if isinstance(generator, np.random.Generator):
        generator.bit_generator.state = dict(state["bit_generator"])
        return
    keys = np.asarray(state["keys"].cpu().numpy(), dtype=np.uint32)
    generator.set_state((state["kind"], keys, int(state["pos"]), int(state["has_gauss"]), float(state["gauss"])))


class RandomStates:
    """Every random number generator a training run draws from, as one checkpointable object.

    Saved in every interval checkpoint of :class:`AtomicCheckpointSaver` (with ``engine_key``) and restored by
    :class:`ResumeCheckpointLoader`, so that a resumed run draws the very numbers the uninterrupted run would have
    drawn after the same epoch: the shuffling of every loader, every random transform, dropout, noise. It holds

    - torch's default CPU generator, each CUDA device's generator (when CUDA is initialised), NumPy's global
      generator and Python's ``random``;
    - every generator :func:`find_random_generators` finds from the engine: the ``R`` of each MONAI
      ``Randomizable`` transform of the training (and validation) pipelines, and each ``torch.Generator`` of a
      loader or sampler.

    With ``num_workers=0`` the transforms run in the main process and their ``R`` carries over from epoch to epoch,
    so it is saved. With ``num_workers > 0`` each epoch starts new worker processes whose transforms MONAI's
    ``worker_init_fn`` reseeds from the loader's base seed (``base_seed + worker_id``); that base seed is drawn, when
    the loader's iterator is created, from the loader's ``generator`` or else torch's default one, both saved here,
    so the workers of the resumed epoch get the same seeds. ``persistent_workers=True`` keeps the transforms'
    states inside the worker processes, out of reach: a warning says so when such a loader is found.

    Args:
        engine: the trainer; it is walked each time a checkpoint is written or read, as the generators of objects
            created in ``run()`` exist only then.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._warned_persistent = False

    def generators(self) -> dict[str, np.random.RandomState | np.random.Generator | torch.Generator]:
        """The generators reachable from the engine (see :func:`find_random_generators`)."""
        return find_random_generators(self.engine)

    def _warn_persistent_workers(self) -> None:
        if self._warned_persistent:
            return
        loaders = [
            obj
            for obj in find_loaders(self.engine)
            if getattr(obj, "persistent_workers", False) and getattr(obj, "num_workers", 0) > 0
        ]
        if loaders:
            self._warned_persistent = True
            logging.getLogger(__name__).warning(
                "a data loader has persistent_workers=True: its workers keep their transforms' random states, which "
                "no checkpoint can hold, so a resumed run will draw other augmentations than an uninterrupted one."
            )

    def state_dict(self) -> dict:
        """The states, in types that ``torch.load(weights_only=True)`` reads.

        Returns:
            ``{"torch": ByteTensor, "cuda": [ByteTensor per device], "numpy": {...}, "python": tuple,
            "generators": {path: state}}``.
        """
        self._warn_persistent_workers()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        states = {}
        for path, generator in self.generators().items():
            if isinstance(generator, torch.Generator):
                states[path] = {"torch": generator.get_state()}
            else:
                states[path] = {"numpy": _numpy_state(generator)}
        return {
            "torch": torch.get_rng_state(),
            "cuda": cuda,
            "numpy": _numpy_state(np.random.mtrand._rand),
            "python": random.getstate(),
            "generators": states,
        }

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore the states saved by :meth:`state_dict`.

        Generators found under the same path get their saved state; a warning lists those found on one side only
        (the pipeline changed: the resumed run then draws other numbers there).

        Args:
            state_dict: what :meth:`state_dict` returned (tensors may have been mapped to another device).
        """
        torch.set_rng_state(state_dict["torch"].cpu())
        saved_cuda = list(state_dict.get("cuda", []))
        if saved_cuda and torch.cuda.is_available():
            if len(saved_cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([state.cpu() for state in saved_cuda])
            else:
                logging.getLogger(__name__).warning(
                    f"the checkpoint holds the generators of {len(saved_cuda)} CUDA devices, this machine has "
                    f"{torch.cuda.device_count()}: CUDA random numbers are not restored."
                )
        _set_numpy_state(np.random.mtrand._rand, state_dict["numpy"])
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        saved = dict(state_dict.get("generators", {}))
        current = self.generators()
        for path, generator in current.items():
            if path not in saved:
                continue
            state = saved[path]
            if isinstance(generator, torch.Generator) and "torch" in state:
                generator.set_state(state["torch"].cpu())
            elif not isinstance(generator, torch.Generator) and "numpy" in state:
                _set_numpy_state(generator, state["numpy"])
        unmatched = sorted(set(saved) ^ set(current))
        if unmatched:
            logging.getLogger(__name__).warning(
                f"random generators not restored (the training pipeline differs from the checkpoint's): {unmatched}"
            )


# --- what identifies a run --------------------------------------------------------------------------------------------


def find_loaders(root: Any) -> list[Any]:
    """The data loaders (objects with ``dataset`` and ``batch_size``) a trainer reads: its ``data_loader`` (MONAI)
    or the data given to ``run`` (Ignite), and the loaders such an object wraps (a ``LabeledUnlabeledLoader``'s two).

    Args:
        root: a trainer, or a loader.

    Returns:
        the loaders, outermost first.
    """
    start = getattr(root, "data_loader", None) if isinstance(root, Engine) else root
    if start is None and isinstance(root, Engine):
        start = root.state.dataloader
    found: list[Any] = []
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if obj is None or isinstance(obj, _LEAVES + _OPAQUE) or id(obj) in seen or depth > 3:
            return
        seen.add(id(obj))
        if hasattr(obj, "dataset") and hasattr(obj, "batch_size"):
            found.append(obj)
            return
        if isinstance(obj, (list, tuple)) or not hasattr(obj, "__dict__"):
            return
        for _, child in _attributes(obj):
            walk(child, depth + 1)

    walk(start, 0)
    return found


def _cases(dataset: Any) -> Sequence | None:
    """The case list a dataset reads (MONAI's ``Dataset.data``, a plain list), or None when it has none."""
    for candidate in (getattr(dataset, "data", None), dataset):
        if isinstance(candidate, (list, tuple)):
            return candidate
    inner = getattr(dataset, "dataset", None)  # torch's Subset
    return _cases(inner) if inner is not None and inner is not dataset else None


def _case_summary(case: Any) -> list:
    """What identifies one case: its ids and numbers, and for each file it names, the file's name, size and mtime."""
    items = sorted(case.items(), key=lambda kv: str(kv[0])) if isinstance(case, Mapping) else [("", case)]
    summary = []
    for key, value in items:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, os.PathLike)) and os.path.isfile(item):
                stat = os.stat(item)
                summary.append([str(key), os.path.basename(os.fspath(item)), stat.st_size, stat.st_mtime_ns])
            elif isinstance(item, (str, int, float, bool)):
                summary.append([str(key), item])
    return summary


def data_fingerprint(cases: Sequence) -> dict:
    """A fingerprint of a datalist: the case ids and values, and the name, size and modification time of each file.

    Two runs on the same files (also after the folder moved, or was copied with its times) get the same
    fingerprint; another data set, a changed split or a rewritten file gets another one.

    Args:
        cases: datalist items (``{"id": ..., "image": path, "label": path}``) or file paths.

    Returns:
        ``{"sha256": hex digest, "cases": number of cases, "folder": the files' common folder ("" when none)}``.
    """
    digest = hashlib.sha256()
    files = []
    for case in cases:
        summary = _case_summary(case)
        digest.update(repr(summary).encode())
        files += [
            item
            for value in (case.values() if isinstance(case, Mapping) else [case])
            for item in (value if isinstance(value, (list, tuple)) else [value])
            if isinstance(item, (str, os.PathLike)) and os.path.isfile(item)
        ]
    try:
        folder = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]) if files else ""
    except ValueError:  # files on different drives
        folder = ""
    return {"sha256": digest.hexdigest(), "cases": len(cases), "folder": folder}


class RunRecord:
    """What identifies a training run beyond its schedule and network, saved in every interval checkpoint.

    ``data``: a :func:`data_fingerprint` per loader the trainer reads (a semi-supervised trainer's labeled and
    unlabeled loaders), None for a loader without a case list; ``batch_sizes``: each loader's batch size. The
    record is computed once, at the first checkpoint (the files do not change during a run). Loading it restores
    nothing: :class:`ResumeCheckpointLoader` compares it with the current run before deciding to resume.

    Args:
        engine: the trainer.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._record: dict | None = None

    def state_dict(self) -> dict:
        """``{"data": [fingerprint or None per loader], "batch_sizes": [int or None per loader]}``."""
        if self._record is None:
            loaders = find_loaders(self.engine)
            data = []
            for loader in loaders:
                cases = _cases(loader.dataset)
                data.append(None if cases is None else data_fingerprint(cases))
            self._record = {"data": data, "batch_sizes": [getattr(loader, "batch_size", None) for loader in loaders]}
        return dict(self._record)

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Nothing to restore (the record describes the run; see :meth:`ResumeCheckpointLoader.mismatch`)."""


def _close_finished_data_iterator(engine: Engine) -> None:
    """End the epoch's data iterator now, when it has yielded its last batch, so that it is recreated next epoch.

    Ignite stops an epoch after ``epoch_length`` batches without asking the iterator for more; the next epoch's
    first ``next()`` then ends it, and ending it draws random numbers: torch's ``RandomSampler`` draws one more
    permutation from the loader's generator when it runs out. A run resumed at that epoch boundary creates a new
    iterator without ending an old one, so it would draw from a generator one permutation behind. Ending the
    iterator here, before the checkpoint's random states are read, puts the uninterrupted run in the state of a
    resumed one: both create the next epoch's iterator from the saved states.
    """
    iterator = getattr(engine, "_dataloader_iter", None)
    data = engine.state.dataloader
    if iterator is None or data is None or not engine.state.epoch_length:
        return
    try:
        finished = len(data) == engine.state.epoch_length and engine.state.iteration % engine.state.epoch_length == 0
    except TypeError:  # an iterable without a length continues across epochs
        return
    if not finished:
        return
    try:
        batch = next(iterator)
    except StopIteration:
        engine._dataloader_iter = None  # Ignite creates the next one at the next epoch's start, as on resume
        return
    engine._dataloader_iter = itertools.chain([batch], iterator)  # not finished after all: keep the batch


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` whose files are written atomically.

    MONAI writes checkpoints in place (``atomic=False``), so a run killed while saving leaves a truncated file
    that the next run cannot resume from. Here every checkpoint is serialised to a temporary file in the same
    folder and moved over the destination with ``os.replace``: a reader sees the old file or the new one, never
    half of one.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects to save (each with ``state_dict``).
        engine_key: when given, the engine this handler is attached to is saved too, under this key. A config
            cannot list the trainer in the ``save_dict`` of one of the trainer's own handlers (that is a circular
            reference), so the trainer state needed for resumption is added here at ``attach`` time, with the
            trainer's AMP gradient scalers under ``"amp_scalers"`` (:class:`GradScalerStates`; empty without AMP),
            every random generator of the run under ``"random_states"`` (:class:`RandomStates`) and what identifies
            the run's data under ``"run"`` (:class:`RunRecord`).
        kwargs: other arguments of :class:`monai.handlers.CheckpointSaver`.
    """

    def __init__(self, save_dir: str, save_dict: dict, engine_key: str | None = None, **kwargs) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        self.engine_key = engine_key
        fixed_names = {
            "_final_checkpoint": kwargs.get("final_filename"),
            "_key_metric_checkpoint": kwargs.get("key_metric_filename"),
            "_interval_checkpoint": None,
        }
        for attr, filename in fixed_names.items():
            checkpoint = getattr(self, attr)
            if checkpoint is not None:
                checkpoint.save_handler = _AtomicDiskSaver(save_dir, filename)

    def attach(self, engine: Engine) -> None:
        if self.engine_key is not None:
            # ignite's Checkpoint objects hold this very dict, so the engine is saved from now on
            self.save_dict[self.engine_key] = engine
            self.save_dict[SCALERS_KEY] = GradScalerStates(engine)
            self.save_dict[RANDOM_STATES_KEY] = RandomStates(engine)
            self.save_dict[RUN_KEY] = RunRecord(engine)
        super().attach(engine)

    def interval_completed(self, engine: Engine) -> None:
        if self.engine_key is not None:
            _close_finished_data_iterator(engine)
        super().interval_completed(engine)
        self._remove_stale_interval_checkpoints()

    def _remove_stale_interval_checkpoints(self) -> None:
        """Keep only the interval checkpoints this saver tracks (the newest ``n_saved``).

        A resumed run starts with an empty tracking list, and a run started with ``--resume False`` finds an older
        run's files: without this clean-up those files would linger and a later resume could pick the wrong one.
        """
        checkpoint = self._interval_checkpoint
        if checkpoint is None or not checkpoint._saved:
            return
        kept = {item.filename for item in checkpoint._saved}
        newest = checkpoint._saved[-1].filename
        # interval files share the newest one's name up to "=<step>.pt"
        stem = _STEP.sub("=", newest)
        for path in Path(self.save_dir).glob(f"{glob_escape(stem)}*.pt"):
            if path.name not in kept and _STEP.search(path.name):
                path.unlink(missing_ok=True)

    def state_dict(self) -> dict:
        """The best-model tracking state (score and file of the best so far), so that an interval checkpoint can
        carry it and a resumed run does not overwrite a better model with a worse one.

        Returns:
            Ignite's ``Checkpoint.state_dict()`` of the key-metric saver (``{"_saved": [(score, file), ...]}``).

        Raises:
            ValueError: when this saver does not track a key metric.
        """
        if self._key_metric_checkpoint is None:
            raise ValueError("state_dict() is only defined for a saver with save_key_metric=True.")
        return self._key_metric_checkpoint.state_dict()


def latest_checkpoint(ckpt_dir: str | Path, pattern: str = "checkpoint_*.pt") -> Path | None:
    """Return the checkpoint in ``ckpt_dir`` matching ``pattern`` with the largest step number, or None.

    Ignite names interval checkpoints ``<prefix>_<name>_<epoch|iteration>=<N>.pt``; the step ``N`` orders them.

    Args:
        ckpt_dir: folder of the checkpoints.
        pattern: glob pattern of the candidate files.

    Returns:
        path of the newest checkpoint, or None when there is none.
    """
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return None
    numbered = [(int(m.group(1)), p) for p in folder.glob(pattern) if (m := _STEP.search(p.name))]
    return max(numbered)[1] if numbered else None


# hyperparameters of torch's LR schedulers (the rest of their state is progress: last_epoch, _last_lr, best, ...)
_SCHEDULER_KEYS = (
    "base_lrs",
    "total_iters",
    "power",
    "T_max",
    "eta_min",
    "step_size",
    "gamma",
    "milestones",
    "total_steps",
    "T_0",
    "T_mult",
    "start_factor",
    "end_factor",
    "factor",
    "patience",
    "max_lrs",
)
# optimizer param-group entries that change during a run
_PROGRESS_GROUP_KEYS = ("params", "lr")


def _differs(saved: Any, current: Any) -> bool:
    """Whether two hyperparameter values differ (tensors, e.g. a capturable optimizer's, compared by value)."""
    if isinstance(saved, torch.Tensor) or isinstance(current, torch.Tensor):
        return not torch.equal(torch.as_tensor(saved).cpu(), torch.as_tensor(current).cpu())
    return bool(saved != current)


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module a DistributedDataParallel / DataParallel wrapper holds (Ignite saves that one)."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    return module.module if isinstance(module, wrappers) else module


def _shapes(state_dict: Mapping) -> dict[str, tuple[int, ...]]:
    return {str(k): tuple(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


class ResumeCheckpointLoader(CheckpointLoader):
    """Resume training from the newest interval checkpoint in a folder, when it belongs to the same run.

    A thin layer on :class:`monai.handlers.CheckpointLoader`: at ``attach`` time it looks for the newest file
    matching ``pattern`` in ``ckpt_dir`` (see :func:`latest_checkpoint`); when one exists and belongs to this run it
    is loaded into ``load_dict`` (network, optimizer, lr scheduler, trainer state, AMP scalers and every random
    generator, ...) at ``Events.STARTED``, so that Ignite continues from the saved epoch and iteration to the
    configured end, drawing the random numbers the uninterrupted run would have drawn.

    The checkpoint belongs to this run when it has (see :meth:`mismatch`) the same schedule (``max_epochs``,
    ``epoch_length``, the loaders' batch sizes, the optimizers' and LR schedulers' hyperparameters), the same data
    (the :func:`data_fingerprint` of each loader's case list: case ids, file names, sizes and modification times)
    and the same network (the names and shapes of every saved module's tensors). Otherwise, as for a checkpoint
    written before runs were recorded, training starts afresh with one warning that says why; the old run's interval
    checkpoints and best model (the files of the key-metric savers in ``load_dict``) are first moved to
    ``<ckpt_dir>/previous_runs/<time>/``, which the warning names. With no checkpoint, or ``enabled=False``,
    training starts afresh.

    A run that ends having trained zero iterations (say the same command again after a finished training) ends with
    a warning saying so.

    Args:
        ckpt_dir: folder that holds the interval checkpoints written by :class:`AtomicCheckpointSaver`.
        load_dict: objects to restore, keyed as they were saved.
        engine_key: when given, the engine this handler is attached to is restored too, from this key, and so are
            its AMP gradient scalers and random generators when the checkpoint has them (see
            :class:`AtomicCheckpointSaver`); the run is then checked as said above.
        pattern: glob pattern of the candidate files.
        enabled: set False to ignore existing checkpoints (``--resume False``).
        kwargs: other arguments of :class:`monai.handlers.CheckpointLoader` (``map_location``, ``strict``, ...).
    """

    def __init__(
        self,
        ckpt_dir: str,
        load_dict: dict,
        engine_key: str | None = None,
        pattern: str = "checkpoint_*.pt",
        enabled: bool | str = True,
        **kwargs,
    ) -> None:
        super().__init__(load_path=str(Path(ckpt_dir) / pattern), load_dict=load_dict, **kwargs)
        self.ckpt_dir = ckpt_dir
        self.engine_key = engine_key
        self.pattern = pattern
        self.enabled = _flag(enabled, "enabled (--resume)")
        self.resumed_from: Path | None = None
        self.moved_to: Path | None = None
        self._start_iteration: int | None = None

    def _logger(self, engine: Engine) -> logging.Logger:
        return logging.getLogger(self._name) if self._name else engine.logger

    def attach(self, engine: Engine) -> None:
        logger = self._logger(engine)
        latest = latest_checkpoint(self.ckpt_dir, self.pattern) if self.enabled else None
        if latest is None:
            reason = "resume disabled" if not self.enabled else f"no checkpoint in {self.ckpt_dir}"
            logger.info(f"Starting training afresh ({reason}).")
            self._watch_iterations(engine)
            return
        if self.engine_key is not None:
            reasons = self.mismatch(latest, engine)
            if reasons:
                self.moved_to = self._move_aside(latest)
                logger.warning(
                    f"Not resuming from {latest}: it belongs to another run ({'; '.join(reasons)}). Starting afresh; "
                    f"that run's checkpoints and best model were moved to {self.moved_to}."
                )
                self._watch_iterations(engine)
                return
            self.load_dict[self.engine_key] = engine
            saved_keys = self._saved_keys(latest)
            if SCALERS_KEY in saved_keys:
                self.load_dict[SCALERS_KEY] = GradScalerStates(engine)
            if RANDOM_STATES_KEY in saved_keys:
                self.load_dict[RANDOM_STATES_KEY] = RandomStates(engine)
        self.load_path = str(latest)
        self.resumed_from = latest
        logger.info(f"Resuming from {latest} (pass --resume False to start afresh).")
        super().attach(engine)
        self._watch_iterations(engine)  # after the load: the iteration it records is the resumed one

    @staticmethod
    def _saved_keys(checkpoint: Path) -> set[str]:
        return set(_load_lazily(checkpoint))

    def mismatch(self, checkpoint: Path, engine: Engine) -> list[str]:
        """How the run that wrote ``checkpoint`` differs from this one ([] when it is the same run).

        Args:
            checkpoint: an interval checkpoint written with ``engine_key``.
            engine: this run's trainer (its schedule, loaders and, through ``load_dict``, network and optimizers).

        Returns:
            one phrase per difference, e.g. ``"another schedule (max_epochs 3 there, 4 here)"``,
            ``"other data (12 cases in /a there, 12 cases in /b here)"``, ``"another network (...)"``.
        """
        saved = _load_lazily(checkpoint)
        if RUN_KEY not in saved:
            return ["written before checkpoints recorded their run's data, so it cannot be told apart from another run"]
        reasons = []
        schedule = self._schedule_mismatch(saved, engine)
        if schedule:
            reasons.append(f"another schedule ({schedule})")
        data = self._data_mismatch(saved[RUN_KEY], engine)
        if data:
            reasons.append(f"other data ({data})")
        network = self._network_mismatch(saved)
        if network:
            reasons.append(f"another network ({network})")
        return reasons

    def _schedule_mismatch(self, saved: Mapping, engine: Engine) -> str:
        """The schedule's differences: a checkpoint of another run in the same folder (e.g. the CPU quick run before
        the full recipe) must not be resumed: its LR schedule and epoch count belong to that run."""
        trainer = saved.get(self.engine_key, {})
        differences = []
        for key in ("max_epochs", "epoch_length"):
            current = getattr(engine.state, key, None)
            if current is not None and trainer.get(key) is not None and trainer[key] != current:
                differences.append(f"{key} {trainer[key]} there, {current} here")
        saved_sizes = list(saved[RUN_KEY].get("batch_sizes", []))
        current_sizes = RunRecord(engine).state_dict()["batch_sizes"] if find_loaders(engine) else saved_sizes
        if saved_sizes != current_sizes:
            differences.append(f"batch sizes {saved_sizes} there, {current_sizes} here")
        for key, obj in self.load_dict.items():
            if key not in saved:
                continue
            if isinstance(obj, torch.optim.Optimizer):
                differences += self._optimizer_differences(key, saved[key], obj.state_dict())
            elif isinstance(obj, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)):
                current = obj.state_dict()
                for name in _SCHEDULER_KEYS:
                    if name in current and name in saved[key] and _differs(saved[key][name], current[name]):
                        differences.append(f"{key} {name} {saved[key][name]} there, {current[name]} here")
        return ", ".join(differences)

    @staticmethod
    def _optimizer_differences(key: str, saved: Mapping, current: Mapping) -> list[str]:
        saved_groups, current_groups = saved["param_groups"], current["param_groups"]
        if len(saved_groups) != len(current_groups):
            return [f"{key} {len(saved_groups)} parameter groups there, {len(current_groups)} here"]
        differences = []
        for index, (old, new) in enumerate(zip(saved_groups, current_groups)):
            group = f"{key}" if len(current_groups) == 1 else f"{key} group {index}"
            if len(old["params"]) != len(new["params"]):
                differences.append(f"{group} {len(old['params'])} parameters there, {len(new['params'])} here")
            for name in sorted(set(old) | set(new)):
                if name not in _PROGRESS_GROUP_KEYS and _differs(old.get(name), new.get(name)):
                    differences.append(f"{group} {name} {old.get(name)} there, {new.get(name)} here")
        return differences

    @staticmethod
    def _data_mismatch(saved_run: Mapping, engine: Engine) -> str:
        current = RunRecord(engine).state_dict()["data"] if find_loaders(engine) else []
        saved = list(saved_run.get("data", []))
        if not current or not saved:
            return ""  # a trainer whose data is only known in run() (a plain Ignite engine)
        if len(saved) != len(current):
            return f"{len(saved)} data loaders there, {len(current)} here"
        for old, new in zip(saved, current):
            if old is None or new is None or old["sha256"] == new["sha256"]:
                continue
            if old["folder"] != new["folder"]:
                return f"{old['cases']} cases in {old['folder']} there, {new['cases']} cases in {new['folder']} here"
            return f"{old['cases']} cases there, {new['cases']} here, in {new['folder']}: other cases or changed files"
        return ""

    def _network_mismatch(self, saved: Mapping) -> str:
        for key, obj in self.load_dict.items():
            if not isinstance(obj, torch.nn.Module) or key not in saved:
                continue
            old, new = _shapes(saved[key]), _shapes(_unwrap(obj).state_dict())
            if old == new:
                continue
            changed = [name for name in new if name in old and old[name] != new[name]]
            missing, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
            parts = []
            if changed:
                parts.append(
                    f"{len(changed)} tensors of other shapes, e.g. {changed[0]} {old[changed[0]]} there, "
                    f"{new[changed[0]]} here"
                )
            if missing:
                parts.append(f"{len(missing)} tensors only there, e.g. {missing[0]}")
            if added:
                parts.append(f"{len(added)} tensors only here, e.g. {added[0]}")
            return f"{key!r}: " + ", ".join(parts)
        return ""

    def _move_aside(self, latest: Path) -> Path:
        """Move the old run's interval checkpoints and best-model files to a new ``previous_runs/<time>`` folder.

        Only rank 0 moves (the files are shared); every rank gets the folder's name.
        """
        destination = Path(self.ckpt_dir) / PREVIOUS_RUNS / time.strftime("%Y%m%d-%H%M%S")
        if idist.get_rank() != 0:
            return destination
        suffix = 1
        while destination.exists():
            destination = destination.with_name(f"{destination.name.split('.')[0]}.{suffix}")
            suffix += 1
        files = [p for p in Path(self.ckpt_dir).glob(self.pattern) if p.is_file()]
        for obj in self.load_dict.values():
            key_metric = getattr(obj, "_key_metric_checkpoint", None)
            filename = getattr(getattr(key_metric, "save_handler", None), "filename", None)
            if filename and (Path(obj.save_dir) / filename).is_file():
                files.append(Path(obj.save_dir) / filename)
        destination.mkdir(parents=True)
        for path in files:
            os.replace(path, destination / path.name)
        return destination

    def _watch_iterations(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._record_start)

    def _record_start(self, engine: Engine) -> None:
        self._start_iteration = engine.state.iteration
        # registered now, after every handler attached with the trainer, so that the warning is the last word
        if not engine.has_event_handler(self._warn_if_nothing_trained, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self._warn_if_nothing_trained)

    def _warn_if_nothing_trained(self, engine: Engine) -> None:
        if engine.state.iteration != self._start_iteration:
            return
        if self.resumed_from is not None:
            why = (
                f"the checkpoint it resumed from, {self.resumed_from}, had already finished this schedule (epoch "
                f"{engine.state.epoch} of {engine.state.max_epochs}), which this run left as it was; pass --resume "
                "False to train afresh (that run's checkpoints are then replaced)"
            )
        else:
            why = f"max_epochs {engine.state.max_epochs}, epoch_length {engine.state.epoch_length}"
        # Ignite logs "Engine run finished" after the COMPLETED handlers: the warning follows that line, so that it
        # is the last one a user sees
        engine.logger = _WarnAfterLastLine(engine, self._logger(engine), f"Trained zero iterations: {why}.")


class _WarnAfterLastLine:
    """An engine's logger until Ignite's closing "Engine run finished" line, after which it logs ``message`` as a
    warning and gives the engine its logger back (pytorch-ignite 0.5 logs that line last in ``Engine.run``)."""

    def __init__(self, engine: Engine, logger: logging.Logger, message: str) -> None:
        self._engine = engine
        self._wrapped = engine.logger
        self._logger = logger
        self._message = message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._wrapped.info(msg, *args, **kwargs)
        if str(msg).startswith("Engine run finished"):
            self._engine.logger = self._wrapped
            self._logger.warning(self._message)
