"""``--tracking mlflow``: MONAI's MLflow handlers attach at the standard config ids of every bundle.

Needs the optional extra (``pip install -e ".[mlflow]"``); marked slow, so the default run leaves it out.
"""

from __future__ import annotations

import pytest
from test_bundles import BUNDLES, ROOT, configs, copy_bundle, monai_bundle

# Trainers that keep one dict per step (labeled and unlabeled parts of different sizes cannot be decollated); MONAI's
# default MLflow settings read the loss as a decollated list's first item, so these take the project's settings file.
DICT_OUTPUT = {"asenet", "dfcps", "ugmcl"}
TRACKING_FILE = ROOT / "common" / "bundle" / "mlflow_tracking.json"


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_mlflow_tracking_records_losses_and_metrics(name, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    # mlflow.set_tracking_uri below exports MLFLOW_TRACKING_URI; the next bundle's run must not inherit this one's store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bundle = copy_bundle(name, tmp_path)
    tracking = str(TRACKING_FILE) if name in DICT_OUTPUT else "mlflow"
    monai_bundle(bundle, "run", "training", "--config_file", configs(bundle, "train", "quick"), "--tracking", tracking)
    db = bundle / "eval" / "mlruns.db"
    assert db.is_file(), "MONAI's default MLflow store (<bundle>/eval/mlruns.db) was not written"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1
    metrics = {c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.")}
    assert "train_loss" in metrics, metrics
    assert any(m.startswith("val_") for m in metrics), metrics
