"""Tests of common.bundle.interrupt: Ctrl-C ends a bundle run within seconds, even inside a long native call."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from common.bundle.interrupt import INTERRUPT_EXIT_CODE, install_prompt_interrupt
from common.bundle.locate import repository_root


def start_run(tmp_path: Path, step: str, wait_for_output: bool = False) -> subprocess.Popen:
    """``python -m monai.bundle run`` of a config whose `run` prints RUNNING (or ``step`` does), then does ``step``."""
    config = {
        "imports": ["$import common", "$import time", "$import torch"],
        "initialize": ["$common.bundle.check_command_line()"],
        "run": [step] if wait_for_output else ["$print('RUNNING', flush=True)", step],
    }
    path = tmp_path / "configs" / "train.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(repository_root()), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(path), "--logging_file", "False"]
    # a terminal's Ctrl-C finds SIGINT at Python's default handler; a background job of a shell would ignore it
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if "RUNNING" in line or not line:
            break
    return process


def interrupt(process: subprocess.Popen) -> float:
    time.sleep(0.5)
    start = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return float("inf")
    return time.monotonic() - start


# one matrix product of two 12288 x 12288 matrices (3.7e12 multiply-adds: well over 3 s on one thread of any CPU,
# so the test does not depend on the machine's speed), started right after RUNNING: ATen runs it in C++ without
# returning to the interpreter, so Python alone would raise KeyboardInterrupt only when it is done
LONG_NATIVE_CALL = "$(lambda a: (print('RUNNING', flush=True), a.mm(a)))(torch.ones(12288, 12288))"


@pytest.mark.integration
def test_ctrl_c_inside_a_long_native_call_stops_within_the_grace(tmp_path: Path) -> None:
    process = start_run(tmp_path, LONG_NATIVE_CALL, wait_for_output=True)
    seconds = interrupt(process)
    stderr = process.stderr.read()
    assert seconds < 3.0 + 5.0, seconds  # the 3 s grace, and a loaded machine's slack
    assert process.returncode == INTERRUPT_EXIT_CODE
    assert "Interrupted (Ctrl-C): stopping now" in stderr and "run the same command to resume" in stderr


@pytest.mark.integration
def test_an_interruptible_step_stops_the_ordinary_way(tmp_path: Path) -> None:
    process = start_run(tmp_path, "$time.sleep(120)")
    seconds = interrupt(process)
    stderr = process.stderr.read()
    # KeyboardInterrupt at once; the exit itself (MONAI's and torch's teardown) takes seconds on a loaded machine
    assert seconds < 30.0, seconds
    assert "KeyboardInterrupt" in stderr and "stopping now" not in stderr
    assert process.returncode != INTERRUPT_EXIT_CODE


def test_not_installed_outside_the_main_thread() -> None:
    results = []
    thread = threading.Thread(target=lambda: results.append(install_prompt_interrupt()))
    thread.start()
    thread.join()
    assert results == [False]


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        install_prompt_interrupt(-1.0)
