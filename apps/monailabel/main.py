"""A MONAI Label app serving the exported bundles of label-efficient-bundles: inference, semi-supervised training,
uncertainty scoring and active learning.

Start it with an exported bundle in ``model/<zoo name>/`` (see README, "MONAI Label")::

    python -m monailabel.main start_server --app apps/monailabel --studies studies \\
        --conf models <zoo name> --conf zoo_source github --conf sam2 false

It is MONAI Label's ``monaibundle`` app with the bundle tasks replaced where our bundles need it:

- inference: :class:`lib.infers.LabelEfficientInferTask` (MONAI Label's ``BundleInferTask``; 2D labels keep the
  image's geometry);
- training: :class:`lib.trainers.LabelEfficientTrainTask` (MONAI Label's ``BundleTrainTask``; the datastore's
  unlabeled studies reach the bundle's unlabeled datalist, labels of any format MONAI Label writes are normalised,
  a train request after new labels trains);
- scoring methods and active-learning strategies: registered by ``lib/scoring.py`` and ``lib/strategy.py`` (see
  :meth:`LabelEfficientApp.init_scoring_methods` and :meth:`LabelEfficientApp.init_strategies`).

The app runs in MONAI Label's environment, where label-efficient-bundles is not installed: it imports no ``common``
module (an export vendors what it needs as its ``scripts`` package).
"""

from __future__ import annotations

import logging
import os

import monailabel
from lib import scoring, strategy
from lib.infers import LabelEfficientInferTask
from lib.trainers import LabelEfficientTrainTask
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.generic import get_bundle_models, strtobool

logger = logging.getLogger(__name__)


class LabelEfficientApp(MONAILabelApp):
    """MONAI Label's bundle app for the bundles of label-efficient-bundles.

    Args:
        app_dir: this folder; the bundles are in ``<app_dir>/model/<name>`` (``--conf models <name>[,<name>]``).
        studies: the datastore (a folder of images, or a DICOMweb address).
        conf: the ``--conf`` options: ``models`` (required), ``zoo_source``, ``preload``, ``skip_trainers``,
            ``train_overlays`` (configs of the bundle layered on ``train.json`` by default, e.g. ``quick.json``), and
            those of ``lib/scoring.py`` and ``lib/strategy.py``.
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.model_dir = os.path.join(app_dir, "model")
        self.models = get_bundle_models(app_dir, conf)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"MONAILabel - label-efficient bundles ({monailabel.__version__})",
            description="Label-efficient segmentation bundles, exported from label-efficient-bundles",
            version=monailabel.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for name, path in self.models.items():
            task = LabelEfficientInferTask(path, self.conf)
            if task.is_valid():
                logger.info(f"+++ Adding Inferer:: {name} => {task}")
                infers[name] = task
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        trainers: dict[str, TrainTask] = {}
        if strtobool(self.conf.get("skip_trainers", "false")):
            return trainers
        for name, path in self.models.items():
            task = LabelEfficientTrainTask(path, self.conf)
            if task.is_valid():
                logger.info(f"+++ Adding Trainer:: {name} => {task}")
                trainers[name] = task
        return trainers

    # ---------------------------------------------------------------------------------------------------------------
    # Active learning: the scoring methods and strategies are registered in lib/scoring.py and lib/strategy.py,
    # which add theirs to what MONAI Label offers. Contract: ``scoring.scoring_methods(app) -> {name: ScoringMethod}``
    # and ``strategy.strategies(app) -> {name: Strategy}``; ``app.models`` maps model names to bundle folders, and
    # ``app.conf`` holds the --conf options.
    # ---------------------------------------------------------------------------------------------------------------
    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        methods = dict(scoring.scoring_methods(self))
        logger.info(f"Active Learning Scoring Methods:: {list(methods)}")
        return methods

    def init_strategies(self) -> dict[str, Strategy]:
        strategies: dict[str, Strategy] = {"random": Random(), "first": First()}
        strategies.update(strategy.strategies(self))
        logger.info(f"Active Learning Strategies:: {list(strategies)}")
        return strategies
