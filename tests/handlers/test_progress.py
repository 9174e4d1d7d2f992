"""Tests of common.handlers.progress: the named loss, metrics and state attributes on the bar, Ignite's signature."""

from __future__ import annotations

import io
import logging
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------- TrainingBanner
class FakeClock:
    """``time.perf_counter`` advanced by the engine's step: every iteration takes ``step`` seconds."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        return self.now


def banner_engine(clock: FakeClock, device: str = "cpu", resume_at: int = 0) -> Engine:
    def step(engine: Engine, batch: int) -> dict:
        clock.now += clock.step
        logging.getLogger("common.handlers").info("iteration %d ran", engine.state.iteration)
        return {"loss": torch.tensor(0.0)}

    engine = Engine(step)
    engine.state.device = torch.device(device)
    engine.amp = False
    if resume_at:
        # a checkpoint loader attached first restores the iteration at STARTED, as ResumeCheckpointLoader does
        engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "iteration", resume_at))
    return engine


def test_format_duration() -> None:
    from common.handlers.progress import format_duration

    assert format_duration(45) == "45 s"
    assert format_duration(200) == "3 min 20 s"
    assert format_duration(59.6) == "1 min 00 s"
    assert format_duration(7 * 3600 + 300) == "7 h 05 min"
    assert format_duration(2 * 86400 + 3 * 3600 + 59) == "2 d 03 h"
    assert format_duration(-3) == "0 s"


def test_banner_comes_before_the_first_iteration(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    from common.handlers import TrainingBanner

    clock = FakeClock(step=10.0)
    monkeypatch.setattr("common.handlers.progress.time.perf_counter", clock)
    datalist = {"name": "kvasir_seg", "training": [{}] * 3, "validation": [{}] * 2, "test": []}
    engine = banner_engine(clock)
    TrainingBanner(datalist=datalist, dataset_dir="/data/kvasir", eta_after=2).attach(engine)
    with caplog.at_level(logging.INFO, logger="common.handlers"):
        engine.run([1, 2, 3], max_epochs=2)
    messages = [r.getMessage() for r in caplog.records if r.name == "common.handlers"]
    assert messages[0] == (
        "training starts: device cpu, AMP off; data /data/kvasir: training 3, validation 2, test 0 cases; "
        "3 iterations per epoch x 2 epochs = 6 iterations"
    )
    assert messages[1] == "iteration 1 ran"
    # 10 s per iteration, timed over iterations 2 and 3 (the first is warm-up); 3 iterations remain after the third
    eta = [m for m in messages if "per iteration" in m]
    assert eta == [
        "10 s per iteration (measured over 2 after 1 warm-up): about 30 s for the 3 remaining iterations "
        "(validation not included)"
    ]
    assert messages.index(eta[0]) == messages.index("iteration 3 ran") + 1


def test_long_cpu_run_warns_with_the_quick_command(tmp_path, caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    from common.handlers import TrainingBanner

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "quick.json").write_text("{}")
    clock = FakeClock(step=600.0)  # 10 min per iteration, 4 remaining after 1 warm-up + 1 timed: 40 min > 30 min
    monkeypatch.setattr("common.handlers.progress.time.perf_counter", clock)
    banner = TrainingBanner(bundle_root=str(tmp_path), cpu_warning_seconds=1800)
    engine = banner_engine(clock)
    banner.attach(engine)
    with caplog.at_level(logging.INFO, logger="common.handlers"):
        engine.run([1, 2, 3], max_epochs=2)
    warnings_ = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "common.handlers"]
    assert len(warnings_) == 1
    assert warnings_[0].startswith("this recipe is meant for a GPU: on this CPU, 10 min 00 s per iteration")
    assert "about 40 min 00 s for the 4 remaining iterations" in warnings_[0]
    assert f"--config_file \"['{tmp_path}/configs/train.json','{tmp_path}/configs/quick.json']\"" in warnings_[0]


def test_same_eta_on_a_gpu_or_a_short_cpu_run_is_no_warning(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    from common.handlers import TrainingBanner

    for device, step in (("cuda", 600.0), ("cpu", 1.0)):
        clock = FakeClock(step=step)
        monkeypatch.setattr("common.handlers.progress.time.perf_counter", clock)
        engine = banner_engine(clock, device=device)
        TrainingBanner(cpu_warning_seconds=1800).attach(engine)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="common.handlers"):
            engine.run([1, 2, 3], max_epochs=2)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "common.handlers"], device
        assert any("for the 4 remaining iterations" in r.getMessage() for r in caplog.records)


def test_resumed_run_counts_what_is_left(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    from common.handlers import TrainingBanner

    clock = FakeClock(step=2.0)
    monkeypatch.setattr("common.handlers.progress.time.perf_counter", clock)
    engine = banner_engine(clock, resume_at=3)  # epoch 1 of 2 done
    TrainingBanner().attach(engine)
    with caplog.at_level(logging.INFO, logger="common.handlers"):
        engine.run([1, 2, 3], max_epochs=2)
    messages = [r.getMessage() for r in caplog.records if r.name == "common.handlers"]
    assert messages[0].endswith("3 iterations per epoch x 2 epochs = 6 iterations, 3 still to run (resumed)")
    # resumed at 3 of 6: iteration 4 is warm-up, 5 is timed (2 s), 1 remains
    eta = "2 s per iteration (measured over 1 after 1 warm-up): about 2 s for the 1 remaining iterations"
    assert eta in " ".join(messages)


@pytest.mark.parametrize(
    "config",
    sorted(Path(__file__).resolve().parents[2].glob("bundles/*/configs/*.json")),
    ids=lambda p: f"{p.parent.parent.name}/{p.name}",
)
def test_every_training_handler_list_has_the_banner_after_resumption(config: Path) -> None:
    import json

    content = json.loads(config.read_text())
    handlers = content.get("train", {}).get("handlers") if isinstance(content.get("train"), dict) else None
    if config.name == "supervised.json":
        handlers = content.get("train#handlers", handlers)
    if not isinstance(handlers, list):
        return  # this config does not define a training handler list
    if any(isinstance(h, str) for h in handlers):  # "@train#banner": handlers defined at ids of train.json
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config([str(config.parent / "train.json"), str(config)])
        handlers = [parser[h[1:]] if isinstance(h, str) and h.startswith("@") else h for h in handlers]
    targets = [h.get("_target_") for h in handlers if isinstance(h, dict)]
    assert len(targets) == len(handlers), config  # every entry resolved, none skipped
    assert targets.count("common.handlers.TrainingBanner") == 1, config
    if "common.handlers.ResumeCheckpointLoader" in targets:
        # the banner counts what is left, so it runs after the checkpoint has set the iteration (same event)
        resume = targets.index("common.handlers.ResumeCheckpointLoader")
        assert targets.index("common.handlers.TrainingBanner") > resume
