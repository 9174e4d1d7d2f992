"""Tests of common.handlers.checkpoint: atomic saves that never leave zero checkpoints, and resumption."""

from __future__ import annotations

import copy
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader as MonaiDataLoader
from monai.data import Dataset
from monai.engines import SupervisedTrainer
from monai.transforms import Compose, RandFlipd, RandGaussianNoised
from monai.utils import set_determinism
from torch.utils.data import DataLoader

from common.handlers import AtomicCheckpointSaver, ResumeCheckpointLoader, latest_checkpoint
from common.handlers.checkpoint import RandomStates, data_fingerprint, find_random_generators

EPOCH_LENGTH = 3
LOGGER = "test_resume_checkpoint"


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def counting_engine(net: torch.nn.Linear) -> Engine:
    """An engine whose every iteration adds 1 to the weights, so a checkpoint's weight tells the iteration."""

    def step(engine: Engine, batch: int) -> dict:
        with torch.no_grad():
            net.weight.add_(1.0)
        return {"loss": float(batch)}

    return Engine(step)


def zero_linear() -> torch.nn.Linear:
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.zero_()
    return net


def failing_save_on_call(monkeypatch: pytest.MonkeyPatch, failing_call: int, watched: Path) -> list[bool]:
    """Patch torch.save (used by Ignite's DiskSaver) to write part of the file and then fail on call ``failing_call``
    (1-based; 0 never fails).

    Returns a list that records, for every call, whether ``watched`` existed while the new file was being written.
    """
    real_save = torch.save
    seen: list[bool] = []

    def save(obj, f, *args, **kwargs):
        seen.append(watched.exists())
        if len(seen) == failing_call:
            f.write(b"half a checkpoint")
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return seen


# --- AtomicCheckpointSaver -------------------------------------------------------------------------------------------


def test_interval_checkpoints_are_complete_and_leave_no_temp_files(tmp_path: Path) -> None:
    net = zero_linear()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = counting_engine(net)
    saver = AtomicCheckpointSaver(str(tmp_path), {"network": net, "optimizer": optimizer}, save_interval=1)
    saver.attach(engine)
    engine.run(range(EPOCH_LENGTH), max_epochs=3)

    assert files(tmp_path) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt"]
    for epoch in (1, 2, 3):
        checkpoint = load(tmp_path / f"checkpoint_epoch={epoch}.pt")
        assert set(checkpoint) == {"network", "optimizer"}
        torch.testing.assert_close(checkpoint["network"]["weight"], torch.full((1, 2), float(epoch * EPOCH_LENGTH)))
        assert checkpoint["optimizer"]["param_groups"][0]["lr"] == 0.1


def test_n_saved_one_keeps_only_the_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = zero_linear()
    engine = counting_engine(net)
    saver = AtomicCheckpointSaver(str(tmp_path), {"network": net, "extra": zero_linear()}, save_interval=1, n_saved=1)
    saver.attach(engine)
    existed = failing_save_on_call(monkeypatch, failing_call=0, watched=tmp_path / "checkpoint_epoch=1.pt")
    engine.run(range(EPOCH_LENGTH), max_epochs=3)
    assert files(tmp_path) == ["checkpoint_epoch=3.pt"]
    # while epoch 2 was being written, the epoch 1 file was still there
    assert existed == [False, True, False]
    weight = load(tmp_path / "checkpoint_epoch=3.pt")["network"]["weight"]
    torch.testing.assert_close(weight, torch.full((1, 2), 3.0 * EPOCH_LENGTH))


def test_stale_interval_checkpoints_of_an_earlier_run_are_removed(tmp_path: Path) -> None:
    """Files this saver did not write (an earlier or resumed run's) go once it has saved a newer one."""
    for stale in ("checkpoint_epoch=2.pt", "checkpoint_epoch=10.pt"):
        torch.save({"stale": torch.zeros(1)}, tmp_path / stale)
    (tmp_path / "model.pt").write_bytes(b"best model: not an interval checkpoint")
    net = zero_linear()
    engine = counting_engine(net)
    save_dict = {"network": net, "extra": zero_linear()}  # several objects: Ignite names the file "checkpoint_..."
    AtomicCheckpointSaver(str(tmp_path), save_dict, save_interval=1, n_saved=1).attach(engine)
    engine.run(range(EPOCH_LENGTH), max_epochs=1)

    assert files(tmp_path) == ["checkpoint_epoch=1.pt", "model.pt"]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_epoch=1.pt"


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = zero_linear()
    engine = counting_engine(net)
    saver = AtomicCheckpointSaver(str(tmp_path), {"network": net, "extra": zero_linear()}, save_interval=1, n_saved=1)
    saver.attach(engine)
    failing_save_on_call(monkeypatch, failing_call=2, watched=tmp_path / "checkpoint_epoch=1.pt")
    with pytest.raises(OSError, match="disk full"):
        engine.run(range(EPOCH_LENGTH), max_epochs=3)
    assert engine.state.epoch == 2
    # neither the half-written temporary file nor zero checkpoints: the epoch 1 file is intact
    assert files(tmp_path) == ["checkpoint_epoch=1.pt"]
    weight = load(tmp_path / "checkpoint_epoch=1.pt")["network"]["weight"]
    torch.testing.assert_close(weight, torch.full((1, 2), float(EPOCH_LENGTH)))
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_epoch=1.pt"


def test_engine_key_saves_the_engine_state(tmp_path: Path) -> None:
    net = zero_linear()
    engine = counting_engine(net)
    save_dict = {"network": net}
    saver = AtomicCheckpointSaver(str(tmp_path), save_dict, engine_key="trainer", save_interval=1, n_saved=1)
    saver.attach(engine)
    assert save_dict["trainer"] is engine
    engine.run(range(EPOCH_LENGTH), max_epochs=2)
    checkpoint = load(tmp_path / "checkpoint_epoch=2.pt")
    assert set(checkpoint) == {"network", "trainer", "amp_scalers", "random_states", "run"}
    assert checkpoint["amp_scalers"] == {}  # no AMP, no scaler
    assert checkpoint["run"] == {"data": [], "batch_sizes": []}  # data given to run(), not a loader with cases
    assert dict(checkpoint["trainer"]) == {"epoch_length": EPOCH_LENGTH, "iteration": 2 * EPOCH_LENGTH, "max_epochs": 2}


class ScoredValidator:
    """An evaluator-like engine: each run sets the network weights and the ``dice`` metric to ``score``."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net
        self.engine = Engine(lambda engine, batch: None)
        self.score = 0.0
        self.engine.add_event_handler(Events.EPOCH_COMPLETED, self._set_metric)

    def _set_metric(self, engine: Engine) -> None:
        engine.state.metrics["dice"] = self.score

    def run(self, score: float) -> None:
        self.score = score
        with torch.no_grad():
            for p in self.net.parameters():
                p.fill_(score)
        self.engine.run([0])


def best_model_saver(folder: Path, net: torch.nn.Module) -> AtomicCheckpointSaver:
    return AtomicCheckpointSaver(
        str(folder), {"model": net}, save_key_metric=True, key_metric_name="dice", key_metric_filename="model.pt"
    )


def test_state_dict_holds_the_best_score(tmp_path: Path) -> None:
    net = zero_linear()
    validator = ScoredValidator(net)
    saver = best_model_saver(tmp_path, net)
    saver.attach(validator.engine)
    assert saver.state_dict() == {"_saved": []}
    for score in (0.5, 0.8, 0.6):
        validator.run(score)
    saved = saver.state_dict()["_saved"]
    assert len(saved) == 1 and saved[0][0] == pytest.approx(0.8)
    assert files(tmp_path) == ["model.pt"]
    torch.testing.assert_close(load(tmp_path / "model.pt")["weight"], torch.full((1, 2), 0.8))


def test_state_dict_requires_a_key_metric(tmp_path: Path) -> None:
    saver = AtomicCheckpointSaver(str(tmp_path), {"model": zero_linear()}, save_interval=1)
    with pytest.raises(ValueError, match="save_key_metric=True"):
        saver.state_dict()


def test_best_model_file_is_replaced_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = zero_linear()
    validator = ScoredValidator(net)
    best_model_saver(tmp_path, net).attach(validator.engine)
    removed: list[str] = []
    real_unlink = Path.unlink

    def unlink(self: Path, *args, **kwargs) -> None:
        removed.append(self.name)
        real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    validator.run(0.5)
    validator.run(0.7)
    assert removed == []  # never deleted, only replaced
    assert files(tmp_path) == ["model.pt"]
    torch.testing.assert_close(load(tmp_path / "model.pt")["weight"], torch.full((1, 2), 0.7))

    # a crash while writing a better model leaves the previous best in place
    failing_save_on_call(monkeypatch, failing_call=1, watched=tmp_path / "model.pt")
    with pytest.raises(OSError, match="disk full"):
        validator.run(0.9)
    assert files(tmp_path) == ["model.pt"]
    torch.testing.assert_close(load(tmp_path / "model.pt")["weight"], torch.full((1, 2), 0.7))


def test_final_checkpoint_with_fixed_name(tmp_path: Path) -> None:
    net = zero_linear()
    engine = counting_engine(net)
    AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_final=True, final_filename="final.pt").attach(engine)
    engine.run(range(EPOCH_LENGTH), max_epochs=1)
    engine.run(range(EPOCH_LENGTH), max_epochs=2)
    assert files(tmp_path) == ["final.pt"]
    torch.testing.assert_close(load(tmp_path / "final.pt")["weight"], torch.full((1, 2), 2.0 * EPOCH_LENGTH))


# --- latest_checkpoint -----------------------------------------------------------------------------------------------


def test_latest_checkpoint_orders_by_step_number(tmp_path: Path) -> None:
    for name in ("checkpoint_epoch=9.pt", "checkpoint_epoch=10.pt", "checkpoint_epoch=2.pt", "model.pt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "checkpoint_key_metric=0.9000.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_epoch=10.pt"
    assert latest_checkpoint(str(tmp_path)) == tmp_path / "checkpoint_epoch=10.pt"


def test_latest_checkpoint_with_a_pattern(tmp_path: Path) -> None:
    for name in ("checkpoint_epoch=30.pt", "net_iteration=100.pt", "net_iteration=99.pt"):
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoint(tmp_path, pattern="net_*.pt") == tmp_path / "net_iteration=100.pt"


def test_latest_checkpoint_none(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "checkpoint_final.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path) is None


# --- ResumeCheckpointLoader ------------------------------------------------------------------------------------------


def loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(2 * EPOCH_LENGTH, 4, generator=generator), torch.randn(2 * EPOCH_LENGTH, 1, generator=generator)
    return DataLoader([{"image": x[i], "label": y[i]} for i in range(len(x))], batch_size=2, shuffle=False)


class Run:
    """A SupervisedTrainer on a linear model with SGD + momentum, a step lr schedule, a validator tracking the best
    model in ``model.pt``, and an interval checkpoint per epoch that carries the trainer and the best-model tracker."""

    SCORES = {1: 0.5, 2: 0.8, 3: 0.6, 4: 0.7}

    def __init__(self, folder: Path, seed: int, max_epochs: int = 4, resume: dict | None = None) -> None:
        torch.manual_seed(seed)
        self.network = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=0.1, momentum=0.9)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.5)
        self.trainer = SupervisedTrainer(
            device=torch.device("cpu"),
            max_epochs=max_epochs,
            train_data_loader=loader(),
            network=self.network,
            optimizer=self.optimizer,
            loss_function=torch.nn.MSELoss(),
        )
        self.validator = Engine(lambda engine, batch: None)
        self.validator.add_event_handler(Events.EPOCH_COMPLETED, self._score)
        self.best = best_model_saver(folder, self.network)
        self.best.attach(self.validator)
        objects = {
            "network": self.network,
            "optimizer": self.optimizer,
            "lr_scheduler": self.scheduler,
            "best_model_saver": self.best,
        }
        self.resume = None
        if resume is not None:
            self.resume = ResumeCheckpointLoader(
                str(folder), load_dict=dict(objects), engine_key="trainer", name=LOGGER, **resume
            )
            self.resume.attach(self.trainer)
        self.at_start: dict = {}
        self.first_iteration: int | None = None
        self.trainer.add_event_handler(Events.STARTED, self._record_start)
        self.trainer.add_event_handler(Events.ITERATION_STARTED, self._record_first_iteration)
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: self.scheduler.step())
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: self.validator.run([0]))
        saver = AtomicCheckpointSaver(
            str(folder), dict(objects), engine_key="trainer", save_interval=1, n_saved=1, epoch_level=True
        )
        saver.attach(self.trainer)

    def _score(self, engine: Engine) -> None:
        engine.state.metrics["dice"] = self.SCORES[self.trainer.state.epoch]

    def _record_start(self, engine: Engine) -> None:
        self.at_start = {
            "epoch": engine.state.epoch,
            "iteration": engine.state.iteration,
            "network": copy.deepcopy(self.network.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "lr_scheduler": copy.deepcopy(self.scheduler.state_dict()),
            "best": copy.deepcopy(self.best.state_dict()),
        }

    def _record_first_iteration(self, engine: Engine) -> None:
        if self.first_iteration is None:
            self.first_iteration = engine.state.iteration

    def stop_after(self, epoch: int) -> None:
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=epoch), lambda engine: engine.terminate())

    def state(self) -> dict:
        return {
            "network": copy.deepcopy(self.network.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "lr_scheduler": copy.deepcopy(self.scheduler.state_dict()),
            "best": copy.deepcopy(self.best.state_dict()),
        }


def assert_same_optimizer(actual: dict, expected: dict) -> None:
    assert actual["param_groups"][0]["lr"] == pytest.approx(expected["param_groups"][0]["lr"])
    assert set(actual["state"]) == set(expected["state"]) == {0, 1}
    for index in expected["state"]:
        torch.testing.assert_close(
            actual["state"][index]["momentum_buffer"], expected["state"][index]["momentum_buffer"]
        )


def test_no_checkpoint_starts_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    run = Run(tmp_path, seed=0, max_epochs=2, resume={})
    run.trainer.run()
    assert run.resume.resumed_from is None
    assert run.at_start["iteration"] == 0 and run.at_start["epoch"] == 0
    assert run.first_iteration == 1
    assert run.trainer.state.iteration == 2 * EPOCH_LENGTH
    assert "Starting training afresh (no checkpoint in" in caplog.text
    assert "Resuming" not in caplog.text


def test_resume_after_an_interrupted_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    reference = Run(tmp_path / "reference", seed=0)
    reference.trainer.run()

    first = Run(tmp_path / "run", seed=0)
    first.stop_after(2)
    first.trainer.run()
    assert first.trainer.state.epoch == 2
    assert files(tmp_path / "run") == ["checkpoint_epoch=2.pt", "model.pt"]
    stopped = first.state()
    best_model = load(tmp_path / "run" / "model.pt")
    assert stopped["best"]["_saved"][0][0] == pytest.approx(0.8)
    assert stopped["lr_scheduler"]["last_epoch"] == 2

    second = Run(tmp_path / "run", seed=1, resume={})
    assert not torch.equal(second.network.weight, stopped["network"]["weight"])
    second.trainer.run()

    assert second.resume.resumed_from == tmp_path / "run" / "checkpoint_epoch=2.pt"
    assert "Resuming from" in caplog.text and "Starting training afresh" not in caplog.text
    start = second.at_start
    assert (start["epoch"], start["iteration"]) == (2, 2 * EPOCH_LENGTH)
    torch.testing.assert_close(start["network"], stopped["network"])
    assert_same_optimizer(start["optimizer"], stopped["optimizer"])
    assert start["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.1 * 0.5**2)
    assert start["lr_scheduler"] == stopped["lr_scheduler"]
    assert start["best"] == stopped["best"]

    assert second.first_iteration == 2 * EPOCH_LENGTH + 1
    assert (second.trainer.state.epoch, second.trainer.state.iteration) == (4, 4 * EPOCH_LENGTH)
    # the resumed run ends exactly where an uninterrupted one does
    torch.testing.assert_close(second.network.state_dict(), reference.network.state_dict())
    assert_same_optimizer(second.optimizer.state_dict(), reference.optimizer.state_dict())
    # epochs 3 and 4 scored 0.6 and 0.7, worse than 0.8: model.pt is still the epoch 2 model
    assert latest_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoint_epoch=4.pt"
    torch.testing.assert_close(load(tmp_path / "run" / "model.pt"), best_model)
    assert second.best.state_dict()["_saved"][0][0] == pytest.approx(0.8)
    assert load(tmp_path / "run" / "checkpoint_epoch=4.pt")["trainer"]["iteration"] == 4 * EPOCH_LENGTH


def test_disabled_resume_ignores_the_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    first = Run(tmp_path, seed=0, max_epochs=2)
    first.trainer.run()
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_epoch=2.pt"
    trained = first.state()["network"]

    second = Run(tmp_path, seed=1, max_epochs=2, resume={"enabled": False})
    initial = copy.deepcopy(second.network.state_dict())
    second.trainer.run()
    assert second.resume.resumed_from is None
    assert "Starting training afresh (resume disabled)" in caplog.text
    assert second.at_start["iteration"] == 0 and second.first_iteration == 1
    torch.testing.assert_close(second.at_start["network"], initial)
    assert not torch.equal(second.at_start["network"]["weight"], trained["weight"])
    assert second.trainer.state.iteration == 2 * EPOCH_LENGTH


def test_a_checkpoint_of_another_schedule_is_not_resumed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The quick CPU run and the full recipe share a bundle's models/ folder: the full run must not resume the
    quick run's 3-epoch schedule (its LR scheduler state would end the new run's schedule early)."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    quick = Run(tmp_path, seed=0, max_epochs=3)
    quick.trainer.run()
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_epoch=3.pt"

    full = Run(tmp_path, seed=1, max_epochs=4, resume={})
    full.trainer.run()
    assert full.resume.resumed_from is None
    assert "another schedule (max_epochs 3 there, 4 here)" in caplog.text
    assert (full.at_start["epoch"], full.at_start["iteration"]) == (0, 0)
    assert (full.trainer.state.epoch, full.trainer.state.iteration) == (4, 4 * EPOCH_LENGTH)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*.pt")) == ["checkpoint_epoch=4.pt"]
    # the quick run's files were moved aside, not deleted, and the warning says where
    assert full.resume.moved_to.parent == tmp_path / "previous_runs"
    assert files(full.resume.moved_to) == ["checkpoint_epoch=3.pt", "model.pt"]
    assert f"moved to {full.resume.moved_to}" in caplog.text


# --- AMP gradient scalers ---------------------------------------------------------------------------------------------


def scaled_engine() -> Engine:
    """An engine with a CPU gradient scaler created in ``run()`` (as MONAI's trainers do) and one per discriminator."""
    engine = counting_engine(zero_linear())

    def create_scalers(_: Engine) -> None:
        engine.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        engine.d_scalers = {"moni": torch.amp.GradScaler("cpu", init_scale=2.0**16)}
        engine.plain = torch.amp.GradScaler("cpu", enabled=False)

    engine.add_event_handler(Events.STARTED, create_scalers)
    return engine


def test_scalers_are_saved_and_restored_on_resume(tmp_path: Path) -> None:
    engine = scaled_engine()

    def rescale(e: Engine) -> None:  # as a step of a real scaler would move the scale
        for scaler, value in ((e.scaler, float(e.state.iteration)), (e.d_scalers["moni"], 0.5)):
            scaler.scale(torch.ones(()))
            scaler.update(new_scale=value)

    engine.add_event_handler(Events.ITERATION_COMPLETED, rescale)
    saver = AtomicCheckpointSaver(str(tmp_path), {"network": zero_linear()}, engine_key="trainer", save_interval=1)
    saver.attach(engine)
    engine.run(range(EPOCH_LENGTH), max_epochs=1)
    saved = load(tmp_path / "checkpoint_epoch=1.pt")["amp_scalers"]
    assert set(saved) == {"scaler", "d_scalers.moni"}  # the disabled scaler has no state
    assert saved["scaler"]["scale"] == float(EPOCH_LENGTH) and saved["d_scalers.moni"]["scale"] == 0.5

    resumed = scaled_engine()
    scales: dict = {}
    ResumeCheckpointLoader(str(tmp_path), {"network": zero_linear()}, engine_key="trainer").attach(resumed)
    resumed.add_event_handler(
        Events.STARTED, lambda e: scales.update(g=e.scaler.get_scale(), d=e.d_scalers["moni"].get_scale())
    )
    resumed.run(range(EPOCH_LENGTH), max_epochs=2)
    assert scales == {"g": float(EPOCH_LENGTH), "d": 0.5}


def test_a_checkpoint_without_scalers_still_resumes(tmp_path: Path) -> None:
    net = zero_linear()
    engine = counting_engine(net)
    AtomicCheckpointSaver(str(tmp_path), {"network": net}, engine_key="trainer", save_interval=1).attach(engine)
    engine.run(range(EPOCH_LENGTH), max_epochs=1)
    path = tmp_path / "checkpoint_epoch=1.pt"
    checkpoint = load(path)
    del checkpoint["amp_scalers"]  # as written before the scalers were saved
    torch.save(checkpoint, path)
    resumed = scaled_engine()
    ResumeCheckpointLoader(str(tmp_path), {"network": zero_linear()}, engine_key="trainer").attach(resumed)
    resumed.run(range(EPOCH_LENGTH), max_epochs=2)
    assert resumed.state.epoch == 2 and resumed.scaler.get_scale() == 2.0**16


@pytest.mark.parametrize("flag, resumes", [("false", False), ("False", False), ("0", False), ("true", True), (1, True)])
def test_resume_flag_from_the_command_line(tmp_path: Path, flag, resumes: bool) -> None:
    """``--resume false`` reaches the config as the string "false" (fire only reads ``False`` as a boolean)."""
    net = zero_linear()
    engine = counting_engine(net)
    AtomicCheckpointSaver(str(tmp_path), {"network": net}, engine_key="trainer", save_interval=1).attach(engine)
    engine.run(range(EPOCH_LENGTH), max_epochs=1)
    loader = ResumeCheckpointLoader(str(tmp_path), {"network": zero_linear()}, engine_key="trainer", enabled=flag)
    loader.attach(counting_engine(zero_linear()))
    assert (loader.resumed_from is not None) is resumes
    with pytest.raises(ValueError, match="must be true or false, got 'maybe'"):
        ResumeCheckpointLoader(str(tmp_path), {"network": zero_linear()}, enabled="maybe")


# --- random states: a resumed run draws what the uninterrupted run draws --------------------------------------------


def augmented_cases(files_dir: Path | None = None, content: str = "case") -> list[dict]:
    """Six 1x4x4 images and float masks, the same in every run (their own generator); with ``files_dir``, each case
    also names a small file there (what a datalist holds), written with ``content``."""
    generator = torch.Generator().manual_seed(0)
    cases = []
    for i in range(6):
        case = {"id": f"case{i}", "image": torch.randn(1, 4, 4, generator=generator)}
        case["label"] = (case["image"] > 0).float()
        if files_dir is not None:
            files_dir.mkdir(parents=True, exist_ok=True)
            path = files_dir / f"case{i}.txt"
            if not path.exists():
                path.write_text(f"{content} {i}")
            case["file"] = str(path)
        cases.append(case)
    return cases


class AugmentedRun:
    """A SupervisedTrainer that draws random numbers wherever a bundle does: a shuffling MONAI DataLoader (with or
    without its own generator, in the main process or in workers), MONAI random transforms (noise, flips), dropout
    (torch's default generator) and, in a handler, NumPy's and Python's global generators; SGD with momentum, a step
    LR schedule, one interval checkpoint per epoch. ``set_determinism(seed)`` starts every generator afresh, as a
    new process does."""

    def __init__(
        self,
        folder: Path,
        seed: int = 0,
        max_epochs: int = 4,
        resume: dict | None = None,
        num_workers: int = 0,
        loader_generator: bool = False,
        files_dir: Path | None = None,
        lr: float = 0.1,
        width: int = 8,
        batch_size: int = 2,
        best_model: bool = False,
    ) -> None:
        set_determinism(seed)
        transform = Compose(
            [
                RandGaussianNoised(keys="image", prob=0.5, std=0.5),
                RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
            ]
        )
        generator = torch.Generator().manual_seed(100 + seed) if loader_generator else None
        data_loader = MonaiDataLoader(
            Dataset(augmented_cases(files_dir), transform),
            batch_size=batch_size,
            shuffle=True,
            num_workers=num_workers,
            generator=generator,
        )
        self.network = torch.nn.Sequential(
            torch.nn.Conv2d(1, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.5),
            torch.nn.Conv2d(width, 1, 1),
        )
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=lr, momentum=0.9)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.5)
        self.trainer = SupervisedTrainer(
            device=torch.device("cpu"),
            max_epochs=max_epochs,
            train_data_loader=data_loader,
            network=self.network,
            optimizer=self.optimizer,
            loss_function=torch.nn.MSELoss(),
        )
        objects = {"network": self.network, "optimizer": self.optimizer, "lr_scheduler": self.scheduler}
        if best_model:  # tracks model.pt, as a bundle's validator does
            objects["best_model_saver"] = best_model_saver(folder, self.network)
        self.resume = None
        if resume is not None:
            self.resume = ResumeCheckpointLoader(
                str(folder), load_dict=dict(objects), engine_key="trainer", name=LOGGER, **resume
            )
            self.resume.attach(self.trainer)
        self.draws: dict[int, tuple] = {}  # iteration -> (batch sum, NumPy draw, Python draw)
        self.trainer.add_event_handler(Events.ITERATION_COMPLETED, self._draw)
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: self.scheduler.step())
        saver = AtomicCheckpointSaver(
            str(folder), dict(objects), engine_key="trainer", save_interval=1, n_saved=1, epoch_level=True
        )
        saver.attach(self.trainer)

    def _draw(self, engine: Engine) -> None:
        batch_sum = float(engine.state.output[0]["image"].sum()) if isinstance(engine.state.output, list) else None
        numpy_draw = float(np.random.rand())  # noqa: NPY002 (the global generator is under test)
        self.draws[engine.state.iteration] = (batch_sum, numpy_draw, random.random())

    def stop_after(self, epoch: int) -> None:
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=epoch), lambda engine: engine.terminate())


def assert_bit_identical(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), f"{key} differs by {(actual[key] - expected[key]).abs().max()}"


@pytest.mark.parametrize(
    "num_workers, loader_generator", [(0, False), (0, True), (2, False)], ids=["main", "generator", "workers"]
)
def test_a_resumed_run_is_the_uninterrupted_run(tmp_path: Path, num_workers: int, loader_generator: bool) -> None:
    """Stopped after epoch 2 and resumed by a run whose generators all start elsewhere (seed 1), training ends with
    the very weights of the uninterrupted run, having seen the same batches, augmentations and draws. Without the
    random states in the checkpoint the resumed run shuffles, augments and drops out differently."""
    options = {"num_workers": num_workers, "loader_generator": loader_generator}
    reference = AugmentedRun(tmp_path / "reference", **options)
    reference.trainer.run()
    first = AugmentedRun(tmp_path / "run", **options)
    first.stop_after(2)
    first.trainer.run()
    assert first.trainer.state.iteration == 2 * EPOCH_LENGTH
    saved = load(tmp_path / "run" / "checkpoint_epoch=2.pt")["random_states"]
    generators = sorted(saved["generators"])
    assert [p for p in generators if p.endswith(".R")], generators  # the transforms' RandomState objects
    assert any(p.endswith("generator") for p in generators) is loader_generator

    second = AugmentedRun(tmp_path / "run", seed=1, resume={}, **options)
    second.trainer.run()
    assert second.resume.resumed_from == tmp_path / "run" / "checkpoint_epoch=2.pt"
    resumed = range(2 * EPOCH_LENGTH + 1, 4 * EPOCH_LENGTH + 1)
    assert sorted(second.draws) == list(resumed)
    assert [second.draws[i] for i in resumed] == [reference.draws[i] for i in resumed]
    assert_bit_identical(second.network.state_dict(), reference.network.state_dict())
    for index, state in reference.optimizer.state_dict()["state"].items():
        assert torch.equal(second.optimizer.state_dict()["state"][index]["momentum_buffer"], state["momentum_buffer"])


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    """Saved, then drawn from, then restored: every generator draws again what it drew after the save."""
    run = AugmentedRun(tmp_path, loader_generator=True)
    states = RandomStates(run.trainer)
    generators = states.generators()
    assert {type(g) for g in generators.values()} == {np.random.RandomState, torch.Generator}
    torch.save(states.state_dict(), tmp_path / "states.pt")

    def draw() -> list:
        values = [torch.rand(3), np.random.rand(3), random.random()]  # noqa: NPY002
        for generator in generators.values():
            values.append(
                torch.rand(2, generator=generator) if isinstance(generator, torch.Generator) else generator.rand(2)
            )
        return values

    first = draw()
    states.load_state_dict(torch.load(tmp_path / "states.pt", weights_only=True))
    second = draw()
    for a, b in zip(first, second):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else np.array_equal(a, b), (a, b)
    assert not torch.equal(first[0], torch.rand(3))  # the draws move on afterwards


def test_find_random_generators_names_each_once_and_follows_handlers() -> None:
    shared = RandGaussianNoised(keys="image", prob=1.0)
    pipeline = Compose([shared, shared, RandFlipd(keys="image", prob=0.5)])
    validator = Engine(lambda engine, batch: None)
    validator.data_loader = MonaiDataLoader(Dataset([{"image": torch.zeros(1, 2, 2)}], pipeline), batch_size=1)
    trainer = Engine(lambda engine, batch: None)

    class Validate:
        def __init__(self, validator: Engine) -> None:
            self.validator = validator

        def __call__(self, engine: Engine) -> None:
            self.validator.run([0])

    trainer.add_event_handler(Events.EPOCH_COMPLETED(every=2), Validate(validator))  # Ignite wraps filtered handlers
    found = find_random_generators(trainer)
    assert len({id(g) for g in found.values()}) == len(found)  # the shared transform's R once
    prefix = "handlers.Validate0.validator.data_loader.dataset.transform"
    assert f"{prefix}.transforms.0.R" in found and f"{prefix}.transforms.2.R" in found
    assert found[f"{prefix}.transforms.0.rand_gaussian_noise.R"] is shared.rand_gaussian_noise.R


# --- a checkpoint is resumed only by its own run --------------------------------------------------------------------


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


def test_data_fingerprint_follows_ids_names_sizes_and_times(tmp_path: Path) -> None:
    cases = augmented_cases(tmp_path / "a")
    first = data_fingerprint(cases)
    assert first["cases"] == 6 and first["folder"] == str(tmp_path / "a")
    assert data_fingerprint(augmented_cases(tmp_path / "a")) == first
    # the same files elsewhere, with their sizes and times: the same data
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "a", moved)
    for i in range(6):
        os.utime(moved / f"case{i}.txt", ns=(0, (tmp_path / "a" / f"case{i}.txt").stat().st_mtime_ns))
    assert data_fingerprint(augmented_cases(moved))["sha256"] == first["sha256"]
    renamed = [dict(case, id=f"other{i}") for i, case in enumerate(cases)]
    assert data_fingerprint(renamed)["sha256"] != first["sha256"]
    assert data_fingerprint(cases[:5])["sha256"] != first["sha256"]
    stat = (tmp_path / "a" / "case3.txt").stat()
    (tmp_path / "a" / "case3.txt").write_text("case 3!")  # one byte more
    os.utime(tmp_path / "a" / "case3.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data_fingerprint(cases)["sha256"] != first["sha256"]
    (tmp_path / "a" / "case3.txt").write_text("case 3")  # the old size, a new time
    os.utime(tmp_path / "a" / "case3.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert data_fingerprint(cases)["sha256"] != first["sha256"]


def run_on_then_resume_with(tmp_path: Path, caplog: pytest.LogCaptureFixture, **changed) -> AugmentedRun:
    """A 2-epoch run on the data in ``tmp_path/a``, then a run with ``changed`` options that tries to resume it."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    first = AugmentedRun(tmp_path / "models", max_epochs=2, files_dir=tmp_path / "a", best_model=True)
    first.trainer.run()
    (tmp_path / "models" / "model.pt").write_bytes(b"the best model of the first run")
    options = {"max_epochs": 2, "files_dir": tmp_path / "a", "resume": {}, "best_model": True}
    options.update(changed)
    return AugmentedRun(tmp_path / "models", seed=1, **options)


def assert_started_afresh(run: AugmentedRun, caplog: pytest.LogCaptureFixture, folder: Path, why: str) -> None:
    """Not resumed, with one warning naming ``why`` and where the old files went, which are all there."""
    assert run.resume.resumed_from is None
    messages = warnings_of(caplog)
    assert len(messages) == 1, messages
    assert why in messages[0] and f"moved to {run.resume.moved_to}" in messages[0], messages[0]
    assert run.resume.moved_to.parent == folder / "previous_runs"
    assert files(run.resume.moved_to) == ["checkpoint_epoch=2.pt", "model.pt"]
    assert (run.resume.moved_to / "model.pt").read_bytes() == b"the best model of the first run"
    assert not list(folder.glob("checkpoint_*.pt")) and not (folder / "model.pt").exists()
    run.trainer.run()
    assert min(run.draws) == 1 and run.trainer.state.iteration == len(run.draws)  # trained from the first iteration


def test_other_data_starts_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The quick run, then the same command with ``--dataset_dir <another folder>``: that is another run."""
    second = run_on_then_resume_with(tmp_path, caplog, files_dir=tmp_path / "b")
    why = f"other data (6 cases in {tmp_path / 'a'} there, 6 cases in {tmp_path / 'b'} here)"
    assert_started_afresh(second, caplog, tmp_path / "models", why)


def test_changed_files_start_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    AugmentedRun(tmp_path / "models", max_epochs=2, files_dir=tmp_path / "a").trainer.run()
    (tmp_path / "a" / "case0.txt").write_text("a new label")
    second = AugmentedRun(tmp_path / "models", seed=1, max_epochs=2, files_dir=tmp_path / "a", resume={})
    assert second.resume.resumed_from is None
    assert "other data (6 cases there, 6 here" in warnings_of(caplog)[0]


def test_another_network_starts_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    second = run_on_then_resume_with(tmp_path, caplog, width=4)
    why = "another network ('network': 3 tensors of other shapes, e.g. 0.weight (8, 1, 3, 3) there, (4, 1, 3, 3) here)"
    assert_started_afresh(second, caplog, tmp_path / "models", why)


def test_another_learning_rate_starts_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    second = run_on_then_resume_with(tmp_path, caplog, lr=0.2)
    why = "another schedule (optimizer initial_lr 0.1 there, 0.2 here, lr_scheduler base_lrs [0.1] there, [0.2] here)"
    assert_started_afresh(second, caplog, tmp_path / "models", why)


def test_another_batch_size_starts_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    second = run_on_then_resume_with(tmp_path, caplog, batch_size=3)
    why = "another schedule (epoch_length 3 there, 2 here, batch sizes [2] there, [3] here)"
    assert_started_afresh(second, caplog, tmp_path / "models", why)


def test_the_same_run_resumes_without_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    second = run_on_then_resume_with(tmp_path, caplog, max_epochs=3)  # the schedule's length is max_epochs...
    assert second.resume.resumed_from is None and "max_epochs 2 there, 3 here" in warnings_of(caplog)[0]
    caplog.clear()
    (tmp_path / "models" / "model.pt").write_bytes(b"best")
    third = AugmentedRun(tmp_path / "models", seed=2, max_epochs=3, files_dir=tmp_path / "a", resume={})
    assert warnings_of(caplog) == [] and third.resume.resumed_from is None  # ...nothing was saved yet to resume
    second.trainer.run()
    fourth = AugmentedRun(tmp_path / "models", seed=2, max_epochs=3, files_dir=tmp_path / "a", resume={})
    assert fourth.resume.resumed_from == tmp_path / "models" / "checkpoint_epoch=3.pt"
    assert warnings_of(caplog) == []


def test_a_checkpoint_without_a_run_record_is_not_resumed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    AugmentedRun(tmp_path, max_epochs=2).trainer.run()
    checkpoint = load(tmp_path / "checkpoint_epoch=2.pt")
    del checkpoint["run"], checkpoint["random_states"]  # as written by the previous version
    torch.save(checkpoint, tmp_path / "checkpoint_epoch=2.pt")
    second = AugmentedRun(tmp_path, seed=1, max_epochs=2, resume={})
    assert second.resume.resumed_from is None
    assert "cannot be told apart from another run" in warnings_of(caplog)[0]
    assert files(second.resume.moved_to) == ["checkpoint_epoch=2.pt"]


def test_a_finished_run_run_again_says_it_trained_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    AugmentedRun(tmp_path, max_epochs=2).trainer.run()
    caplog.clear()
    again = AugmentedRun(tmp_path, seed=1, max_epochs=2, resume={})
    again.trainer.run()
    assert again.resume.resumed_from == tmp_path / "checkpoint_epoch=2.pt" and again.draws == {}
    last = caplog.records[-1]
    assert last.levelno == logging.WARNING and last.getMessage().startswith("Trained zero iterations: the checkpoint")
    assert "epoch 2 of 2" in last.getMessage() and "--resume False" in last.getMessage()
    caplog.clear()
    AugmentedRun(tmp_path / "fresh", max_epochs=1, resume={}).trainer.run()
    assert not [r for r in caplog.records if "zero iterations" in r.getMessage()]
