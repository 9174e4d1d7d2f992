"""``--tracking mlflow``: MONAI's MLflow handlers attach at the standard config ids of every bundle.

Needs the optional extra (``pip install -e ".[mlflow]"``); marked slow, so the default run leaves it out.
"""

from __future__ import annotations

import pytest
from test_bundles import BUNDLES, configs, copy_bundle, monai_bundle


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_mlflow_tracking_records_losses_and_metrics(name, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    bundle = copy_bundle(name, tmp_path)
    monai_bundle(bundle, "run", "training", "--config_file", configs(bundle, "train", "quick"), "--tracking", "mlflow")
    db = bundle / "eval" / "mlruns.db"
    assert db.is_file(), "MONAI's default MLflow store (<bundle>/eval/mlruns.db) was not written"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1
    metrics = {c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.")}
    assert "train_loss" in metrics, metrics
    assert any(m.startswith("val_") for m in metrics), metrics
