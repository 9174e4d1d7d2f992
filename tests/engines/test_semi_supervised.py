"""Tests of common.engines.semi_supervised: checking a labeled + unlabeled batch and moving it to the device."""

from __future__ import annotations

import pytest
import torch

from common.engines import MethodTrainer
from common.engines.semi_supervised import split_semi_supervised_batch


def make_trainer() -> MethodTrainer:
    network = torch.nn.Linear(1, 1)
    return MethodTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=[],
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=torch.nn.MSELoss(),
    )


def test_a_method_that_needs_unlabeled_cases_refuses_an_all_labeled_batch() -> None:
    trainer = make_trainer()
    all_labeled = {"image": torch.zeros(2, 1), "label": torch.zeros(2, 1), "labeled_batch_size": 2}
    assert split_semi_supervised_batch(trainer, all_labeled).num_labeled == 2
    with pytest.raises(ValueError, match="needs labeled and unlabeled cases in every batch"):
        split_semi_supervised_batch(trainer, all_labeled, need_unlabeled=True)
    mixed = {"image": torch.ones(3, 1), "label": torch.zeros(2, 1), "labeled_batch_size": 2}
    images, labels, num_labeled = split_semi_supervised_batch(trainer, mixed, need_unlabeled=True)
    assert images.shape == (3, 1) and labels.shape == (2, 1) and num_labeled == 2


def test_missing_keys_and_inconsistent_sizes_are_refused() -> None:
    trainer = make_trainer()
    with pytest.raises(ValueError, match=r"needs .*'labeled_batch_size'.*LabeledUnlabeledLoader"):
        split_semi_supervised_batch(trainer, {"image": torch.zeros(2, 1)})
    with pytest.raises(ValueError, match="inconsistent batch: 4 images, 3 labels, labeled_batch_size 2"):
        split_semi_supervised_batch(
            trainer, {"image": torch.zeros(4, 1), "label": torch.zeros(3, 1), "labeled_batch_size": 2}
        )
    with pytest.raises(ValueError, match="Must provide"):
        split_semi_supervised_batch(trainer, None)
