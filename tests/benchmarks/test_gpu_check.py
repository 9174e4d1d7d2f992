"""Tests of benchmarks/gpu_check.py: budget, process-group kill, recipe counts and projections, the GPU-mode options,
the report, and one CPU-mode run of the real steps at quick shapes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


def _train_json(bundle: str) -> dict:
    return json.loads((ROOT / "bundles" / bundle / "configs" / "train.json").read_text())


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _check(tmp_path: Path, *argv: str) -> gpu_check.Check:
    args = gpu_check.parse_args(["--output", str(tmp_path / "out"), "--work_dir", str(tmp_path / "work"), *argv])
    return gpu_check.Check(args, argv)


def test_budget_counts_down_and_keeps_the_reserve() -> None:
    now = [100.0]
    budget = gpu_check.Budget(60.0, clock=lambda: now[0])
    assert budget.left() == 60.0 - gpu_check.RESERVE_S
    now[0] += 20.0
    assert budget.elapsed() == 20.0 and budget.left() == 40.0 - gpu_check.RESERVE_S
    assert budget.fits(30.0) and not budget.fits(40.0)
    now[0] += 100.0
    assert budget.left() == 0.0 and budget.fits(0.0)


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (None when it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_run_command_kills_the_whole_process_group_at_the_timeout(tmp_path: Path) -> None:
    """A grandchild (torchrun's worker, a loader worker) dies with the child: killing the child alone leaves it."""
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    start = time.perf_counter()
    ran = gpu_check.run_command([sys.executable, "-c", script], tmp_path / "log.txt", timeout=3.0)
    assert ran["timed_out"] and ran["returncode"] is None
    assert time.perf_counter() - start < 30
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # SIGKILL is delivered asynchronously
        if _state(grandchild) in (None, "Z"):
            break
        time.sleep(0.1)
    assert _state(grandchild) in (None, "Z"), "the grandchild outlived the timeout"


def test_run_command_reports_exit_code_and_output(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    ran = gpu_check.run_command([sys.executable, "-c", "print('hello'); raise SystemExit(3)"], log, timeout=60)
    assert ran == {**ran, "returncode": 3, "timed_out": False}
    assert "hello" in log.read_text() and ran["wall_s"] > 0


def test_recipe_counts_apply_train_json_to_the_paper_data_set() -> None:
    """Counts by hand from train.json's literal values: split round-half-up, the loader's length rounded up."""
    config = _train_json("cmunext")
    n = gpu_check.PAPER_DATA["cmunext"]["cases"]
    test, val = _round_half_up(config["test_fraction"] * n), _round_half_up(config["val_fraction"] * n)
    training = n - test - val
    per_epoch = math.ceil(training / config["batch_size"])  # the last, smaller batch is an iteration too
    counts = gpu_check.recipe_counts("cmunext")
    assert (counts["training"], counts["validation"]) == (training, val)
    assert counts["iterations_per_epoch"] == per_epoch and counts["iterations"] == config["epochs"] * per_epoch
    assert counts["validations"] == config["epochs"] // config["val_interval"]

    # an odd pool where floor and ceil differ: 41 cases
    counts = gpu_check.recipe_counts("cmunext", cases=41, official_test=0)
    test, val = _round_half_up(config["test_fraction"] * 41), _round_half_up(config["val_fraction"] * 41)
    assert counts["iterations_per_epoch"] == math.ceil((41 - test - val) / config["batch_size"])


def test_recipe_counts_of_iteration_counting_and_semi_supervised_bundles() -> None:
    ugmcl = _train_json("ugmcl")
    counts = gpu_check.recipe_counts("ugmcl")
    assert counts["iterations"] == ugmcl["max_iterations"] == 6000  # the LA protocol: 6000 iterations
    assert counts["epochs"] == math.ceil(ugmcl["max_iterations"] / ugmcl["epoch_length"])
    # the 20 official test volumes are held out before the validation fraction is drawn from the other 80
    assert counts["validation"] == _round_half_up(ugmcl["val_fraction"] * 80)
    assert counts["training"] == ugmcl["labeled_count"] and counts["cases"] == 100

    dfcps = _train_json("dfcps")
    n = gpu_check.PAPER_DATA["dfcps"]["cases"]
    training = n - _round_half_up(dfcps["test_fraction"] * n) - _round_half_up(dfcps["val_fraction"] * n)
    labeled = _round_half_up(dfcps["labeled_fraction"] * training)
    per_epoch = max(labeled, training - labeled) // dfcps["labeled_batch_size"]  # the official niters_per_epoch
    counts = gpu_check.recipe_counts("dfcps")
    assert (counts["training"], counts["unlabeled"]) == (labeled, training - labeled)
    assert counts["iterations"] == dfcps["epochs"] * per_epoch


def test_projected_seconds_add_every_validation_case() -> None:
    counts = {"iterations": 6000, "validations": 30, "validation": 8}
    projected = gpu_check.projected_seconds(counts, s_per_iteration=0.5, s_per_case=2.0)
    assert projected == {"train_s": 3000.0, "validation_s": 480.0, "total_s": 3480.0}


def test_speed_rows_keep_each_sides_memory_and_overheads() -> None:
    """speed.combine, which gpu_check and speed.py's own table share."""
    import speed

    bundle_side = {"bundle_s_per_it": 0.5, "bundle_cpu_s_per_it": 0.9, "peak_rss_mb": 3000.0, "peak_cuda_mb": 900.0}
    plain_side = {"plain_s_per_it": 0.4, "plain_cpu_s_per_it": 0.6, "peak_rss_mb": 2000.0, "peak_cuda_mb": 800.0}
    row = speed.combine("ugmcl", bundle_side, plain_side)
    assert row["bundle_memory"] == {"peak_rss_mb": 3000.0, "peak_cuda_mb": 900.0}
    assert row["plain_memory"] == {"peak_rss_mb": 2000.0, "peak_cuda_mb": 800.0}
    assert row["overhead"] == pytest.approx(0.25) and row["cpu_overhead"] == pytest.approx(0.5)
    assert "cpu_overhead_without_loader" not in row  # no fetch measured, nothing subtracted
    bundle_side["bundle_fetch_cpu_s_per_it"] = 0.15  # the runner's own CPU: 0.9 - 0.15 = 0.75 s against 0.6
    assert speed.combine("ugmcl", bundle_side, plain_side)["cpu_overhead_without_loader"] == pytest.approx(0.25)


def test_cuda_mode_runs_the_paper_shapes_with_the_recipe_loader(tmp_path: Path) -> None:
    """The options the GPU run will use, checked here since no GPU is at hand (nothing touches CUDA)."""
    check = _check(tmp_path, "--device", "cuda", "--iterations", "8")
    _, args = check._speed_args("on", True, "ugmcl")
    assert (args.schedule, args.amp, args.device, args.channels_last) == ("paper", "on", "cuda", True)
    overrides = dict(item.split("=", 1) for item in args.override)
    assert overrides["phantom#num_cases"] == "20" and overrides["labeled_count"] == "8"
    assert overrides["num_workers"] == json.dumps(_train_json("ugmcl")["num_workers"])  # the recipe's own value
    assert overrides["train#trainer#epoch_length"] == str(args.warmup + args.iterations)

    train = check._train_overrides("cmunext", "train_2d", ["train"], 6, 50, 2)
    assert train["amp"] is True and train["device"] == "$torch.device('cuda')"
    assert train["train#trainer#epoch_length"] == 50 and train["epochs"] == 6 and train["val_interval"] == 2
    # the bundle command line refuses keys the configs do not define
    assert "max_iterations" not in train and "epoch_length" not in train
    assert _check(tmp_path, "--device", "cuda")._train_overrides("ugmcl", "t", ["train"], 6, 50, 2)[
        "max_iterations"
    ] == (300)


def test_a_step_over_the_budget_is_killed_and_the_results_are_still_written(tmp_path: Path) -> None:
    check = _check(tmp_path, "--device", "cpu", "--budget_s", str(gpu_check.RESERVE_S + 2))
    check.estimates["x"] = 1.0  # as if an earlier speed step of bundle x had taken 1 s

    def body(left: float) -> dict:
        ran = gpu_check.run_command([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "l", left)
        if ran["timed_out"]:
            raise subprocess.TimeoutExpired("sleep", left)
        return {}

    record = check.step("slow", "speed", body, bundle="x")
    assert record["status"] == "timed out" and record["seconds"] < 30
    saved = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert saved["steps"][-1]["status"] == "timed out" and "budget" in saved["steps"][-1]["reason"]
    assert "| slow | timed out |" in (tmp_path / "out" / "gpu_check.md").read_text()
    # nothing is left: the next step does not fit and says why
    record = check.step("next", "speed", body, bundle="x")
    assert record["status"] == "skipped" and record["reason"].startswith("budget: 0 s left")


def _gpu_results() -> dict:
    speed_row = {
        "bundle": "ugmcl",
        "trainer": "UGMCLTrainer",
        "plain_loop": "UGMCLTrainer._iteration",
        "batch_shape": [4, 1, 112, 112, 80],
        "bundle_s_per_it": 0.5,
        "plain_s_per_it": 0.4,
        "overhead": 0.25,
        "bundle_cpu_s_per_it": 0.5,
        "plain_cpu_s_per_it": 0.4,
        "cpu_overhead": 0.25,
        "bundle_fetch_s_per_it": 0.01,
        "loader_s_per_batch": 0.02,
        "infer_s_per_case": 2.0,
        "inferer": "ProbabilitySlidingWindowInferer roi [112, 112, 80]",
        "infer_case_shape": [1, 1, 128, 128, 88],
        "params_m": 9.45,
        "gflops_per_sample": 80.2,
        "peak_cuda_mb": 11000.0,
        "bundle_memory": {"peak_rss_mb": 3000.0, "peak_cuda_mb": 12345.0},
        "plain_memory": {"peak_rss_mb": 2900.0, "peak_cuda_mb": 11000.0},
        "options": "python benchmarks/speed.py --schedule paper --amp on",
    }
    counts = {"data_set": "LA 2018", "cases": 100, "training": 16, "unlabeled": 56, "validation": 8, "epochs": 30}
    counts.update(iterations_per_epoch=200, iterations=6000, validations=30)
    projection = {
        "bundle": "ugmcl",
        **counts,
        "from": "speed_amp_on",
        "s_per_it": {"bundle": 0.5, "plain": 0.4},
        "s_per_case": 2.0,
        "bundle_projected": gpu_check.projected_seconds(counts, 0.5, 2.0),
        "plain_projected": gpu_check.projected_seconds(counts, 0.4, 2.0),
    }
    env = {"gpu": "NVIDIA H200", "gpu_memory_gb": 150.0, "driver": "580.159.04", "torch_cuda": "13.0"}
    env.update(torch="2.11.0", monai="1.6.1", ignite="0.5.5", python="3.12.3")
    train = {
        "bundle": "ugmcl",
        "configs": ["train"],
        "iterations": 300,
        "batch_shape": [4, 1, 112, 112, 80],
        "s_per_iteration": 0.4,
        "run_wall_s": 120.0,
        "run_cpu_s": 150.0,
        "loss_first_tenth": 0.9,
        "loss_last_tenth": 0.3,
        "loss_fell": True,
        "validations": [{"epoch": 2, "val_mean_dice": 0.5}],
        "validation_devices": ["cuda:0"],
        "trainer_amp": True,
        "evaluator_amp": True,
        "peak_cuda_mb": 20000.0,
    }
    steps = [
        {"step": "environment", "status": "done", "seconds": 2.0, "cpu_seconds": 1.0, "load": "1/1/1", **env},
        {"step": "speed_amp_on/ugmcl", "status": "done", "seconds": 30.0, "load": "1/1/1", "row": speed_row},
        {"step": "train_3d", "status": "done", "seconds": 130.0, "load": "1/1/1", **train},
        {"step": "torchrun", "status": "failed", "seconds": 3.0, "load": "1/1/1", "reason": "line one\nline | two"},
        {"step": "speed_amp_off/ugmcl", "status": "skipped", "load": "1/1/1", "reason": "budget: 3 s left"},
        {"step": "projection", "status": "done", "seconds": 1.0, "load": "1/1/1", "rows": [projection]},
    ]
    return {
        "command": "python benchmarks/gpu_check.py",
        "started": "now",
        "budget_s": 420,
        "elapsed_s": 170,
        "steps": steps,
    }


def test_report_of_a_gpu_run() -> None:
    text = gpu_check.markdown(_gpu_results())
    assert "NVIDIA H200 (150 GB), driver 580.159.04, CUDA 13.0" in text
    assert "peak CUDA MB bundle / plain" in text and "12345 / 11000" in text  # speed.py's table, CUDA memory
    # 6000 x 0.5 s + 30 x 8 x 2 s = 3480 s = 58 min; the plain loop 6000 x 0.4 + 480 = 2880 s = 48 min
    assert "| 58.0 min (validation 8.0 min) | 48.0 min |" in text
    assert gpu_check._hours(7200.0) == "2.00 h"
    assert "| 6000 (30 x 200) | 30 x 8 | speed_amp_on (0.500 / 0.400 s/it, 2.000 s/case) |" in text
    assert "| 0.400 | 120.0 / 150.0 | 0.9000 -> 0.3000 | yes |" in text and "| cuda:0 | True / True | 20000 |" in text
    # one table row per step, whatever the reason holds
    assert "| torchrun | failed | 3.0 | - | 1/1/1 | line one line / two |" in text
    assert "| speed_amp_off/ugmcl | skipped | - | - | 1/1/1 | budget: 3 s left |" in text


def test_zero_budget_skips_every_step_with_a_reason_and_still_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = gpu_check.main(["--device", "cpu", "--budget_s", "0", "--output", str(out), "--work_dir", str(tmp_path)])
    saved = json.loads((out / "gpu_check.json").read_text())
    steps = {step["step"]: step for step in saved["steps"]}
    assert code == 0 and steps["environment"]["status"] == "done"
    bundles = gpu_check.bundles_with("quick")
    assert {f"speed_amp_off/{b}" for b in bundles} <= set(steps)
    for name, step in steps.items():
        if name not in ("environment", "projection"):
            assert step["status"] == "skipped" and step["reason"], name
            assert step["reason"].startswith(("budget: 0 s left", "AMP needs CUDA")), step
    rows = steps["projection"]["rows"]
    assert [row["bundle"] for row in rows] == bundles and all(row["iterations"] > 0 for row in rows)
    assert all("no speed figure" in row["reason"] for row in rows)
    written = (out / "gpu_check.md").read_text()
    assert "### Projected wall time of the paper recipes" in written
    # the report is remade from the JSON alone
    (out / "gpu_check.md").unlink()
    assert gpu_check.main(["--report_only", "--output", str(out)]) == 0
    assert (out / "gpu_check.md").read_text() == written


@pytest.mark.integration
def test_cpu_mode_runs_the_steps_at_quick_shapes(tmp_path: Path) -> None:
    """The real steps on one 2D bundle (speed, a short training, torchrun with gloo), as the GPU run does them."""
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--bundles", "cmunext"]
    cmd += ["--steps", "speed_amp_off/cmunext", "train", "torchrun", "--budget_s", "1200"]
    cmd += ["--output", str(out), "--work_dir", str(tmp_path / "work")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = json.loads((out / "gpu_check.json").read_text())
    steps = {step["step"]: step for step in saved["steps"]}
    expected = {"environment", "speed_amp_on/cmunext", "train_2d", "train_3d", "torchrun", "speed_amp_off/cmunext"}
    assert expected | {"speed_channels_last/cmunext", "projection"} == set(steps)
    for step in steps.values():
        assert step["status"] in ("done", "skipped"), step
        assert step["status"] == "done" or step["reason"]
    assert steps["train_3d"]["reason"] == "no 3D bundle among --bundles cmunext"

    row = steps["speed_amp_off/cmunext"]["row"]
    for key in ("bundle_s_per_it", "plain_s_per_it", "bundle_cpu_s_per_it", "infer_s_per_case", "params_m"):
        assert row[key] > 0, key
    assert len(row["plain_steps"]) == len(row["bundle_steps"]) == 1  # the paired plain step, in the bundle's process
    assert row["plain_process_s_per_it"] > 0 and row["plain_loop"] == "hand-written PyTorch"
    train = steps["train_2d"]
    assert train["iterations"] == 2 and train["validation_devices"] == ["cpu"] and len(train["validations"]) == 2
    assert train["loss_first_tenth"] > 0 and train["run_wall_s"] > 0 and train["run_cpu_s"] > 0
    assert (out / "train_2d_curves.png").is_file()
    run = steps["torchrun"]
    assert run["backend"] == "gloo" and run["checkpoints"] and run["wall_s"] > 0
    projection = {row["bundle"]: row for row in steps["projection"]["rows"]}["cmunext"]
    assert projection["from"] == "speed_amp_off" and projection["bundle_projected"]["total_s"] > 0

    text = (out / "gpu_check.md").read_text()
    assert "### Speed, AMP off" in text and "### Short trainings through the bundle runner" in text
    assert "### torchrun with multi_gpu_train.json" in text and str(tmp_path) not in text
