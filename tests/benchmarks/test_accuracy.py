"""Tests of the accuracy benchmark's tables: a missed case counts as a failure and every table says how many there were.

The rows are built from the evaluate handlers themselves (``common.handlers.HausdorffDistanceMM`` and
``SurfaceDistanceMM`` on an empty prediction, an empty truth, and both empty), so the chain handler -> row -> table is
what is checked.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from common.handlers import HausdorffDistanceMM, SurfaceDistanceMM, image_diagonal

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import accuracy  # noqa: E402

SHAPE = (10, 10, 10)
SPACING = (1.0, 1.0, 2.0)
DIAGONAL = image_diagonal(SHAPE, SPACING)  # sqrt(100 + 100 + 400) = 24.49 mm
LISTS = ("training", "unlabeled", "validation", "test")


def mask(filled: bool) -> MetaTensor:
    """One-hot (2, 10, 10, 10): a 4-voxel cube when ``filled``, else empty."""
    foreground = torch.zeros(1, *SHAPE)
    if filled:
        foreground[0, 3:7, 3:7, 3:7] = 1
    return MetaTensor(torch.cat([1 - foreground, foreground]), affine=torch.diag(torch.tensor([*SPACING, 1.0])))


def evaluate(pairs: list[tuple[bool, bool]]) -> dict[str, float]:
    """The test metrics the evaluate config's handlers write for ``(prediction filled, truth filled)`` cases."""
    engine = Engine(lambda e, batch: batch)
    HausdorffDistanceMM(percentile=95).attach(engine, "test_hd95")
    SurfaceDistanceMM().attach(engine, "test_asd")
    engine.run([[[mask(p) for p, _ in pairs], [mask(t) for _, t in pairs]]])
    return dict(engine.state.metrics)


def row(seed: int, metrics: dict[str, float], method: str = "ugmcl") -> dict[str, object]:
    return {"bundle": "ugmcl", "method": method, "fraction": 0.2, "labeled": 4, "seed": seed, **metrics}


@pytest.mark.parametrize(
    "case, missed",
    [((False, True), 1), ((True, False), 1), ((False, False), 0)],
    ids=["empty prediction", "empty truth", "both empty"],
)
def test_handlers_to_table_for_each_empty_case(case, missed):
    metrics = evaluate([(True, True), case])
    assert metrics["test_hd95_missed"] == missed and metrics["test_asd_missed"] == missed
    expected_hd95 = (0.0 + DIAGONAL) / 2 if missed else 0.0  # the perfect case scores 0; both empty is left out
    assert metrics["test_hd95"] == pytest.approx(expected_hd95)
    table = accuracy.markdown([row(0, {"test_mean_dice": 0.5, **metrics})], "header")
    line = next(line for line in table.splitlines() if line.startswith("| 0.2 |"))
    header = next(line for line in table.splitlines() if line.startswith("| labeled fraction"))
    assert header.endswith("| test_hd95 missed cases | test_asd missed cases |")
    assert line.endswith(f"| {missed} | {missed} |")
    assert f"| {expected_hd95:.3f} ± 0.000 |" in line
    assert "image diagonal in mm" in table


def test_missed_cases_are_summed_over_seeds_and_the_mean_keeps_the_miss():
    rows = [row(0, evaluate([(True, True), (False, True)])), row(1, evaluate([(True, True), (True, True)]))]
    summary = accuracy.summarise(rows)[("ugmcl", 0.2, "ugmcl")]
    assert summary["test_hd95_missed"][:1] == (1.0,)
    assert summary["test_hd95"][0] == pytest.approx((DIAGONAL / 2 + 0.0) / 2)


def test_a_non_finite_run_is_named_not_dropped_without_a_word():
    """An old row with MONAI's inf ASD: the table says one of two runs was left out (it showed ``± 0.000``)."""
    rows = [row(0, {"test_asd": 2.0}), row(1, {"test_asd": math.inf})]
    table = accuracy.markdown(rows, "header")
    assert "| 2.000 ± 0.000 (1 of 2 runs not finite, left out) | not recorded |" in table


def test_a_column_of_nan_values_stays_in_the_table():
    table = accuracy.markdown([row(0, {"test_hd95": math.nan, "test_hd95_missed": 0})], "header")
    assert "| nan ± nan (1 of 1 runs not finite, left out) | 0 |" in table


# ------------------------------------------------------------------------------------ label-efficiency benchmark
def args_for(tmp_path: Path, *extra: str) -> object:
    return accuracy.parse_args(["--output", str(tmp_path), *extra])


def test_defaults_are_three_budgets_and_five_seeds(tmp_path):
    args = args_for(tmp_path)
    assert len(args.fractions) >= 3 and all(0 < f < 1 for f in args.fractions)
    assert len(args.seeds) >= 5 and not args.warm_start


@pytest.mark.parametrize(
    "given, expected", [(0.25, 0.25), (8.0, 8), (1.0, 1.0), (0.0625, 0.0625)], ids=["fraction", "count", "all", "1/16"]
)
def test_budget_value_count_fraction_and_all(given, expected):
    value = accuracy.budget_value(given)
    assert value == expected and type(value) is type(expected)  # 1.0 stays a float: the fraction 1, not 1 case


def test_budget_value_refuses_a_fractional_count():
    with pytest.raises(ValueError, match="whole number"):
        accuracy.budget_value(2.5)


def test_arms_of_each_bundle():
    assert [a.name for a in accuracy.arms("dfcps")] == ["dfcps", "supervised"]
    assert [a.name for a in accuracy.arms("cmunext")] == ["cmunext", "dice_bce"]
    dmgsa = [a.name for a in accuracy.arms("dmgsa")]
    assert dmgsa[0] == "dmgsa" and sorted(dmgsa[1:]) == [
        "ablation_no_adversarial",
        "ablation_no_dmr",
        "ablation_no_gmgs",
        "ablation_no_monr",
    ]
    assert [a.role for a in accuracy.arms("dmgsa")] == ["method"] + ["comparator"] * 4


def test_plan_pairs_the_arms_of_each_budget_and_seed_and_adds_the_upper_bound(tmp_path):
    runs = accuracy.plan(
        args_for(tmp_path, "--bundles", "dfcps", "--fractions", "0.0625", "0.125", "--seeds", "0", "1")
    )
    # 2 budgets x 2 seeds x (method, baseline) + the upper bound (baseline, all labeled) x 2 seeds
    assert len(runs) == 10
    for fraction in (0.0625, 0.125):
        for seed in (0, 1):
            pair = [r for r in runs if r.fraction == fraction and r.seed == seed]
            assert sorted(r.method for r in pair) == ["dfcps", "supervised"]
            method, base = sorted(pair, key=lambda r: r.method != "dfcps")
            for key in ("seed", "labeled_fraction", "phantom_dir"):
                assert method.overrides[key] == base.overrides[key]
            assert base.configs == method.configs + [str(ROOT / "bundles/dfcps/configs/supervised.json")]
            assert method.folder != base.folder
    upper = [r for r in runs if r.fraction == 1.0]
    assert [r.method for r in upper] == ["supervised", "supervised"]
    assert all(
        r.overrides["labeled_fraction"] == 1.0 and isinstance(r.overrides["labeled_fraction"], float) for r in upper
    )
    assert all(r.start == "cold" and r.warm_from is None for r in runs)


def test_arms_option_keeps_only_the_arms_named(tmp_path):
    runs = accuracy.plan(args_for(tmp_path, "--bundles", "dfcps", "--arms", "supervised", "--seeds", "0"))
    assert [(r.method, r.fraction) for r in runs] == [("supervised", f) for f in (0.0625, 0.125, 0.25, 1.0)]


def test_a_fully_supervised_bundle_runs_its_arms_at_all_labels(tmp_path):
    runs = accuracy.plan(args_for(tmp_path, "--bundles", "cmunext", "--seeds", "3", "4", "--warm_start"))
    assert [(r.method, r.fraction, r.seed) for r in runs] == [
        ("cmunext", 1.0, 3),
        ("dice_bce", 1.0, 3),
        ("cmunext", 1.0, 4),
        ("dice_bce", 1.0, 4),
    ]
    assert all("labeled_fraction" not in r.overrides and "labeled_count" not in r.overrides for r in runs)
    assert runs[1].configs[-1].endswith("cmunext/configs/dice_bce.json")


def test_dataset_dir_replaces_the_phantom_and_is_named(tmp_path):
    runs = accuracy.plan(args_for(tmp_path, "--bundles", "ugmcl", "--dataset_dir", "/data/LA", "--seeds", "0"))
    assert all(r.overrides["dataset_dir"] == "/data/LA" and "phantom_dir" not in r.overrides for r in runs)
    assert {r.data for r in runs} == {"/data/LA"}
    assert all(
        r.configs[:3] == [str(ROOT / f"bundles/ugmcl/configs/{n}.json") for n in ("train", "quick", "benchmark")]
        for r in runs
    )


def test_both_arms_of_a_seed_label_the_same_cases(tmp_path):
    """The datalists the two arms build (the bundle's own datalist expression) hold the same labeled cases."""
    runs = accuracy.plan(args_for(tmp_path, "--bundles", "dfcps", "--fractions", "0.125", "0.25", "--seeds", "0", "1"))
    small = {"phantom#num_cases": 40, "phantom#size_range": [[20, 24], [20, 24]]}
    lists = {}
    for run in runs:
        datalist = accuracy.build_datalist(run, tmp_path / "lists" / run.folder.name, small)
        lists[(run.method, run.fraction, run.seed)] = {k: sorted(c["id"] for c in datalist[k]) for k in LISTS}
    for seed in (0, 1):
        upper = lists[("supervised", 1.0, seed)]
        for fraction in (0.125, 0.25):
            method, base = lists[("dfcps", fraction, seed)], lists[("supervised", fraction, seed)]
            assert method == base  # labeled, unlabeled, validation and test: the same for both arms
            assert len(method["training"]) == round(fraction * 28)  # 40 cases - 4 validation - 8 test
            assert method["test"] == upper["test"] and method["validation"] == upper["validation"]
            assert set(method["training"]) < set(upper["training"])
        assert set(lists[("dfcps", 0.125, seed)]["training"]) < set(lists[("dfcps", 0.25, seed)]["training"])
    assert lists[("dfcps", 0.125, 0)]["training"] != lists[("dfcps", 0.125, 1)]["training"]


@pytest.mark.parametrize("bundle", ["asenet", "cmunext", "dfcps", "dmgsa", "ugmcl"])
def test_validation_selects_the_checkpoint_and_the_test_split_scores_it(tmp_path, bundle):
    """Each arm's training saves ``model.pt`` on its validation key metric; its evaluation loads it and reads test."""
    from monai.bundle import ConfigParser

    for run in accuracy.plan(args_for(tmp_path, "--bundles", bundle, "--seeds", "0", "--fractions", "0.25")):
        train = ConfigParser()
        train.read_config(run.configs)
        train.update(run.overrides)
        saver = train.get("validate#best_model_saver")
        assert saver["save_key_metric"] is True and saver["key_metric_filename"] == "model.pt"
        assert train.get_parsed_content("validate#best_model_saver#save_dir") == str(run.folder / "models")
        assert "@validate#best_model_saver" in [str(h).replace("::", "#") for h in train.get("validate#handlers")]
        data = train.get("validate#dataset#data")
        assert data == "$@datalist['validation']" or (
            data.endswith("else @datalist['validation']") and train.get_parsed_content("validation_from_test") is False
        )
        evaluation = ConfigParser()
        evaluation.read_config(run.configs + [str(ROOT / f"bundles/{bundle}/configs/evaluate.json")])
        evaluation.update(run.overrides)
        assert evaluation.get_parsed_content("eval_split") == "test"
        assert "@eval_split" in evaluation.get("validate#dataset#data")
        loader = next(h for h in evaluation.get("validate#handlers") if h["_target_"] == "CheckpointLoader")
        path = loader["load_path"]
        path = evaluation.get_parsed_content("eval_checkpoint") if path == "@eval_checkpoint" else path
        path = evaluation.get_parsed_content("validate#handlers#0#load_path") if path.startswith("$") else path
        assert path == str(run.folder / "models" / "model.pt")


def test_warm_runs_start_from_the_cold_baseline_of_their_budget_and_seed(tmp_path):
    runs = accuracy.plan(
        args_for(tmp_path, "--bundles", "dfcps", "--fractions", "0.125", "--seeds", "2", "--warm_start")
    )
    warm = [r for r in runs if r.start == "warm"]
    assert sorted(r.method for r in warm) == ["dfcps", "supervised"]  # the upper bound stays cold
    cold_base = next(r for r in runs if r.start == "cold" and r.method == "supervised" and r.fraction == 0.125)
    for run in warm:
        assert run.warm_from == cold_base.folder / "models" / "model.pt"
        assert str(run.warm_from) in str(run.overrides["network"]) and run.folder != cold_base.folder
        assert run.label == f"{run.method} (warm)"
    assert {r.overrides["labeled_fraction"] for r in warm} == {0.125}


def test_warm_network_expression_loads_the_checkpoint_into_the_network(tmp_path):
    from monai.bundle import ConfigParser

    config = tmp_path / "net.json"
    config.write_text(
        '{"device": "cpu", "network_def": {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2},'
        ' "network": "$@network_def.to(@device)"}'
    )
    trained = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(trained.weight, 0.5)
    checkpoint = tmp_path / "model.pt"
    # the bundles' model.pt: Ignite's Checkpoint with one object saves its state dict unwrapped; {"model": ...} too
    for saved in (trained.state_dict(), {"model": trained.state_dict()}):
        torch.save(saved, checkpoint)
        parser = ConfigParser()
        parser.read_config(str(config))
        parser["network"] = accuracy.warm_network_expression([str(config)], checkpoint)
        net = parser.get_parsed_content("network")
        assert torch.equal(net.weight, trained.weight) and torch.equal(net.bias, trained.bias)
    torch.save({"model": {"other.weight": torch.zeros(2, 3)}}, checkpoint)  # nothing matches: refused, not cold
    parser = ConfigParser()
    parser.read_config(str(config))
    parser["network"] = accuracy.warm_network_expression([str(config)], checkpoint)
    with pytest.raises(RuntimeError, match="Failed to evaluate") as raised:
        parser.get_parsed_content("network")
    assert "no tensor name and shape matches" in str(raised.value.__cause__ or raised.value.__context__)


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    """Differences 0.1, 0.2, 0.3, 0.0, 0.15: mean 0.15, sd sqrt(0.05 / 4) = 0.111803, se 0.05, t(0.975, 4) =
    2.776445, half-width 0.138822. The baselines vary a lot between seeds, so an unpaired (Welch) interval of the two
    arms would include 0 and a z-interval (1.96) would be narrower: both are wrong here."""
    baseline = {0: 0.2, 1: 0.8, 2: 0.5, 3: 0.1, 4: 0.9}
    diffs = {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.0, 4: 0.15}
    method = {s: baseline[s] + diffs[s] for s in baseline}
    method[9] = 0.99  # a seed without a baseline pairs with nothing
    mean, low, high, n = accuracy.paired_difference(method, baseline)
    assert n == 5
    assert mean == pytest.approx(0.15)
    assert low == pytest.approx(0.15 - 0.138822, abs=1e-6) and high == pytest.approx(0.15 + 0.138822, abs=1e-6)
    assert accuracy.paired_difference({0: 0.5}, {0: 0.25})[:1] == (0.25,)
    assert all(math.isnan(v) for v in accuracy.paired_difference({0: 0.5}, {0: 0.25})[1:3])
    assert accuracy.paired_difference({0: 0.5}, {1: 0.25})[3] == 0


def fake_runner(calls: list, dice: float = 0.7):
    """Stands in for ``run_logged``: writes the files a bundle run leaves (datalist, metrics), counts the calls."""

    def run(cmd, log, threads=None, timeout=None):
        calls.append(cmd)
        folder = log.parent
        (folder / "eval" / "evaluate").mkdir(parents=True, exist_ok=True)
        (folder / "eval" / "datalist.json").write_text('{"training": [{"id": "a"}, {"id": "b"}]}')
        (folder / "eval" / "evaluate" / "metrics.csv").write_text(f"test_mean_dice\t{dice}\n")
        return 1.5

    return run


def test_a_finished_run_is_reused_and_a_changed_one_reruns(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(accuracy, "run_logged", fake_runner(calls))
    run = accuracy.plan(args_for(tmp_path, "--bundles", "dfcps", "--fractions", "0.125", "--seeds", "0"))[0]
    row = accuracy.execute(run, 1)
    assert len(calls) == 2 and row["test_mean_dice"] == 0.7 and row["labeled"] == 2 and row["start"] == "cold"
    assert accuracy._finished(run)
    assert accuracy.execute(run, 1) == row and len(calls) == 2  # reused: nothing run again
    run.overrides["learning_rate"] = 0.5  # another command: the saved row is not this run's
    assert not accuracy._finished(run)
    accuracy.execute(run, 1)
    assert len(calls) == 4
    (run.folder / "row.json").unlink()  # metrics without a row (killed while writing it): done again
    accuracy.execute(run, 1)
    assert len(calls) == 6


def test_a_warm_run_waits_for_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(accuracy, "run_logged", fake_runner([]))
    runs = accuracy.plan(
        args_for(tmp_path, "--bundles", "dfcps", "--fractions", "0.125", "--seeds", "0", "--warm_start")
    )
    warm = next(r for r in runs if r.start == "warm")
    with pytest.raises(FileNotFoundError, match="cold baseline run has not finished"):
        accuracy.execute(warm, 1)


def test_estimate_uses_the_finished_runs_of_the_same_arm(tmp_path):
    runs = accuracy.plan(args_for(tmp_path, "--bundles", "dfcps", "--fractions", "0.125", "--seeds", "0", "1"))
    rows = [
        {"bundle": "dfcps", "method": "dfcps", "train_s": 100.0, "eval_s": 20.0},
        {"bundle": "dfcps", "method": "dfcps", "train_s": 140.0, "eval_s": 20.0},
        {"bundle": "dfcps", "method": "supervised", "train_s": 50.0, "eval_s": 10.0},
    ]
    # 2 method runs at 140 s, 2 baseline + 2 upper-bound runs at 60 s: 520 s, two at a time
    assert accuracy.estimate_seconds(runs, rows, jobs=2) == (260.0, 0)
    assert accuracy.estimate_seconds(runs, [], jobs=1) == (0.0, 6)


def efficiency_rows() -> list[dict[str, object]]:
    rows = []
    baseline = [0.2, 0.8, 0.5, 0.1, 0.9]
    diffs = [0.1, 0.2, 0.3, 0.0, 0.15]
    for seed in range(5):
        common = {"bundle": "dfcps", "seed": seed, "data": "phantom", "train_s": 1.0, "eval_s": 1.0}
        rows.append(
            {
                **common,
                "method": "supervised",
                "start": "cold",
                "fraction": 0.125,
                "labeled": 9,
                "test_mean_dice": baseline[seed],
            }
        )
        rows.append(
            {
                **common,
                "method": "dfcps",
                "start": "cold",
                "fraction": 0.125,
                "labeled": 9,
                "test_mean_dice": baseline[seed] + diffs[seed],
            }
        )
        rows.append(
            {**common, "method": "supervised", "start": "warm", "fraction": 0.125, "labeled": 9, "test_mean_dice": 0.5}
        )
        rows.append(
            {
                **common,
                "method": "dfcps",
                "start": "warm",
                "fraction": 0.125,
                "labeled": 9,
                "test_mean_dice": 0.5 - 0.01 * seed,
            }
        )
        rows.append(
            {**common, "method": "supervised", "start": "cold", "fraction": 1.0, "labeled": 70, "test_mean_dice": 0.9}
        )
    return rows


def test_label_efficiency_table_keeps_cold_and_warm_apart_with_the_upper_bound():
    table = accuracy.markdown(efficiency_rows(), "header")
    cold = next(line for line in table.splitlines() if line.startswith("| 0.125 | 9 | cold | supervised |"))
    assert "| 0.650 ± 0.427 | 0.500 ± 0.354 | **+0.150 [+0.011, +0.289]** | 5 | 0.900 ± 0.000 |" in cold
    warm = next(line for line in table.splitlines() if line.startswith("| 0.125 | 9 | warm | supervised |"))
    # warm differences -0.00, -0.01, ..., -0.04: mean -0.02, sd 0.0158114, t 2.776445 -> half-width 0.019633
    assert "**-0.020 [-0.040, -0.000]** | 5 |" in warm
    assert "| 0.125 | 9 | dfcps (warm) | 5 |" in table and "| 1 | 70 | supervised | 5 |" in table
    assert "data: phantom" in table


def test_report_writes_one_plot_per_bundle_and_the_table(tmp_path):
    rows = efficiency_rows() + [
        {
            "bundle": "cmunext",
            "method": m,
            "seed": s,
            "fraction": 1.0,
            "labeled": 70,
            "test_mean_dice": d + 0.01 * s,
            "test_iou": d - 0.1,
        }
        for s in range(3)
        for m, d in (("cmunext", 0.8), ("dice_bce", 0.75))
    ]
    accuracy.write_csv(rows, tmp_path / "accuracy.csv")
    assert accuracy.main(["--report_only", "--output", str(tmp_path)]) == 0
    for name in ("accuracy.png", "accuracy_dfcps.png", "accuracy_cmunext.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "accuracy.md").read_text()
    # cmunext: differences +0.05 in every seed, sd 0: the interval collapses onto the mean
    assert (
        "| all | 70 | cold | dice_bce | test_mean_dice | 0.810 ± 0.010 | 0.760 ± 0.010 | **+0.050 [+0.050, +0.050]**"
        in report
    )
    assert "| all | 70 | cold | dice_bce | test_iou |" in report


@pytest.mark.integration  # a python -m monai.bundle process: over a minute on a loaded 2-core machine
def test_warm_expression_survives_the_bundle_command_line(tmp_path):
    """The expression reaches the network through ``python -m monai.bundle run --network ...`` unchanged."""
    import subprocess

    config = tmp_path / "net.json"
    config.write_text(
        '{"device": "cpu", "network_def": {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2},'
        ' "network": "$@network_def.to(@device)", "run": ["$print(\'SUM\', float(@network.weight.sum().detach()))"]}'
    )
    trained = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(trained.weight, 0.5)
    torch.save(trained.state_dict(), tmp_path / "model.pt")  # as the best-model saver writes it
    expression = accuracy.warm_network_expression([str(config)], tmp_path / "model.pt")
    cmd = accuracy.monai_bundle_command(None, [str(config)], {"network": expression})
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SUM 3.0" in done.stdout  # 6 weights of 0.5


def test_dfcps_warm_start_fills_the_member_the_baseline_trained(tmp_path):
    """The baseline's checkpoint (one member) goes into network A of the method's pair; network B keeps its init."""
    from monai.bundle import ConfigParser

    runs = accuracy.plan(
        args_for(tmp_path, "--bundles", "dfcps", "--fractions", "0.125", "--seeds", "0", "--warm_start")
    )
    cold_base = next(r for r in runs if r.start == "cold" and r.method == "supervised" and r.fraction == 0.125)
    warm_method = next(r for r in runs if r.start == "warm" and r.method == "dfcps")
    parser = ConfigParser()
    parser.read_config(cold_base.configs)
    parser.update(cold_base.overrides)
    baseline = parser.get_parsed_content("network")
    assert len(baseline.networks) == 1
    Path(str(warm_method.warm_from)).parent.mkdir(parents=True)
    torch.save(baseline.state_dict(), warm_method.warm_from)  # as the baseline's best-model saver writes it
    parser = ConfigParser()
    parser.read_config(warm_method.configs)
    parser.update(warm_method.overrides)
    pair = parser.get_parsed_content("network")
    for name, value in baseline.networks[0].state_dict().items():
        assert torch.equal(pair.networks[0].state_dict()[name], value)
    weights = [n for n, v in baseline.networks[0].state_dict().items() if v.is_floating_point() and v.numel() > 1]
    assert any(not torch.equal(pair.networks[1].state_dict()[n], baseline.networks[0].state_dict()[n]) for n in weights)


def test_dfcps_calibrated_batch_overlay_gives_both_arms_four_labeled_images_a_step(tmp_path):
    """Issue 15's calibration: the calibrated phantom, 4 labeled (+ 4 unlabeled for DFCPS) images a step, 800 steps."""
    from monai.bundle import ConfigParser

    overlays = ("--overlay", "benchmark_calibrated", "--overlay", "benchmark_calibrated_batch")
    runs = accuracy.plan(args_for(tmp_path, "--bundles", "dfcps", "--fractions", "0.0625", "--seeds", "0", *overlays))
    assert {(r.method, r.fraction) for r in runs} == {("dfcps", 0.0625), ("supervised", 0.0625), ("supervised", 1.0)}
    for run in runs:
        names = [Path(c).stem for c in run.configs]
        order = [names.index(n) for n in ("benchmark", "benchmark_calibrated", "benchmark_calibrated_batch")]
        assert order == sorted(order)
        parser = ConfigParser()
        parser.read_config(run.configs)
        parser.update(run.overrides)
        assert parser.get_parsed_content("labeled_batch_size") == 4  # benchmark.json's 2
        assert parser.get_parsed_content("train#labeled_dataloader#batch_size") == 4
        assert parser.get_parsed_content("epochs") * parser.get_parsed_content("epoch_length") == 800
        assert parser.get("phantom#radius_range") == [0.15, 0.4]  # benchmark_calibrated.json's phantom is kept
        if run.method == "dfcps":
            assert parser.get_parsed_content("train#unlabeled_dataloader#batch_size") == 4  # the paper's 1:1
            assert parser.get("train#trainer#train_data_loader").replace("::", "#") == "@train#dataloader"
        else:
            loader = parser.get("train#dataloader").replace("::", "#")
            assert names[-1] == "supervised" and loader == "@train#labeled_dataloader"


def test_dmgsa_table_pairs_the_method_with_each_ablation_on_the_airway_metrics():
    names = ("test_iou", "test_dlr", "test_td", "test_dbr", "test_bd", "test_ccf")
    arms = ("dmgsa", "ablation_no_dmr", "ablation_no_gmgs")
    rows = [
        {"bundle": "dmgsa", "method": arm, "seed": seed, "fraction": 1.0, "labeled": 8}
        | {name: 0.5 + 0.1 * (arm == "dmgsa") + 0.01 * seed for name in names}
        for seed in range(3)
        for arm in arms
    ]
    table = accuracy.label_efficiency(rows, "dmgsa")
    assert {(e["comparator"], e["metric"]) for e in table} == {(a, n) for a in arms[1:] for n in names}
    assert all(e["difference"][0] == pytest.approx(0.1) and e["difference"][3] == 3 for e in table)
    assert all(e["upper"] is None for e in table)  # a fully supervised bundle has no label budget to bound
