from __future__ import annotations

import csv

import pytest
import torch
from ignite.engine import Engine, Events

from common.handlers import TrainingCurvesSaver, scalar_outputs


def _trainer(outputs: list[dict], epochs: int) -> Engine:
    """A tiny trainer whose outputs are the given dicts, in turn; it writes ``state.ramp`` like a schedule."""

    def step(engine: Engine, batch: int) -> dict:
        engine.state.ramp = 0.1 * engine.state.iteration
        return outputs[engine.state.iteration - 1]

    return Engine(step)


def _validator(values: list[float]) -> Engine:
    validator = Engine(lambda engine, batch: None)

    @validator.on(Events.COMPLETED)
    def _metric(engine: Engine) -> None:
        engine.state.metrics["val_mean_dice"] = values.pop(0)

    return validator


def test_records_outputs_state_and_validation_and_writes_png(tmp_path):
    epochs, per_epoch = 3, 4
    outputs = [
        {
            "image": torch.rand(2, 1, 8, 8),
            "label": torch.ones(2, 1, 8, 8),
            "pred": torch.rand(2, 2, 8, 8),
            "loss": torch.tensor(1.0 / (i + 1)),
            "loss_sup": 0.5 / (i + 1),
            "consistency_weight": torch.tensor([0.01 * i]),
            "flag": True,
        }
        for i in range(epochs * per_epoch)
    ]
    dice = [0.2, 0.5, 0.7]
    validator = _validator(list(dice))
    trainer = _trainer(outputs, epochs)

    @trainer.on(Events.EPOCH_COMPLETED)
    def _validate(engine: Engine) -> None:
        validator.run([0])

    saver = TrainingCurvesSaver(tmp_path / "out", state_attributes=["ramp", "absent"], validator=validator)
    saver.attach(trainer)
    trainer.run(list(range(per_epoch)), max_epochs=epochs)

    assert saver.png_path.is_file() and saver.png_path.stat().st_size > 1000
    assert set(saver.iterations) == {"loss", "loss_sup", "consistency_weight", "ramp"}  # no batch tensors, no bool
    assert [v for *_, v in saver.iterations["loss"]] == pytest.approx([1.0 / (i + 1) for i in range(12)])
    assert [v for *_, v in saver.iterations["consistency_weight"]] == pytest.approx([0.01 * i for i in range(12)])
    assert [v for *_, v in saver.iterations["ramp"]] == pytest.approx([0.1 * (i + 1) for i in range(12)])
    assert [(e, i) for e, i, _ in saver.iterations["loss_sup"]][:5] == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 5)]
    assert saver.metrics["val_mean_dice"] == [(1, 0.2), (2, 0.5), (3, 0.7)]
    with open(saver.csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 12 + 3
    assert [float(r["value"]) for r in rows if r["name"] == "val_mean_dice"] == pytest.approx(dice)


def test_output_keys_interval_and_decollated_output(tmp_path):
    outputs = [[{"loss": torch.tensor(float(i)), "other": 5.0}, {"loss": torch.tensor(float(i))}] for i in range(6)]
    trainer = Engine(lambda engine, batch: outputs[engine.state.iteration - 1])
    saver = TrainingCurvesSaver(tmp_path, output_keys=["loss"], interval=2, filename="c.png")
    saver.attach(trainer)
    trainer.run(range(6), max_epochs=1)
    assert [(i, v) for _, i, v in saver.iterations["loss"]] == [(2, 1.0), (4, 3.0), (6, 5.0)]
    assert list(saver.iterations) == ["loss"]
    assert (tmp_path / "c.png").is_file() and (tmp_path / "c.csv").is_file()


def test_missing_key_and_bad_arguments(tmp_path):
    with pytest.raises(KeyError, match="loss_cps"):
        scalar_outputs({"loss": 1.0}, ["loss_cps"])
    with pytest.raises(ValueError, match="interval"):
        TrainingCurvesSaver(tmp_path, interval=0)
    with pytest.raises(ValueError, match="png"):
        TrainingCurvesSaver(tmp_path, filename="curves.jpg")
    assert scalar_outputs(torch.tensor(2.5)) == {"loss": 2.5}


def test_only_rank_zero_attaches(tmp_path, monkeypatch):
    import ignite.distributed as idist

    monkeypatch.setattr(idist, "get_rank", lambda: 1)
    trainer = Engine(lambda engine, batch: {"loss": 1.0})
    saver = TrainingCurvesSaver(tmp_path)
    saver.attach(trainer)
    trainer.run([0], max_epochs=1)
    assert saver.iterations == {} and not saver.png_path.exists()
    assert TrainingCurvesSaver.main_process_only


def test_a_run_that_records_nothing_keeps_existing_curves(tmp_path):
    """A finished training run again resumes at its last iteration and trains none: its curves stay as they were."""
    outputs = [{"loss": torch.tensor(1.0 / (i + 1))} for i in range(4)]
    trainer = _trainer(outputs, epochs=2)
    saver = TrainingCurvesSaver(tmp_path)
    saver.attach(trainer)
    trainer.run(list(range(2)), max_epochs=2)
    png, table = saver.png_path.read_bytes(), saver.csv_path.read_text()
    assert len(table.splitlines()) == 1 + 4

    again = Engine(lambda engine, batch: {"loss": 0.0})
    rerun = TrainingCurvesSaver(tmp_path)
    rerun.attach(again)

    @again.on(Events.STARTED)
    def _resumed(engine: Engine) -> None:  # as ResumeCheckpointLoader leaves a finished run's state
        engine.state.epoch, engine.state.iteration = 2, 4

    again.run(list(range(2)), max_epochs=2)
    assert again.state.iteration == 4 and rerun.iterations == {} and rerun.metrics == {}
    assert saver.png_path.read_bytes() == png and saver.csv_path.read_text() == table

    empty = TrainingCurvesSaver(tmp_path / "never")
    empty.save()
    assert not (tmp_path / "never").exists()
