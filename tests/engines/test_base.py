"""Tests of common.engines.base: the one trainer base (step, events, AMP scalers in checkpoints, schedule lookup), and
that every trainer reading a schedule refuses to run without the handler that writes it."""

from __future__ import annotations

import copy
import io
import math
import re
import warnings
from typing import Any

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.handlers import StatsHandler, from_engine
from monai.utils import CommonKeys as Keys

from common.data import LabeledUnlabeledLoader
from common.engines import (
    ASENetTrainer,
    DFCPSTrainer,
    DiscriminatorSpec,
    DMGSATrainer,
    MethodTrainer,
    MultiDiscriminatorTrainer,
    SupervisedMethodTrainer,
    UGMCLTrainer,
    schedule_value,
)
from common.handlers import GradScalerStates
from common.inferers import MCUncertaintyEstimator
from common.networks import DMGSANet, DMGSATrainingModel, DualTaskVNet
from common.transforms import MultiOrderResponses, RandCubeMask


class MeanTeacherFree(MethodTrainer):
    """A minimal method built on the base: supervised MSE on the labeled part plus a weighted term on all cases."""

    def _iteration(self, engine: MethodTrainer, batchdata: dict[str, Any]) -> dict:
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


def make_trainer(loader, trainer_class=MeanTeacherFree, **kwargs) -> MethodTrainer:
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
    all_labeled = {"image": torch.zeros(2, 1), "label": torch.zeros(2, 1), "labeled_batch_size": 2}
    with pytest.raises(ValueError, match="needs labeled and unlabeled cases in every batch"):
        trainer.split_batch(all_labeled, need_unlabeled=True)
    with pytest.raises(AttributeError, match="RampScheduler"):
        trainer.state_value("consistency_weight")


def test_the_base_leaves_the_step_to_the_method() -> None:
    trainer = make_trainer(make_loader(), trainer_class=MethodTrainer)
    with pytest.raises(NotImplementedError, match="_iteration"):
        trainer._iteration(trainer, next(iter(trainer.data_loader)))
    assert trainer.teacher is None


def test_schedule_value_names_the_schedule_and_its_handler() -> None:
    class State:
        consistency_weight = 0.25
        unset = None

    assert schedule_value(State(), "consistency_weight") == 0.25
    assert schedule_value(State(), "consistency_weight", handler="anything") == 0.25  # a value is never replaced
    with pytest.raises(AttributeError) as error:
        schedule_value(State(), "unset")  # None reads as missing, not as a value
    assert str(error.value) == (
        'engine.state.unset is not set: attach common.handlers.RampScheduler(param_name="unset", ...) to the trainer'
    )
    with pytest.raises(AttributeError) as error:
        schedule_value(State(), "mask_ratio", handler="common.handlers.DynamicMaskRatio()", owner="D1", hint=" (x)")
    assert str(error.value) == (
        "D1: engine.state.mask_ratio is not set: attach common.handlers.DynamicMaskRatio() to the trainer (x)"
    )


# --- AMP gradient scalers ---------------------------------------------------------------------------------------------


class TinyDiscriminator(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def adversarial_trainer(amp: bool, init_scale: float = 2.0**10) -> tuple[MultiDiscriminatorTrainer, dict]:
    """A one-discriminator trainer; with ``amp``, its scalers are swapped for CPU ones as ``run()`` made them."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 1, 4, 4, 4, generator=generator)
    segmenter = torch.nn.Conv3d(1, 1, 3, padding=1)
    d = TinyDiscriminator()
    spec = DiscriminatorSpec(
        "d1", d, torch.optim.SGD(d.parameters(), lr=0.1), lambda o: (o["label"], torch.sigmoid(o["pred"]))
    )
    trainer = MultiDiscriminatorTrainer(
        "cpu",
        1,
        [{"image": image, "label": (image > 0).float()}] * 2,
        segmenter,
        torch.optim.SGD(segmenter.parameters(), lr=0.1),
        torch.nn.functional.binary_cross_entropy_with_logits,
        [spec],
        decollate=False,
        amp=amp,
    )
    made: dict = {}

    def cpu_scalers(engine: MultiDiscriminatorTrainer) -> None:
        made.update(scaler=engine.scaler, d_scalers=dict(engine.d_scalers))
        if amp:  # the base makes CUDA scalers: on a CPU-only machine they are disabled, so test with CPU ones
            engine.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1)
            engine.d_scalers = {"d1": torch.amp.GradScaler("cpu", init_scale=init_scale / 4, growth_interval=1)}

    trainer.add_event_handler(Events.STARTED, cpu_scalers)
    return trainer, made


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch.autocast("cuda") on a CPU-only machine is a no-op
def test_the_base_makes_one_scaler_per_optimizer_and_they_round_trip_through_state_dict() -> None:
    trainer, made = adversarial_trainer(amp=True)
    trainer.run()
    # run() made MONAI's scaler and one of the discriminator's own; AMP off: no discriminator scaler at all
    assert isinstance(made["scaler"], torch.amp.GradScaler) and set(made["d_scalers"]) == {"d1"}
    assert made["d_scalers"]["d1"] is not made["scaler"]
    plain, plain_made = adversarial_trainer(amp=False)
    plain.run()
    assert plain_made == {"scaler": None, "d_scalers": {}} and GradScalerStates(plain).state_dict() == {}

    # two iterations, one update of each scaler per step (growth every step): each scaler is stepped by its optimizer
    saved = GradScalerStates(trainer).state_dict()
    assert set(saved) == {"scaler", "d_scalers.d1"}
    assert saved["scaler"]["scale"] == 2.0**10 * 4 and saved["d_scalers.d1"]["scale"] == 2.0**8 * 4
    assert saved["scaler"]["_growth_tracker"] == 0  # grown at this step: the tracker restarts

    # through a checkpoint file (weights-only load, as the project's resume does) into a fresh trainer
    buffer = io.BytesIO()
    torch.save({"amp_scalers": saved}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["amp_scalers"]
    resumed, _ = adversarial_trainer(amp=True, init_scale=1.0)
    scales: dict = {}

    def restore(engine: MultiDiscriminatorTrainer) -> None:
        GradScalerStates(engine).load_state_dict(loaded)
        scales.update(g=engine.scaler.get_scale(), d=engine.d_scalers["d1"].get_scale())

    resumed.add_event_handler(Events.STARTED, restore)
    resumed.run()
    assert scales == {"g": 2.0**12, "d": 2.0**10}
    assert GradScalerStates(resumed).state_dict()["scaler"]["scale"] == 2.0**14  # and it went on from there


# --- a missing schedule is an error for every trainer that reads one -------------------------------------------------


class WriteState:
    """Writes fixed schedule values to the state (the handlers a test leaves out are the missing ones)."""

    def __init__(self, **values: float) -> None:
        self.values = values

    def attach(self, engine) -> None:
        for name, value in self.values.items():
            setattr(engine.state, name, value)


def semi_supervised_batches(channels: int = 1, size: tuple = (8, 8)) -> list[dict]:
    torch.manual_seed(0)
    image = torch.randn(3, channels, *size)
    return [{"image": image, "label": (image[:2, :1] > 0).float(), "labeled_batch_size": 2}]


def ugmcl(**values: float) -> MethodTrainer:
    network = DualTaskVNet(features=4)
    return UGMCLTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=semi_supervised_batches(size=(16, 16, 16)),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.01),
        teacher=copy.deepcopy(network),
        uncertainty=MCUncertaintyEstimator(num_passes=2, passes_per_batch=2),
        train_handlers=[WriteState(**values)],
    )


def asenet(**values: float) -> MethodTrainer:
    network = torch.nn.Conv2d(1, 2, 3, padding=1)
    return ASENetTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=semi_supervised_batches(),
        network=network,
        optimizer=torch.optim.Adam(network.parameters()),
        teacher=copy.deepcopy(network),
        loss_function=lambda logits, label: logits.mean() * 0,
        train_handlers=[WriteState(**values)],
    )


def weighted_discriminator(**values: float) -> MethodTrainer:
    """A discriminator whose adversarial weight is scheduled (``weight_key``), as ASE-Net's D1 and D2 are."""
    trainer, _ = adversarial_trainer(amp=False)
    trainer.discriminators[0].weight_key = "adversarial_ramp"
    WriteState(**values).attach(trainer)
    return trainer


def dmgsa(decollate: bool = True, **values: float) -> MethodTrainer:
    network = DMGSATrainingModel(DMGSANet(channels=(4, 8), use_gmgs=False), recon_channels=8)
    image = torch.rand(2, 1, 16, 16, 16)
    return DMGSATrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=[{"image": image, "label": (image > 0.5).float()}],
        network=network,
        optimizer=torch.optim.Adam(network.parameters()),
        loss_function=lambda pred, label: torch.nn.functional.cross_entropy(pred, label[:, 0].long()),
        masking=RandCubeMask(cube_size=4).set_random_state(0),
        targets=MultiOrderResponses(),
        train_handlers=[WriteState(**values)],
        decollate=decollate,
    )


def dmgsa_undecollated(**values: float) -> MethodTrainer:
    return dmgsa(decollate=False, **values)


RAMP = 'common.handlers.RampScheduler(param_name="{}", ...) to the trainer'
MISSING = [
    # (trainer, the schedules its handlers write, the one left out, the handler the error must name)
    (ugmcl, {"uncertainty_threshold": 0.6}, "consistency_weight", RAMP.format("consistency_weight")),
    (ugmcl, {"consistency_weight": 0.1}, "uncertainty_threshold", RAMP.format("uncertainty_threshold")),
    (asenet, {}, "consistency_weight", RAMP.format("consistency_weight")),
    (weighted_discriminator, {}, "adversarial_ramp", RAMP.format("adversarial_ramp")),
    (dmgsa, {}, "mask_ratio", 'common.handlers.DynamicMaskRatio(state_name="mask_ratio", ...) to the trainer'),
]


@pytest.mark.parametrize(
    ("build", "values", "missing", "handler"), MISSING, ids=[m[2] + "-" + m[0].__name__ for m in MISSING]
)
def test_every_trainer_refuses_to_run_without_its_schedule(build, values, missing, handler) -> None:
    torch.manual_seed(0)
    trainer = build(**values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(AttributeError, match=re.escape(f"engine.state.{missing} is not set: attach {handler}")):
            trainer.run()
    assert trainer.state.iteration == 1  # raised in the first step, before any update
    # with the schedule written, the same trainer trains
    trainer = build(**values, **{missing: 0.25})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.run()
    output = trainer.state.output[0]  # decollated per image (DMGSA) or the batch's one item (the others)
    assert trainer.state.iteration == trainer.state.epoch_length and math.isfinite(float(output[Keys.LOSS]))


# --- the output reads as MONAI's stock handlers read SupervisedTrainer's ----------------------------------------------


def dfcps(**values: float) -> MethodTrainer:
    torch.manual_seed(0)
    network_a, network_b = torch.nn.Conv2d(1, 2, 1), torch.nn.Conv2d(1, 2, 1)
    (data,) = semi_supervised_batches()
    data["image_strong"] = data["image"].flip(-1)
    return DFCPSTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=[data],
        network=network_a,
        optimizer=torch.optim.SGD(network_a.parameters(), lr=0.1),
        network_b=network_b,
        optimizer_b=torch.optim.SGD(network_b.parameters(), lr=0.1),
        train_handlers=[WriteState(**values)],
    )


def supervised(decollate: bool = False, **values: float) -> MethodTrainer:
    torch.manual_seed(0)
    network = torch.nn.Conv2d(1, 1, 3, padding=1)
    image = torch.randn(3, 1, 8, 8)
    return SupervisedMethodTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=[{"image": image, "label": (image > 0).float()}],
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=torch.nn.functional.binary_cross_entropy_with_logits,
        train_handlers=[WriteState(**values)],
        decollate=decollate,
    )


EVERY_TRAINER = [
    (ugmcl, {"uncertainty_threshold": 0.6, "consistency_weight": 0.1}),
    (asenet, {"consistency_weight": 0.1}),
    (weighted_discriminator, {"adversarial_ramp": 0.5}),
    (dmgsa_undecollated, {"mask_ratio": 0.25}),
    (dfcps, {}),
    (supervised, {}),
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("build", "values"), EVERY_TRAINER, ids=[b[0].__name__ for b in EVERY_TRAINER])
def test_stock_handlers_read_the_loss_as_from_monai_supervised_trainer(build, values, caplog, capsys) -> None:
    trainer = build(**values)
    losses: list[float] = []
    # the loss the step computed, before any handler transforms the output
    trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, lambda e: losses.append(float(e.state.output[Keys.LOSS])))
    # MONAI's bundle configs and its default `--tracking mlflow` settings read the loss with this transform
    loss_of = from_engine([Keys.LOSS], first=True)
    read: list = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: read.append(loss_of(e.state.output)))
    StatsHandler(name="stock_stats", output_transform=loss_of, tag_name="train_loss").attach(trainer)
    with caplog.at_level("INFO", logger="stock_stats"):
        trainer.run()
    # MLFlowHandler logs `loss.item()` of a tensor: a 0-dim tensor, not the 1-tuple from_engine makes of a bare dict
    assert isinstance(read[-1], torch.Tensor) and read[-1].ndim == 0 and not read[-1].requires_grad
    assert read[-1].item() == losses[-1]
    printed = caplog.text + "".join(capsys.readouterr())  # MONAI gives the logger a stream handler on first use
    assert f"train_loss: {losses[-1]:.4f}" in printed  # StatsHandler printed it (it skips non-scalar outputs)
    # without decollation the one item is the whole batch: predictions stay batch-first
    output = trainer.state.output
    assert isinstance(output, list) and len(output) == 1
    assert output[0][Keys.PRED].shape[0] == output[0][Keys.IMAGE].shape[0] == trainer.data_loader[0]["image"].shape[0]


def test_the_supervised_method_trainer_is_monai_supervised_step() -> None:
    torch.manual_seed(0)
    image = torch.randn(4, 1, 8, 8)
    data = [{"image": image, "label": (image > 0).float()}] * 3
    runs = {}
    for name, trainer_class, options in (
        ("monai", SupervisedTrainer, {"decollate": False}),
        ("ours", SupervisedMethodTrainer, {}),
    ):
        torch.manual_seed(1)
        network = torch.nn.Conv2d(1, 1, 3, padding=1)
        trainer = trainer_class(
            device="cpu",
            max_epochs=2,
            train_data_loader=data,
            network=network,
            optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
            loss_function=torch.nn.functional.binary_cross_entropy_with_logits,
            **options,
        )
        trainer.run()
        runs[name] = (network.weight.detach().clone(), trainer.state.output)
    (monai_weight, monai_output), (our_weight, our_output) = runs["monai"], runs["ours"]
    assert torch.equal(monai_weight, our_weight)
    assert isinstance(monai_output, dict) and isinstance(our_output, list) and set(our_output[0]) == set(monai_output)
    assert torch.equal(our_output[0][Keys.LOSS], monai_output[Keys.LOSS])
    assert torch.equal(our_output[0][Keys.PRED], monai_output[Keys.PRED])


def test_decollate_true_is_monai_per_image_decollation() -> None:
    trainer = supervised(decollate=True)
    trainer.run()
    output = trainer.state.output
    assert isinstance(output, list) and len(output) == 3  # one dict per image, the loss in each
    assert output[0][Keys.PRED].shape == (1, 8, 8) and output[2][Keys.LOSS] == output[0][Keys.LOSS]
    assert isinstance(trainer.state.batch, list) and len(trainer.state.batch) == 3
    assert MethodTrainer.iteration_output({"loss": 1.0}) == [{"loss": 1.0}]
    assert MethodTrainer.iteration_output(output) is output  # a decollated list stays as it is
