"""``--tracking mlflow``: MONAI's own MLflow settings (no settings file of the project) log every bundle's training.

MONAI's default settings (``monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS``) attach an ``MLFlowHandler`` to
``train#handlers`` that reads the loss with ``from_engine(["loss"], first=True)``, as from a decollated
``SupervisedTrainer`` output, and one to ``validate#handlers`` that logs the validation metrics per epoch. Every
trainer of the collection hands its handlers that form without per-image decollation
(``common.engines.MethodTrainer.iteration_output``), so the same settings work for all five bundles.

Needs the optional extra (``pip install -e ".[mlflow]"``); marked slow, so the default run leaves it out.
"""

from __future__ import annotations

import math

import pytest
from test_bundles import BUNDLES, configs, copy_bundle, monai_bundle


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_mlflow_tracking_records_losses_and_metrics(name, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    # mlflow.set_tracking_uri below exports MLFLOW_TRACKING_URI; the next bundle's run must not inherit this one's store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bundle = copy_bundle(name, tmp_path)
    monai_bundle(bundle, "run", "training", "--config_file", configs(bundle, "train", "quick"), "--tracking", "mlflow")
    db = bundle / "eval" / "mlruns.db"
    assert db.is_file(), "MONAI's default MLflow store (<bundle>/eval/mlruns.db) was not written"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1
    metrics = {c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.")}
    assert "train_loss" in metrics, metrics
    client = mlflow.tracking.MlflowClient()
    run_id = runs["run_id"][0]
    # the loss as a number at every iteration (steps 1, 2, ...), not once and not a tuple
    losses = client.get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, len(losses) + 1)) and len(losses) > 1
    assert all(math.isfinite(m.value) for m in losses)
    # the validation metrics once per validated epoch
    validation = [m for m in metrics if m.startswith("val_")]
    assert validation, metrics
    steps = [m.step for m in client.get_metric_history(run_id, validation[0])]
    assert steps and sorted(steps) == sorted(set(steps))  # one value per validation (its epoch), no repeats
