"""Tests of common.handlers.checkpoint: atomic saves that never leave zero checkpoints, and resumption."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from torch.utils.data import DataLoader

from common.handlers import AtomicCheckpointSaver, ResumeCheckpointLoader, latest_checkpoint

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
    assert set(checkpoint) == {"network", "trainer", "amp_scalers"}
    assert checkpoint["amp_scalers"] == {}  # no AMP, no scaler
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
    # the quick run's checkpoint went once the full run saved its own
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*.pt")) == ["checkpoint_epoch=4.pt"]


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
