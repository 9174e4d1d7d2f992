"""MONAI Label's bundle training task, for the bundles of label-efficient-bundles.

:class:`LabelEfficientTrainTask` is MONAI Label's ``BundleTrainTask``; what it changes (the logic is in
:mod:`lib.datalist`, which needs no MONAI Label):

- ``_fetch_datalist`` / ``_partition_datalist``: the datastore's labeled studies, their labels normalised, train and
  validate, and its unlabeled studies go to the bundle's ``unlabeled`` list (MONAI Label hands a bundle only
  labeled ``{image, label}`` pairs, so a semi-supervised bundle would never see them);
- ``_load_checkpoint``: the current ``models/model.pt`` is the start of training through the ``network`` id, not
  through a ``CheckpointLoader`` inserted at ``train#handlers[0]``, which moves the handlers that configs
  reference by position (UG-MCL's and ASE-Net's EMA teacher, ``@train#handlers#1``);
- ``_update_overrides``: the overrides of :func:`lib.datalist.train_overrides` (label reading, batch sizes and
  validation interval for a few cases, a new run after a finished one);
- ``train.json`` gets the overlays a request or ``--conf train_overlays`` names (e.g. the bundle's ``quick.json``,
  for a CPU) as overrides, and the request's ``overrides`` last; the training process can import the app's ``lib``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from monai.bundle import ConfigParser
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.tasks.train.bundle import BundleTrainTask

from lib.datalist import build_datalist, train_overrides

__all__ = ["LabelEfficientTrainTask"]

logger = logging.getLogger(__name__)

_APP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _names(value: Any) -> list[str]:
    """Overlay names from a request or a --conf value: a list, or a comma-separated string."""
    if not value:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


class LabelEfficientTrainTask(BundleTrainTask):
    """Train an exported bundle on a MONAI Label datastore, its unlabeled studies included.

    Request options besides MONAI Label's (``max_epochs``, ``val_split``, ``pretrained``, ``device``, ...):
    ``overlays`` (configs of the bundle layered on ``train.json``, default ``--conf train_overlays``) and
    ``overrides`` (a JSON object of config ids and values, e.g. ``{"epoch_length": 4}``).

    Args:
        path: the bundle folder.
        conf: the app's ``--conf`` options.
        kwargs: other arguments of MONAI Label's ``BundleTrainTask``.
    """

    def __init__(self, path: str, conf: dict[str, str], **kwargs: Any) -> None:
        kwargs.setdefault("load_strict", True)
        super().__init__(path, conf, **kwargs)
        self._request: dict[str, Any] = {}
        self._datalist: dict[str, Any] | None = None
        self._start_weights: str | None = None
        self._scratch: str | None = None
        if not self.valid:
            return
        with open(os.path.join(path, "configs", self.const.metadata_json())) as stream:
            metadata = json.load(stream)
        image = next(iter(metadata["network_data_format"]["inputs"].values()))
        pred = next(iter(metadata["network_data_format"]["outputs"].values()))
        self.dimension = len(image.get("spatial_shape") or [0, 0, 0])
        self.num_labels = sum(1 for v in pred.get("channel_def", {}).values() if str(v).lower() != "background")
        self.work_dir = os.path.join(path, "monailabel")

    def config(self) -> dict[str, Any]:
        options = super().config()
        options["overlays"] = self.conf.get("train_overlays", "")
        options["overrides"] = {}
        return options

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        self._request = request
        self._scratch = tempfile.mkdtemp(prefix="leb_train_")
        try:
            return super().__call__(request, datastore)
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = self._start_weights = None

    def _config_files(self) -> list[str]:
        overlays = _names(self._request.get("overlays", self.conf.get("train_overlays")))
        files = [self.bundle_config_path]
        for name in overlays:
            overlay = os.path.join(self.bundle_path, "configs", name)
            if not os.path.isfile(overlay):
                raise FileNotFoundError(f"overlay {name!r}: {overlay} does not exist (a config of the bundle)")
            files.append(overlay)
        return files

    def _fetch_datalist(self, request: dict[str, Any], datastore: Datastore) -> list[dict[str, Any]]:
        labeled = [
            {"id": i, "image": datastore.get_image_uri(i), "label": datastore.get_label_uri(i, DefaultLabelTag.FINAL)}
            for i in datastore.get_labeled_images()
        ]
        unlabeled = [{"id": i, "image": datastore.get_image_uri(i)} for i in datastore.get_unlabeled_images()]
        self._datalist = build_datalist(
            labeled,
            unlabeled,
            self.work_dir,
            self.dimension,
            self.num_labels,
            val_split=float(request.get("val_split", 0.2)),
        )
        d = self._datalist
        logger.info(
            f"Datastore datalist: training {len(d['training'])} labeled ({[c['id'] for c in d['training']]}), "
            f"validation {len(d['validation'])}, unlabeled {len(d['unlabeled'])} "
            f"({[c['id'] for c in d['unlabeled']]}); written to {os.path.join(self.work_dir, 'datalist.json')}"
        )
        return d["training"]

    def _partition_datalist(self, datalist, request, shuffle=False):
        return self._datalist["training"], self._datalist["validation"]

    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        if not pretrained or not os.path.exists(model_pytorch):
            return
        # a copy: a run on new data moves the old run's model.pt to ckpt_dir/previous_runs when it starts
        self._start_weights = os.path.join(self._scratch, os.path.basename(model_pytorch))
        shutil.copy2(model_pytorch, self._start_weights)
        logger.info(f"Training starts from {model_pytorch}")

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        # the overlays as overrides (a top-level id of a later config replaces the earlier one, as when MONAI layers
        # config files): the multi-GPU path exports train.json with the overrides into one file
        layered: dict[str, Any] = {}
        for overlay in self._config_files()[1:]:
            with open(overlay) as stream:
                layered.update(json.load(stream))
        parser = ConfigParser()
        parser.read_config(self._config_files())
        parser.update({"bundle_root": self.bundle_path})
        ours = train_overrides(
            parser,
            self._datalist,
            int(overrides[self.const.key_train_trainer_max_epochs()]),
            self.dimension,
            dataset_dir=os.path.dirname(self._datalist["training"][0]["image"]),
            start_weights=self._start_weights,
        )
        extra = self._request.get("overrides") or {}
        final = {**layered, **overrides, **ours, **(json.loads(extra) if isinstance(extra, str) else extra)}
        overrides.clear()
        overrides.update(final)
        logger.info(f"Bundle overrides: {sorted(k for k in overrides if k != 'datalist')}")
        return overrides

    def run_single_gpu(self, request: dict[str, Any], overrides: dict[str, Any]) -> None:
        # the config names lib.datalist.network_with_weights: the app's lib must import while the bundle is parsed
        sys.path.insert(0, _APP_DIR)
        try:
            super().run_single_gpu(request, overrides)
        finally:
            sys.path.remove(_APP_DIR)

    def run_multi_gpu(self, request: dict[str, Any], cmd: list[str], env: dict[str, str]) -> None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), _APP_DIR) if p)
        super().run_multi_gpu(request, cmd, env)
