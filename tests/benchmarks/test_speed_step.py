"""Tests of ``benchmarks/speed.py step``: each method's engine timed on in-memory tensors, its figures printed.

The runs (marked integration: benchmark runs) use tiny shapes; what is checked is that the printed figures mean what
they say: the shapes and counts the options asked for, a parameter count equal to the network's own, the hours of a
6000-iteration run derived from the mean printed beside it, and the DMGSA median taken over the timed iterations only.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import speed  # noqa: E402


def _iteration_times(out: str) -> list[float]:
    return [float(t) for t in re.findall(r"^iteration \d+/\d+: ([\d.]+) s$", out, flags=re.M)]


def test_step_options_per_method_and_shared_timing_options() -> None:
    args = speed.parse_step_args(["ugmcl"])
    assert (args.patch, args.batch, args.labeled, args.passes, args.features) == ([112, 112, 80], 4, 2, 8, 16)
    assert (args.iterations, args.warmup, args.device, args.threads, args.amp) == (2, 1, "cpu", None, False)
    args = speed.parse_step_args(["dfcps", "--amp", "--threads", "1"])
    assert (args.size, args.labeled, args.unlabeled, args.iterations, args.amp, args.threads) == (256, 8, 8, 1, True, 1)
    assert speed.parse_step_args(["dmgsa"]).iterations == 3
    assert speed.parse_step_args(["asenet", "--patch", "256", "256"]).patch == [256, 256]
    with pytest.raises(SystemExit):
        speed.parse_step_args(["ugmcl", "--patch", "32", "32"])  # UG-MCL's V-Net is 3D
    with pytest.raises(SystemExit):
        speed.parse_step_args(["vnet"])


@pytest.mark.integration
def test_ugmcl_step_figures(capsys) -> None:
    argv = ["step", "ugmcl", "--patch", "16", "16", "16", "--features", "2", "--passes", "2", "--batch", "3"]
    assert speed.main([*argv, "--labeled", "1", "--iterations", "2", "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    times = _iteration_times(out)
    assert len(times) == 3
    line = next(x for x in out.splitlines() if x.startswith("UG-MCL iteration"))
    assert "patch 16x16x16, batch 3 = 1 labeled + 2 unlabeled, T = 2, V-Net features 2:" in line
    assert "mean of 2 after 1 warm-up" in line and "CPU, 1 torch threads" in line
    mean = float(re.search(r": ([\d.]+) s per iteration", line).group(1))
    assert mean == pytest.approx(statistics.mean(times[1:]), abs=0.006)  # the warm-up is left out
    hours = float(re.search(r"6000 iterations \(the LA protocol\) at this speed: ([\d.]+) h", out).group(1))
    assert hours == pytest.approx(6000 * mean / 3600, abs=0.05 + 6000 * 0.005 / 3600)


@pytest.mark.integration
@pytest.mark.parametrize(("patch", "plain"), [(["32", "32", "16"], False), (["32", "32"], True)])
def test_asenet_step_figures(capsys, patch: list[str], plain: bool) -> None:
    argv = ["step", "asenet", "--patch", *patch, "--batch", "2", "--labeled", "1", "--iterations", "1"]
    assert speed.main(argv + ["--threads", "1"] + (["--plain"] if plain else [])) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("ASE-Net iteration"))
    kind = "plain" if plain else "DyBAC"
    assert f"({kind} segmenter), patch {'x'.join(patch)}, batch 2 = 1 labeled + 1 unlabeled:" in line
    mean = float(re.search(r": ([\d.]+) s per iteration", line).group(1))
    assert mean == pytest.approx(_iteration_times(out)[-1], abs=0.006)
    hours = float(re.search(r"6000 iterations at this speed: ([\d.]+) h", out).group(1))
    assert hours == pytest.approx(6000 * mean / 3600, abs=0.05 + 6000 * 0.005 / 3600)


@pytest.mark.integration
def test_dfcps_step_prints_the_parameters_of_one_network(capsys) -> None:
    from common.networks import DeepLabV3Plus

    argv = ["step", "dfcps", "--size", "32", "--labeled", "1", "--unlabeled", "1", "--iterations", "1"]
    assert speed.main(argv + ["--warmup", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    count = sum(p.numel() for p in DeepLabV3Plus().parameters())
    assert f"2 classes): {count:,} parameters per network" in out
    assert "DFCPS iteration, 32x32, 1 labeled + 1 unlabeled images, two networks x (weak + strong) passes:" in out
    assert "mean of 1 after 0 warm-up" in out and len(_iteration_times(out)) == 1


@pytest.mark.integration
def test_dmgsa_step_uses_the_bundle_configs_and_reports_the_median(capsys) -> None:
    from monai.bundle import ConfigParser

    assert speed.main(["step", "dmgsa", "--quick", "--iterations", "3", "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    configs = ROOT / "bundles" / "dmgsa" / "configs"
    config = ConfigParser()
    config.read_config([str(configs / "train.json"), str(configs / "quick.json")])
    size, batch = config["patch_size"], config["batch_size"]
    millions = sum(p.numel() for p in config.get_parsed_content("network_def").parameters()) / 1e6
    line = next(x for x in out.splitlines() if x.startswith("DMGSA step"))
    assert f"(train.json + quick.json; batch {batch} x {'x'.join(map(str, size))}; network {millions:.2f} M" in line
    listed = [float(t) for t in re.search(r"over 3 \(([^)]*)\)", line).group(1).split(", ")]
    assert listed == pytest.approx(_iteration_times(out)[1:], abs=0.006)  # the warm-up is not among them
    assert f"median {statistics.median(listed):.2f} s per iteration" in line


def test_bundle_and_plain_workers_run_one_epoch_from_scratch_in_their_own_folder(tmp_path) -> None:
    args = speed.parse_args(["--iterations", "4", "--warmup", "2", "--output", str(tmp_path / "out")])
    args.work_dir = tmp_path / "work"
    overrides = speed._overrides(args, "ugmcl")
    assert overrides == {
        "bundle_root": str(ROOT / "bundles" / "ugmcl"),
        "ckpt_dir": str(tmp_path / "work" / "models"),
        "output_dir": str(tmp_path / "work" / "eval"),
        "phantom_dir": str(tmp_path / "out" / "speed" / "data" / "ugmcl_quick"),
        "resume": False,
        "device": "$torch.device('cpu')",
        "amp": False,
        "epochs": 1,
        "max_iterations": 6,  # warm-up + timed, in the bundles that count iterations
        "epoch_length": 6,
        "val_interval": 10**6,
        "num_workers": 0,
    }


def test_batch_shapes_find_every_tensor_of_a_batch_in_order() -> None:
    import torch

    batch = {"label": torch.zeros(2, 1, 4), "image": [torch.zeros(2, 3, 4), torch.zeros(1, 3, 4)], "name": "a"}
    assert speed.batch_shapes(batch) == ((2, 3, 4), (1, 3, 4), (2, 1, 4))  # keys sorted: image before label


def test_timed_intervals_keep_in_epoch_gaps_of_full_batches_after_the_warm_up() -> None:
    full, partial = ((2, 1, 8),), ((1, 1, 8),)
    # wall s, CPU s, epoch, shapes: an epoch of 3 full batches and a partial one, then a second epoch
    records = [
        (1.0, 0.5, 1, full),
        (2.0, 1.0, 1, full),
        (3.5, 1.75, 1, full),  # i = 2: kept with warmup 2 (gap 1.5 s)
        (6.5, 3.25, 1, partial),  # partial batch: a first call of new shapes, not timed
        (9.0, 4.5, 2, full),  # the gap crosses the epoch's end (checkpoint, curves): not timed
        (10.25, 5.0, 2, full),  # kept (gap 1.25 s)
        (11.25, 5.5, 2, full),  # kept (gap 1.0 s)
    ]
    wall, cpu = speed.timed_intervals(records, warmup=2, iterations=6)
    assert wall == [1.5, 1.25, 1.0] and cpu == [0.75, 0.5, 0.5]
    assert speed.timed_intervals(records, warmup=2, iterations=2)[0] == [1.5, 1.25]  # the first that qualify
    # the old rule (every gap after the warm-up) would have timed 3.0 s (partial) and 2.5 s (epoch end) too
    assert speed.timed_intervals(records, warmup=1, iterations=9)[0] == [1.0, 1.5, 1.25, 1.0]
    assert speed.timed_intervals([], warmup=2, iterations=6) == ([], [])
    # with the moment the bundle went on after each paired plain step: the next gap starts there, not at the end
    paired = [(*r, r[0] + 0.25, r[1] + 0.125) for r in records]
    wall, cpu = speed.timed_intervals(paired, warmup=2, iterations=6)
    assert wall == [1.25, 1.0, 0.75] and cpu == [0.625, 0.375, 0.375]


def test_repeats_pool_every_timed_iteration_and_keep_the_largest_memory() -> None:
    first = {"trainer": "T", "bundle_steps": [1.0, 3.0], "bundle_cpu_steps": [0.5, 0.7], "bundle_fetch_steps": [0.1]}
    second = {"trainer": "T", "bundle_steps": [2.0, 10.0, 9.0], "bundle_cpu_steps": [0.6, 0.9, 0.95]}
    first["peak_rss_mb"], second["peak_rss_mb"] = 900.0, 1200.0
    second["bundle_fetch_steps"] = [0.3, 0.2]
    first["bundle_fetch_cpu_steps"], second["bundle_fetch_cpu_steps"] = [0.05], [0.02, 0.04]
    pooled = speed.pool([first, second], "bundle")
    # medians of the concatenated lists, not of the per-repeat medians (2.0 and 9.0 would give 5.5; 0.6 and 0.9, 0.75)
    assert pooled["bundle_s_per_it"] == 3.0 and pooled["bundle_cpu_s_per_it"] == 0.7
    assert pooled["bundle_fetch_s_per_it"] == 0.2 and pooled["bundle_steps"] == [1.0, 3.0, 2.0, 10.0, 9.0]
    assert pooled["bundle_fetch_cpu_s_per_it"] == 0.04
    assert pooled["peak_rss_mb"] == 1200.0 and pooled["bundle_repeats"] == 2 and pooled["trainer"] == "T"
    assert "plain_steps" not in pooled  # results without the paired plain steps: nothing made up
    first.update(plain_steps=[4.0], plain_cpu_steps=[3.0])
    second.update(plain_steps=[1.0, 2.0], plain_cpu_steps=[0.1, 0.2])
    pooled = speed.pool([first, second], "bundle")  # the paired plain steps come with the bundle's results
    assert pooled["plain_s_per_it"] == 2.0 and pooled["plain_cpu_s_per_it"] == 0.2
    plain = speed.pool([{"plain_process_steps": [1.0], "plain_process_cpu_steps": [2.0]}], "plain")
    assert plain["plain_process_s_per_it"] == 1.0 and plain["plain_process_cpu_s_per_it"] == 2.0
    assert plain["plain_repeats"] == 1


def test_repeats_alternate_the_two_sides_in_abba_order(monkeypatch, tmp_path) -> None:
    calls = []

    def fake(args, bundle, mode, timeout=None):
        calls.append(mode)
        if mode == "plain":  # the plain process's own loop
            return {"plain_process_steps": [1.3], "plain_process_cpu_steps": [1.3]}
        return {  # the bundle's process: its iterations, its batch fetch and the paired plain steps
            "bundle_steps": [1.1],
            "bundle_cpu_steps": [1.1],
            "bundle_fetch_steps": [0.1],
            "bundle_fetch_cpu_steps": [0.1],
            "plain_steps": [1.0],
            "plain_cpu_steps": [1.0],
            "bundle_cpu_s_per_it": 1.1,  # each process's own medians
            "plain_cpu_s_per_it": 1.0,
        }

    monkeypatch.setattr(speed, "measure", fake)
    monkeypatch.setattr(speed, "markdown", lambda results, header: header)
    speed.main(["--bundles", "ugmcl", "--repeats", "3", "--output", str(tmp_path)])
    assert calls == ["bundle", "plain", "plain", "bundle", "bundle", "plain"]
    saved = json.loads((tmp_path / "speed.json").read_text())
    row = saved["results"][0]
    assert row["cpu_overhead_per_repeat"] == pytest.approx([0.1, 0.1, 0.1])  # against the paired steps, not 1.3
    assert row["cpu_overhead"] == pytest.approx(0.1) and row["plain_process_cpu_s_per_it"] == 1.3
    assert "median of 3 x 20 iterations" in saved["header"] and "alternating" in saved["header"]


def test_table_row_shows_the_runner_overhead_without_the_loader_and_each_repeat() -> None:
    bundle_side = {
        "trainer": "T",
        "bundle_s_per_it": 1.0,
        "bundle_cpu_s_per_it": 0.9,
        "bundle_fetch_s_per_it": 0.2,
        "bundle_fetch_cpu_s_per_it": 0.15,
        "peak_rss_mb": 900.0,
    }
    plain_side = {
        "plain_loop": "P",
        "plain_s_per_it": 0.8,
        "plain_cpu_s_per_it": 0.6,
        "loader_s_per_batch": 0.2,
        "batch_shape": [2, 1, 8],
        "inferer": "SimpleInferer",
        "infer_case_shape": [1, 1, 8],
        "infer_s_per_case": 0.1,
        "params_m": 1.0,
        "gflops_per_sample": None,
        "peak_rss_mb": 800.0,
    }
    row = speed.combine("ugmcl", bundle_side, plain_side)
    row["cpu_overhead_per_repeat"] = [0.056, 0.062]
    cells = [c.strip() for c in speed.markdown([row], "header").splitlines()[-1].split("|")]
    # CPU overhead 0.9 / 0.6 - 1 = +50 % (each repeat listed), without the loader (0.9 - 0.15) / 0.6 - 1 = +25 %
    assert cells[10:12] == ["+50.0% (+5.6, +6.2)", "+25.0%"]
    # the paired plain loop of the bundle's process, with its own loading: it replaces the plain process's figures
    paired = dict(bundle_side, plain_loop="Q", plain_cpu_s_per_it=0.75, plain_fetch_cpu_s_per_it=0.15)
    paired.update(plain_s_per_it=0.8, plain_steps=[0.8], plain_cpu_steps=[0.75])
    row = speed.combine("ugmcl", paired, dict(plain_side, plain_cpu_s_per_it=9.0, plain_loop="P"))
    # 0.9 / 0.75 - 1 = +20 %; without both loops' loading (0.9 - 0.15) / (0.75 - 0.15) - 1 = +25 %
    assert row["plain_loop"] == "Q" and row["cpu_overhead"] == pytest.approx(0.2)
    assert row["cpu_overhead_without_loader"] == pytest.approx(0.25)


def test_plain_loop_of_a_mean_teacher_trainer_updates_the_teacher_as_the_handler_does() -> None:
    """The plain loop runs the step, then EMATeacher's update (momentum 1 - min(1 - 1/(t + 1), 0.99)): after the
    first step the teacher is the student, after the second it is their mean (alpha 0.5); without the handler it
    stays untouched, as the wrong version (EMA left out of the plain loop) would leave it."""
    import torch
    from ignite.engine import Engine

    from common.handlers import EMATeacher, teacher_copy

    student = torch.nn.Linear(1, 1, bias=False)
    teacher = teacher_copy(student)
    with torch.no_grad():
        student.weight.fill_(0.0)
        teacher.weight.fill_(10.0)

    def iteration(engine, batch):  # the "step": the student's weight grows by 1
        with torch.no_grad():
            student.weight.add_(1.0)

    class Trainer(Engine):  # a method trainer: its step is _iteration, as MONAI's engines have it
        def __init__(self) -> None:
            super().__init__(iteration)
            self._iteration = iteration

    trainer = Trainer()
    ema = EMATeacher(student, alpha=0.99, teacher=teacher)
    handlers = [object(), ema]
    assert speed.teacher_updates(handlers) == [ema]
    step = speed._plain_method(trainer, {"image": None}, speed.teacher_updates(handlers))
    step()  # t = 0: momentum 1, the teacher becomes the student (1)
    assert teacher.weight.item() == pytest.approx(1.0)
    step()  # t = 1: alpha 0.5: 0.5 * 1 + 0.5 * 2
    assert teacher.weight.item() == pytest.approx(1.5)
    speed._plain_method(Trainer(), {"image": None}, [])()  # no EMA handler: the teacher stays as it was
    assert (student.weight.item(), teacher.weight.item()) == pytest.approx((3.0, 1.5))


def test_bundle_worker_pairs_one_plain_step_after_each_iteration_outside_the_timed_gaps(monkeypatch, tmp_path) -> None:
    """On a fake clock: each bundle iteration takes 1 s, each plain step 3 s; the bundle's gaps start after the paired
    plain step (1 s each, not 4 s: the wrong version counts the plain step as the bundle's), the plain steps are
    timed alone, and the run stops once the iterations asked for are timed."""
    import torch
    from ignite.engine import Engine

    clock = [0.0]
    monkeypatch.setattr(speed.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(speed.time, "process_time", lambda: clock[0])

    class Trainer(Engine):
        def _iteration(self, engine, batch):  # the method's step, as the plain loop calls it
            clock[0] += 3.0

    trainer = Trainer(lambda engine, batch: clock.__setitem__(0, clock[0] + 1.0))
    trainer.state.epoch_length = None

    class Parser:
        def get_parsed_content(self, key):
            return trainer

        def get(self, key, default=None):
            return default

    class Workflow:
        parser = Parser()

        def run(self):
            trainer.run([{"image": torch.zeros(2, 1, 4)}] * 10, max_epochs=1)

        def finalize(self):
            pass

    monkeypatch.setattr(speed, "_workflow", lambda args, bundle: Workflow())
    args = speed.parse_args(["--iterations", "3", "--warmup", "1", "--output", str(tmp_path)])
    result = speed.worker_bundle(args, "fake")
    assert result["bundle_cpu_steps"] == [1.0, 1.0, 1.0] and result["plain_cpu_steps"] == [3.0, 3.0, 3.0]
    assert result["plain_fetch_cpu_steps"] == [0.0, 0.0, 0.0]  # the plain loop's own loading, timed apart
    assert result["plain_loop"] == "Trainer._iteration" and result["iterations"] == 3
    assert trainer.state.iteration == 4  # warm-up + timed, of the 10 the data would give
