"""Tests of benchmarks/timing.py: one duration per iteration, warm-up left out of the summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from ignite.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from timing import IterationTimer, describe_machine


def test_one_duration_per_iteration_and_warmup_excluded(capsys) -> None:
    sleeps = [0.05, 0.01, 0.01, 0.01]
    engine = Engine(lambda e, batch: time.sleep(batch))
    timer = IterationTimer(torch.device("cpu"), digits=2)
    timer.attach(engine)
    engine.run(sleeps, max_epochs=1)
    assert len(timer.durations) == 4
    assert all(d >= s for d, s in zip(timer.durations, sleeps))
    assert timer.timed(1) == timer.durations[1:]
    assert timer.timed(10) == timer.durations  # nothing after the warm-up: all are reported
    assert "mean of 3 after 1 warm-up" in timer.summary(1) and "(min " in timer.summary(1)
    assert "iteration 4/4:" in capsys.readouterr().out


def test_machine_description_names_threads_and_torch() -> None:
    text = describe_machine(torch.device("cpu"))
    assert f"CPU, {torch.get_num_threads()} torch threads" in text and torch.__version__ in text
