"""Checkpoints that survive a killed run: atomic writes, and resumption from the newest one."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from glob import escape as glob_escape
from pathlib import Path

import torch
from ignite.engine import Engine
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

__all__ = ["AtomicCheckpointSaver", "GradScalerStates", "ResumeCheckpointLoader", "latest_checkpoint"]

SCALERS_KEY = "amp_scalers"
"""Checkpoint key of the engine's gradient scalers (saved and restored with ``engine_key``)."""

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
            trainer's AMP gradient scalers under ``"amp_scalers"`` (:class:`GradScalerStates`; empty without AMP).
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
        super().attach(engine)

    def interval_completed(self, engine: Engine) -> None:
        super().interval_completed(engine)
        self._remove_stale_interval_checkpoints()

    def _remove_stale_interval_checkpoints(self) -> None:
        """Keep only the interval checkpoints this saver tracks (the newest ``n_saved``).

        A resumed run starts with an empty tracking list, and a run started with ``--resume false`` finds an older
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


class ResumeCheckpointLoader(CheckpointLoader):
    """Resume training from the newest interval checkpoint in a folder, if there is one.

    A thin layer on :class:`monai.handlers.CheckpointLoader`: at ``attach`` time it looks for the newest file
    matching ``pattern`` in ``ckpt_dir`` (see :func:`latest_checkpoint`); when one exists it is loaded into
    ``load_dict`` (network, optimizer, lr scheduler, trainer state, ...) at ``Events.STARTED``, so that Ignite
    continues from the saved epoch and iteration to the configured end. With no checkpoint, or ``enabled=False``,
    training starts afresh; so it does, with a warning, when the newest checkpoint's engine has another schedule
    (``max_epochs`` or ``epoch_length``): it belongs to another run, such as the quick CPU run of the same bundle.

    Args:
        ckpt_dir: folder that holds the interval checkpoints written by :class:`AtomicCheckpointSaver`.
        load_dict: objects to restore, keyed as they were saved.
        engine_key: when given, the engine this handler is attached to is restored too, from this key, and so are
            its AMP gradient scalers when the checkpoint has them (see :class:`AtomicCheckpointSaver`).
        pattern: glob pattern of the candidate files.
        enabled: set False to ignore existing checkpoints (``--resume false``).
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

    def attach(self, engine: Engine) -> None:
        logger = logging.getLogger(self._name) if self._name else engine.logger
        latest = latest_checkpoint(self.ckpt_dir, self.pattern) if self.enabled else None
        if latest is None:
            reason = "resume disabled" if not self.enabled else f"no checkpoint in {self.ckpt_dir}"
            logger.info(f"Starting training afresh ({reason}).")
            return
        if self.engine_key is not None:
            mismatch = self._schedule_mismatch(latest, engine)
            if mismatch:
                logger.warning(
                    f"Not resuming from {latest}: it belongs to a run with another schedule ({mismatch}); "
                    "starting afresh (its checkpoints are replaced as this run saves its own)."
                )
                return
            self.load_dict[self.engine_key] = engine
            if SCALERS_KEY in self._saved_keys(latest):
                self.load_dict[SCALERS_KEY] = GradScalerStates(engine)
        self.load_path = str(latest)
        self.resumed_from = latest
        logger.info(f"Resuming from {latest} (pass --resume false to start afresh).")
        super().attach(engine)

    @staticmethod
    def _saved_keys(checkpoint: Path) -> set[str]:
        return set(_load_lazily(checkpoint))

    def _schedule_mismatch(self, checkpoint: Path, engine: Engine) -> str:
        """Describe how the saved engine's schedule differs from ``engine``'s ("" when it does not).

        A checkpoint of another run in the same folder (e.g. the CPU quick run before the full recipe) must not be
        resumed: its LR schedule and epoch count belong to that run.
        """
        saved = _load_lazily(checkpoint).get(self.engine_key, {})
        differences = []
        for key in ("max_epochs", "epoch_length"):
            current = getattr(engine.state, key, None)
            if current is not None and saved.get(key) is not None and saved[key] != current:
                differences.append(f"{key} {saved[key]} there, {current} here")
        return ", ".join(differences)
