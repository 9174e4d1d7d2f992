"""Tests of common.engines.semi_supervised: the base every semi-supervised trainer builds on."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

from common.data import LabeledUnlabeledLoader
from common.engines import SemiSupervisedTrainer
from common.engines.semi_supervised import split_semi_supervised_batch


class MeanTeacherFree(SemiSupervisedTrainer):
    """A minimal method built on the base: supervised MSE on the labeled part plus a weighted term on all cases."""

    def _iteration(self, engine: SemiSupervisedTrainer, batchdata: dict[str, Any]) -> dict:
        images, labels, num_labeled = engine.split_batch(batchdata)
        weight = engine.state_value("consistency_weight")
        engine.zero_grad()
        with engine.autocast():
            prediction = engine.network(images)
            loss = engine.loss_function(prediction[:num_labeled], labels) + weight * prediction.pow(2).mean()
        engine.optimize(loss)
        return {Keys.IMAGE: images, Keys.LABEL: labels, Keys.PRED: prediction, Keys.LOSS: loss.detach()}


class RecordingLoader(LabeledUnlabeledLoader):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)
        super().set_epoch(epoch)


def make_loader() -> RecordingLoader:
    labeled = [{"image": torch.randn(1, 4), "label": torch.randn(1, 4)} for _ in range(4)]
    unlabeled = [{"image": torch.randn(1, 4)} for _ in range(4)]
    return RecordingLoader(
        DataLoader(Dataset(labeled), batch_size=2), DataLoader(Dataset(unlabeled), batch_size=3, drop_last=True), 2
    )


def make_trainer(loader, trainer_class=MeanTeacherFree, **kwargs) -> SemiSupervisedTrainer:
    network = torch.nn.Linear(4, 4)
    return trainer_class(
        device="cpu",
        max_epochs=3,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=torch.nn.MSELoss(),
        **kwargs,
    )


def test_a_method_on_the_base_trains_and_fires_monai_events() -> None:
    loader = make_loader()
    trainer = make_trainer(loader)
    trainer.state.consistency_weight = 0.5
    fired: list[str] = []
    for event in (IterationEvents.LOSS_COMPLETED, IterationEvents.BACKWARD_COMPLETED):
        trainer.add_event_handler(event, lambda e, name=event.name: fired.append(name))
    before = trainer.network.weight.detach().clone()
    trainer.run()
    assert trainer.state.iteration == 6 and trainer.state.epoch_length == 2
    assert loader.epochs == [1, 2, 3]  # set_epoch at every epoch start: DistributedSamplers reshuffle
    assert fired[:2] == ["LOSS_COMPLETED", "BACKWARD_COMPLETED"] and len(fired) == 12
    assert not torch.allclose(trainer.network.weight, before)
    output = trainer.state.output
    assert output[Keys.IMAGE].shape == (5, 1, 4) and output[Keys.LABEL].shape == (2, 1, 4)  # not decollated


def test_split_batch_and_state_errors() -> None:
    trainer = make_trainer(make_loader())
    with pytest.raises(ValueError, match="needs"):
        trainer.split_batch({"image": torch.zeros(2, 1)})
    with pytest.raises(ValueError, match="inconsistent batch"):
        trainer.split_batch({"image": torch.zeros(4, 1), "label": torch.zeros(3, 1), "labeled_batch_size": 2})
    with pytest.raises(ValueError, match="Must provide"):
        trainer.split_batch(None)
    batch = trainer.split_batch({"image": torch.zeros(4, 1), "label": torch.zeros(2, 1), "labeled_batch_size": 2})
    assert batch.num_labeled == 2 and batch.images.device.type == "cpu"
    with pytest.raises(AttributeError, match="RampScheduler"):
        trainer.state_value("consistency_weight")


def test_a_method_that_needs_unlabeled_cases_refuses_an_all_labeled_batch() -> None:
    trainer = make_trainer(make_loader())
    all_labeled = {"image": torch.zeros(2, 1), "label": torch.zeros(2, 1), "labeled_batch_size": 2}
    assert split_semi_supervised_batch(trainer, all_labeled).num_labeled == 2
    with pytest.raises(ValueError, match="needs labeled and unlabeled cases in every batch"):
        split_semi_supervised_batch(trainer, all_labeled, need_unlabeled=True)
    mixed = {"image": torch.ones(3, 1), "label": torch.zeros(2, 1), "labeled_batch_size": 2}
    images, labels, num_labeled = split_semi_supervised_batch(trainer, mixed, need_unlabeled=True)
    assert images.shape == (3, 1) and labels.shape == (2, 1) and num_labeled == 2


def test_the_base_leaves_the_step_to_the_method() -> None:
    trainer = make_trainer(make_loader(), trainer_class=SemiSupervisedTrainer)
    with pytest.raises(NotImplementedError, match="_iteration"):
        trainer._iteration(trainer, next(iter(trainer.data_loader)))
    assert trainer.teacher is None
