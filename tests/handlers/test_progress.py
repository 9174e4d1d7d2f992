"""Tests of common.handlers.progress: the named loss, metrics and state attributes on the bar, Ignite's signature."""

from __future__ import annotations

import io

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

from common.handlers import TrainingProgressBar


def engine_with_outputs(decollated: bool = True) -> Engine:
    """Three iterations per epoch with loss = 0.25 * batch; the output is a dict per item (MONAI's decollated output)
    or one dict for the batch."""

    def step(engine: Engine, batch: int) -> list[dict] | dict:
        loss = torch.tensor(0.25 * batch)
        if not decollated:
            return {"loss": loss, "pred": torch.zeros(2, 2)}
        return [{"loss": loss, "pred": torch.zeros(2)}, {"loss": loss, "pred": torch.ones(2)}]

    engine = Engine(step)

    @engine.on(Events.ITERATION_COMPLETED)
    def _metrics(engine: Engine) -> None:
        engine.state.metrics.update({"dice": 0.75, "hd95": 4.5})
        engine.state.consistency_weight = 0.125

    return engine


def run_with(bar: ProgressBar, engine: Engine, *args, **kwargs) -> str:
    bar.attach(engine, *args, **kwargs)
    engine.run([1, 2, 3], max_epochs=2)
    return bar.tqdm_kwargs["file"].getvalue()


def new_bar(**kwargs) -> TrainingProgressBar:
    return TrainingProgressBar(file=io.StringIO(), mininterval=0, **kwargs)


@pytest.mark.parametrize("decollated", [True, False])
def test_shows_the_named_loss(decollated: bool) -> None:
    bar = new_bar()
    text = run_with(bar, engine_with_outputs(decollated))
    lines = text.strip("\n").split("\n")
    assert len(lines) == 2  # persist: the finished bar of each epoch stays
    for epoch, line in enumerate(lines, start=1):
        final = line.split("\r")[-1]
        assert final.startswith(f"Epoch [{epoch}/2]: [3/3] 100%")
        assert "loss=0.75" in final
    assert "loss=0.25" in text and "loss=0.5" in text
    assert "dice" not in text and "consistency_weight" not in text


def test_named_outputs() -> None:
    bar = TrainingProgressBar(output_keys=["loss", "reg"])
    item = {"loss": torch.tensor(0.5), "reg": torch.tensor([0.125]), "pred": torch.zeros(3)}
    assert bar._named_outputs(item) == {"loss": 0.5, "reg": 0.125}
    assert bar._named_outputs([item, dict(item, loss=torch.tensor(9.0))]) == {"loss": 0.5, "reg": 0.125}
    with pytest.raises(KeyError, match="reg"):
        TrainingProgressBar(output_keys=["reg"])._named_outputs({"loss": torch.tensor(0.5)})


@pytest.mark.parametrize("metric_names", [["dice"], ("dice",)])
def test_metric_names_and_state_attributes(metric_names) -> None:
    text = run_with(new_bar(metric_names=metric_names, state_attributes=("consistency_weight",)), engine_with_outputs())
    final = text.split("\n")[0].split("\r")[-1]
    assert "dice=0.75" in final and "loss=0.75" in final and "consistency_weight=0.125" in final
    assert "hd95" not in text


def test_all_metrics_without_output() -> None:
    text = run_with(new_bar(output_keys=None, metric_names="all"), engine_with_outputs())
    final = text.split("\n")[0].split("\r")[-1]
    assert "dice=0.75" in final and "hd95=4.5" in final
    assert "loss" not in text


def test_nothing_but_progress() -> None:
    text = run_with(new_bar(output_keys=[]), engine_with_outputs())
    assert "Epoch [2/2]: [3/3] 100%" in text and "=" not in text


def test_ignite_signature_still_works() -> None:
    bar = new_bar()
    text = run_with(bar, engine_with_outputs(), output_transform=lambda output: {"custom": output[0]["loss"]})
    assert "custom=0.75" in text and "loss" not in text

    text = run_with(new_bar(), engine_with_outputs(), ["dice"])
    assert "dice=0.75" in text and "loss" not in text


def test_ignite_signature_with_other_events() -> None:
    bar = new_bar()
    text = run_with(
        bar,
        engine_with_outputs(),
        metric_names=["hd95"],
        event_name=Events.EPOCH_COMPLETED,
        closing_event_name=Events.COMPLETED,
    )
    assert text.count("\n") == 1  # one bar over the epochs, closed once at the end
    assert "[2/2] 100%" in text and "hd95=4.5" in text


def test_is_a_main_process_only_ignite_progress_bar() -> None:
    bar = TrainingProgressBar()
    assert isinstance(bar, ProgressBar) and bar.main_process_only is True
    assert bar.persist is True and bar.output_keys == ["loss"]
    assert bar.metric_names is None and bar.state_attributes is None
