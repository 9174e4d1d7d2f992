"""Conformance suite: every folder under ``bundles/`` must behave like a MONAI model-zoo bundle.

A bundle joins this suite by existing (``bundles/<name>/configs/metadata.json``). Each check runs on CPU on a
private copy of the bundle, through MONAI's own command line (``python -m monai.bundle ...``) exactly as a user
would, layering the bundle's ``configs/quick.json`` on ``train.json``. What every bundle must provide:

- ``configs/{train,inference,evaluate,multi_gpu_train,quick,metadata}.json``, ``configs/logging.conf``,
  ``docs/README.md``, ``LICENSE``;
- top-level config ids ``bundle_root``, ``dataset_dir`` (the embedded phantom's folder by default),
  ``datalist`` (the prepared split: ``training``/``validation``/``test`` lists of absolute file paths),
  ``ckpt_dir``, ``output_dir``, ``network_def``, ``training`` and ``run``;
- training writes ``models/model.pt`` (the best network's state dict) and interval checkpoints
  ``models/checkpoint_*=<N>.pt`` holding ``trainer`` state; inference writes one output per input under
  ``output_dir``.

The static checks (files, metadata schema, config ids) are in the default test run; every check that runs a bundle
command (training, inference, evaluation, export, kill + resume, DDP, a corrupt input) is marked ``integration``
(``python -m pytest -m integration``, the second part of ``.ci/run``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "common" / "bundle" / "schemas" / "meta_schema_20240725.json"
BUNDLES = sorted(p.name for p in (ROOT / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
REQUIRED_FILES = [
    "configs/train.json",
    "configs/inference.json",
    "configs/evaluate.json",
    "configs/multi_gpu_train.json",
    "configs/quick.json",
    "configs/metadata.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
]
TIMEOUT = 900  # seconds for one bundle command on a slow CI machine


def grouped(group: str) -> list:
    """Parametrize over bundles; tests of one (bundle, group) pair run in one xdist worker, in order."""
    return [pytest.param(b, marks=pytest.mark.xdist_group(f"{b}-{group}")) for b in BUNDLES]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each parallel worker keeps to one core
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def copy_bundle(name: str, dest: Path) -> Path:
    """Copy a bundle's source files (not its outputs) to ``dest/<name>`` and return that folder."""
    src = ROOT / "bundles" / name
    target = dest / name
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("models", "eval", "data", "runs", "__pycache__"))
    return target


def configs(bundle: Path, *names: str) -> str:
    """The ``--config_file`` value that layers several configs: a Python list literal, as MONAI's CLI takes it."""
    return repr([str(bundle / "configs" / f"{n}.json") for n in names])


def monai_bundle(bundle: Path, *args: str, check: bool = True, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle <args>`` from inside the bundle folder, as the model zoo does."""
    cmd = [sys.executable, "-m", "monai.bundle", *args]
    proc = subprocess.run(cmd, cwd=bundle, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def parse(bundle: Path, *names: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / f"{n}.json") for n in names])
    parser["bundle_root"] = str(bundle)
    return parser


def trainer_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["trainer"]


def last_checkpoint(bundle: Path, models: Path | None = None) -> Path:
    """The newest interval checkpoint in ``models`` (default: the bundle's ``models/``)."""
    models = bundle / "models" if models is None else models
    found = sorted(models.glob("checkpoint_*=*.pt"), key=lambda p: int(p.stem.rsplit("=", 1)[1]))
    assert found, f"no interval checkpoint in {models}: {list(models.iterdir())}"
    return found[-1]


def override_values(args: list[str]) -> dict[str, object]:
    """``--key value`` pairs of a bundle command line as config values (JSON where the text is JSON, else text)."""
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    values: dict[str, object] = {}
    for key, text in zip(args[::2], args[1::2]):
        try:
            values[key[2:]] = json.loads(text)
        except json.JSONDecodeError:
            values[key[2:]] = text
    return values


def phantom_cache(tmp_path_factory) -> Path:
    """The folder of the phantoms generated in this test session, one folder for all parallel workers."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "phantoms"


def seed_phantom(bundle: Path, names: tuple[str, ...], args: list[str], tmp_path_factory) -> None:
    """Write into the copy ``bundle`` the phantom that its run ``names`` + ``args`` would write first, as a copy of
    the same phantom generated once per test session.

    The phantom is deterministic (its seed and settings are its marker's content), so the copy holds the files the run
    would write; the run still reads, checks and splits them. The trained fixture's first run and the DDP run (whose
    ranks race to write it) keep writing their own.
    """
    from common.data.prepare import ensure_dataset

    entry = cached_phantom(bundle, names, args, tmp_path_factory)
    if entry is None:
        return
    cached, phantom_dir, phantom, layout = entry
    ensure_dataset(cached, layout, phantom=phantom, generate_phantom=True)  # atomic: a worker racing us is fine
    shutil.copytree(cached, phantom_dir)


def cached_phantom(bundle: Path, names: tuple[str, ...], args: list[str], tmp_path_factory) -> tuple | None:
    """``(cached folder, the copy's phantom folder, phantom, layout)`` of the run ``names`` + ``args`` of ``bundle``;
    None where the run reads another data set than its phantom."""
    from common.data import get_layout
    from common.data.prepare import _marker_content

    parser = parse(bundle, *names)
    for key, value in override_values(args).items():
        parser[key] = value
    if parser["dataset_dir"] != "@phantom_dir":
        return None
    phantom = parser.get_parsed_content("phantom")
    layout = get_layout(parser.get_parsed_content("dataset_layout"))
    key = json.dumps(_marker_content(phantom, layout), sort_keys=True)  # what tells one phantom from another
    cached = phantom_cache(tmp_path_factory) / hashlib.sha256(key.encode()).hexdigest()[:16]
    return cached, Path(parser.get_parsed_content("phantom_dir")), phantom, layout


def share_phantom(bundle: Path, names: tuple[str, ...], tmp_path_factory) -> None:
    """Offer the phantom that a run of the copy ``bundle`` wrote to the session's cache (where it is not there yet)."""
    entry = cached_phantom(bundle, names, [], tmp_path_factory)
    if entry is None or entry[0].exists() or not entry[1].is_dir():
        return
    staging = entry[0].with_name(f".{entry[0].name}.partial-{os.getpid()}")
    shutil.copytree(entry[1], staging)
    try:
        os.rename(staging, entry[0])  # atomic; another worker may have cached the same phantom meanwhile
    except OSError:
        shutil.rmtree(staging)


TRAINED: dict[str, Path] = {}
"""Bundle copies trained (quick) in this process, for every module of the suite: their xdist group is
``<bundle>-trained``, so one worker trains each bundle once."""


@pytest.fixture(scope="module")
def trained() -> dict[str, Path]:
    """Bundles trained once per worker with ``run training`` on train.json + quick.json (the user's form)."""
    return TRAINED


def get_trained(cache: dict[str, Path], name: str, tmp_path_factory) -> Path:
    if name not in cache:
        bundle = copy_bundle(name, tmp_path_factory.mktemp("trained"))
        proc = monai_bundle(bundle, "run", "training", "--config_file", configs(bundle, "train", "quick"))
        (bundle / "train.log").write_text(proc.stdout + proc.stderr)
        share_phantom(bundle, ("train", "quick"), tmp_path_factory)
        cache[name] = bundle
    return cache[name]


# ---------------------------------------------------------------------------------------------- static checks
@pytest.mark.parametrize("name", BUNDLES)
def test_bundle_files(name):
    bundle = ROOT / "bundles" / name
    missing = [f for f in REQUIRED_FILES if not (bundle / f).is_file()]
    assert not missing, f"bundle {name} lacks {missing}"
    for f in (bundle / "configs").glob("*.json"):
        json.loads(f.read_text())  # every config is valid JSON


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_schema(name, tmp_path):
    from monai.bundle import verify_metadata

    meta_file = ROOT / "bundles" / name / "configs" / "metadata.json"
    verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA))
    meta = json.loads(meta_file.read_text())
    assert meta["version"] in meta["changelog"], "the current version needs a changelog entry"
    assert len(meta["version"].split(".")) == 3
    from importlib.metadata import PackageNotFoundError, version

    for package in meta["required_packages_version"]:
        try:
            version(package)
        except PackageNotFoundError:
            pytest.fail(f"required package {package!r} of {name} is not an installed distribution")


@pytest.mark.parametrize("name", BUNDLES)
def test_config_ids(name):
    parser = parse(ROOT / "bundles" / name, "train")
    for key in ("bundle_root", "dataset_dir", "datalist", "ckpt_dir", "output_dir", "network_def", "training", "run"):
        assert key in parser, f"train.json of {name} lacks the top-level id {key!r}"
    infer = parse(ROOT / "bundles" / name, "inference")
    for key in ("network_def", "preprocessing", "postprocessing", "inferer", "device", "dataset_dir"):
        assert key in infer, f"inference.json of {name} lacks {key!r} (MONAI Label reads it)"


# ------------------------------------------------------------------------------------------- training & co.
@pytest.mark.integration
@pytest.mark.parametrize("name", grouped("trained"))
def test_quick_training_user_form(name, trained, tmp_path_factory):
    bundle = get_trained(trained, name, tmp_path_factory)
    assert (bundle / "models" / "model.pt").is_file(), "training did not save the best model"
    state = trainer_state(last_checkpoint(bundle))
    assert state["iteration"] == state["max_epochs"] * state["epoch_length"], state
    best = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    network = parse(bundle, "train", "quick").get_parsed_content("network_def")
    network.load_state_dict(best)  # model.pt is the network's plain state dict, as in the model zoo


@pytest.mark.integration
@pytest.mark.parametrize("name", grouped("trained"))
def test_train_properties(name, trained, tmp_path_factory):
    """MONAI's own property checks, on the trained copy (its phantom data exist by now)."""
    from monai.bundle import ConfigWorkflow

    bundle = get_trained(trained, name, tmp_path_factory)
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / "train.json"), str(bundle / "configs" / "quick.json")],
        workflow_type="train",
        bundle_root=str(bundle),
        logging_file=False,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    infer = ConfigWorkflow(
        config_file=str(bundle / "configs" / "inference.json"),
        workflow_type="infer",
        bundle_root=str(bundle),
        logging_file=False,
    )
    infer.initialize()
    assert infer.check_properties() == []


@pytest.mark.integration
@pytest.mark.parametrize("name", grouped("trained"))
def test_net_in_out(name, trained, tmp_path_factory, monkeypatch):
    """``python -m monai.bundle verify_net_in_out network_def ...`` from the bundle folder, called in this process:
    the function the command line runs (a process of its own would spend ~10 s of CPU importing MONAI again; the
    staged export runs the command line form with ``common`` blocked, tests/conformance/test_sharing.py)."""
    from monai.bundle import verify_net_in_out

    bundle = get_trained(trained, name, tmp_path_factory)
    monkeypatch.chdir(bundle)
    verify_net_in_out(
        net_id="network_def", meta_file="configs/metadata.json", config_file="configs/inference.json", bundle_root="."
    )


def quick_model_args(bundle: Path) -> list[str]:
    """``--image_size`` of the quick run, for inference with the model the quick run trained, where ``inference.json``
    resizes to another size (the 2D bundles: ``train.json``'s size); the model cards say to pass it. The outputs are
    resized back to each input's size either way; at ``train.json``'s size (512x512 for DFCPS's two ResNet-50 networks)
    the same code would cost minutes of CPU per run."""
    infer = parse(bundle, "inference")
    if "image_size" not in infer:
        return []
    size = parse(bundle, "train", "quick").get_parsed_content("image_size")
    if list(size) == list(infer.get_parsed_content("image_size")):
        return []
    return ["--image_size", json.dumps(list(size), separators=(",", ":"))]


def source_of(output: Path, inputs: list[str], output_dir: Path) -> str:
    """The input an inference output was made from: its file stem is in the output's name; when several inputs share
    a file name (one folder per case, e.g. ``<case>/mri_norm2.h5``), the output sits in a folder named after the
    input's folder."""
    candidates = [i for i in inputs if Path(i).name.split(".")[0] in output.name]
    if len(candidates) > 1:
        folders = output.relative_to(output_dir).parts[:-1]
        candidates = [i for i in candidates if Path(i).parent.name in folders]
    assert len(candidates) == 1, f"cannot tell which input {output} was made from: {candidates}"
    return candidates[0]


@pytest.mark.integration
@pytest.mark.parametrize("name", grouped("trained"))
def test_inference_writes_outputs(name, trained, tmp_path_factory):
    bundle = get_trained(trained, name, tmp_path_factory)
    parser = parse(bundle, "inference")
    inputs = [d["image"] for d in parser.get_parsed_content("datalist")]
    monai_bundle(bundle, "run", "--config_file", configs(bundle, "inference"), *quick_model_args(bundle))
    from common.data.io import read_array, spatial_shape

    output_dir = Path(parser.get_parsed_content("output_dir"))
    outputs = sorted(p for p in output_dir.rglob("*") if p.is_file())
    assert len(outputs) == len(inputs), (len(outputs), len(inputs))
    for out in outputs[:3]:
        source = source_of(out, inputs, output_dir)
        expected = spatial_shape(source, read_array(source))
        assert spatial_shape(out, read_array(out)) == expected, (out, source)


@pytest.mark.integration
@pytest.mark.parametrize("name", grouped("trained"))
def test_evaluate_writes_metrics(name, trained, tmp_path_factory):
    bundle = get_trained(trained, name, tmp_path_factory)
    monai_bundle(bundle, "run", "--config_file", configs(bundle, "train", "quick", "evaluate"))
    parser = parse(bundle, "train", "quick", "evaluate")
    eval_dir = Path(parser.get_parsed_content("eval_dir"))
    csvs = list(eval_dir.glob("*.csv"))
    assert csvs, f"evaluate wrote no metrics under {eval_dir}"
    assert list(eval_dir.glob("*.png")), f"evaluate drew no figure under {eval_dir}"


@pytest.mark.integration
@pytest.mark.parametrize("name", grouped("trained"))
def test_torchscript_export_matches_eager(name, trained, tmp_path_factory):
    bundle = get_trained(trained, name, tmp_path_factory)
    ts_file = bundle / "models" / "model.ts"
    monai_bundle(
        bundle,
        "ckpt_export",
        "network_def",
        "--filepath",
        str(ts_file),
        "--ckpt_file",
        "models/model.pt",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
    )
    parser = parse(bundle, "inference")
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    scripted = torch.jit.load(str(ts_file), map_location="cpu")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    spec = meta["network_data_format"]["inputs"]["image"]
    x = torch.randn(1, spec["num_channels"], *spec["spatial_shape"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.integration
@pytest.mark.parametrize("name", grouped("trained"))
def test_uncertainty_maps_rank_cases(name, trained, tmp_path_factory):
    """Semi-supervised bundles save an entropy map beside each prediction with ``--save_uncertainty True``, which ranks
    cases for annotation (the contract of ``common/bundle/uncertainty.py``)."""
    if "save_uncertainty" not in parse(ROOT / "bundles" / name, "inference"):
        pytest.skip(f"{name}: inference.json has no save_uncertainty (no uncertainty map to rank cases by)")
    from common.bundle.uncertainty import rank_by_uncertainty
    from common.data.io import read_array, spatial_shape

    bundle = get_trained(trained, name, tmp_path_factory)
    parser = parse(bundle, "inference")
    out = bundle / "eval" / "uncertainty_check"
    fewer_passes = ["--uncertainty_passes", "2"] if "uncertainty_passes" in parser else []  # a check, not a study
    monai_bundle(
        bundle,
        "run",
        "--config_file",
        configs(bundle, "inference"),
        "--save_uncertainty",
        "True",
        "--output_dir",
        str(out),
        *fewer_passes,
        *quick_model_args(bundle),
    )
    postfix = parser.get("uncertainty_postfix", "uncertainty")
    output_postfix = parser.get("output_postfix", "seg")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    num_classes = meta["network_data_format"]["outputs"]["pred"]["num_channels"]
    ranking = rank_by_uncertainty(out, postfix)
    predictions = [p for p in out.rglob("*") if p.is_file() and f"_{postfix}." not in p.name]
    assert len(ranking) == len(predictions) > 0, (ranking, predictions)
    assert [c.mean_entropy for c in ranking] == sorted((c.mean_entropy for c in ranking), reverse=True)
    for case in ranking:
        prediction = case.file.with_name(case.file.name.replace(f"_{postfix}.", f"_{output_postfix}."))
        assert prediction.is_file(), f"no prediction beside {case.file}"
        assert spatial_shape(case.file, read_array(case.file)) == spatial_shape(prediction, read_array(prediction))
        assert 0.0 <= case.mean_entropy <= case.max_entropy <= math.log(num_classes) + 1e-4, case


# -------------------------------------------------------------------------------- resume, DDP, bad input
# Tiny schedules for the kill + resume comparison (seconds per epoch on one CPU thread): each bundle's quick run made
# smaller, with at least three epochs so that a run killed after its first checkpoint has epochs left to resume.
# Loader workers (num_workers > 0) in a supervised and a semi-supervised bundle: their seeds come from the checkpoint.
RESUME_RUNS = {
    "asenet": (
        ("train", "isic2018", "quick", "quick_isic2018"),  # 2D semi-supervised
        ["--max_iterations", "12", "--epoch_length", "4", "--num_workers", "2"],
    ),
    "cmunext": (
        ("train", "quick"),
        ["--epochs", "4", "--image_size", "[32,32]", "--phantom#num_cases", "16", "--num_workers", "2"],
    ),
    "dfcps": (("train", "quick", "benchmark"), ["--epochs", "3", "--epoch_length", "2"]),  # 2D semi-supervised
    "dmgsa": (("train", "quick"), ["--epochs", "3", "--val_interval", "1"]),  # 3D
    "ugmcl": (("train", "quick"), ["--max_iterations", "12", "--epoch_length", "4"]),  # 3D semi-supervised
}
# The same command once more after the run ended (zero iterations, nothing rewritten): common.handlers' resume code,
# the same in every bundle (ResumeCheckpointLoader, TrainingCurvesSaver); run for one (each run is ~10 s of CPU of
# imports alone).
AGAIN_RUNS = ("cmunext",)
RUN_RECORD = "run"  # the checkpoint key that names each copy's own data files (paths, times): not compared


def resume_run_args(bundle: Path, name: str) -> list[str]:
    names, overrides = RESUME_RUNS.get(name, (("train", "quick"), []))
    return ["--config_file", configs(bundle, *names), *overrides]


def resume_copy(name: str, dest: Path, tmp_path_factory) -> Path:
    """A private copy of the bundle for a resume run, holding the phantom that run writes first (see seed_phantom)."""
    bundle = copy_bundle(name, dest)
    seed_phantom(bundle, *RESUME_RUNS.get(name, (("train", "quick"), [])), tmp_path_factory)
    return bundle


def resume_run_folders(bundle: Path, name: str) -> tuple[Path, Path]:
    """``ckpt_dir`` and ``output_dir`` of the resume run (a data set's config may move them, as isic2018.json)."""
    parser = parse(bundle, *RESUME_RUNS.get(name, (("train", "quick"), []))[0])
    return Path(parser.get_parsed_content("ckpt_dir")), Path(parser.get_parsed_content("output_dir"))


def assert_bit_identical(actual, expected, where: str = "") -> None:
    """Every tensor equal bit for bit (``torch.equal``), every other value equal, in nested checkpoint content."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and actual.shape == expected.shape, where
        if not torch.equal(actual, expected):
            difference = (actual.double() - expected.double()).abs().max().item()
            raise AssertionError(f"{where} differs (max |difference| {difference})")
    elif isinstance(expected, dict):
        assert sorted(map(str, actual)) == sorted(map(str, expected)), (
            f"{where}: {sorted(actual)} != {sorted(expected)}"
        )
        for key in expected:
            assert_bit_identical(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_bit_identical(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def curve_rows(output_dir: Path) -> list[list[str]]:
    return list(csv.reader(open(output_dir / "training_curves.csv", newline="")))[1:]


def last_line(output: str) -> str:
    return [line for line in output.splitlines() if line.strip()][-1]


@pytest.mark.integration
@pytest.mark.parametrize("name", grouped("resume"))
def test_resume_after_kill(name, tmp_path, tmp_path_factory):
    """A run killed (SIGKILL) after its first checkpoint resumes from it and is the run it would have been: at a tiny
    schedule on CPU, its final checkpoint (network, teacher, optimizers, schedulers, trainer, AMP scalers, every
    random state) and best model are bit-identical to those of an uninterrupted run, and so are the losses and
    validation metrics of every resumed epoch. The same command once more (``AGAIN_RUNS``) trains zero iterations,
    says so in its last line and leaves every file as it was; with ``--dataset_dir <another folder>`` (CMUNeXt) it
    trains afresh, after one warning, with the old run's files moved aside."""
    reference = resume_copy(name, tmp_path / "reference", tmp_path_factory)
    monai_bundle(reference, "run", "training", *resume_run_args(reference, name))
    reference_models, reference_eval = resume_run_folders(reference, name)

    bundle = resume_copy(name, tmp_path / "killed", tmp_path_factory)
    models, evals = resume_run_folders(bundle, name)
    cmd = [sys.executable, "-m", "monai.bundle", "run", *resume_run_args(bundle, name)]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=bundle, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + TIMEOUT
    try:
        while time.time() < deadline and proc.poll() is None:
            if models.is_dir() and list(models.glob("checkpoint_*=*.pt")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            "training ended before it could be interrupted:\n" + (tmp_path / "first.log").read_text()
        )
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        log.close()
    killed_at = trainer_state(last_checkpoint(bundle, models))
    assert killed_at["iteration"] < killed_at["max_epochs"] * killed_at["epoch_length"], "nothing left to resume"

    resumed = monai_bundle(bundle, "run", *resume_run_args(bundle, name))
    output = resumed.stdout + resumed.stderr
    assert "Resuming from" in output and "Not resuming" not in output, output[-3000:]
    final = torch.load(last_checkpoint(bundle, models), map_location="cpu", weights_only=True)
    state = final["trainer"]
    assert state["iteration"] == state["max_epochs"] * state["epoch_length"], state
    if "lr_scheduler" in final:  # the schedule went on from where it stopped, not from the start
        assert final["lr_scheduler"]["last_epoch"] == state["iteration"], final["lr_scheduler"]

    # the same run: bit for bit
    expected = torch.load(last_checkpoint(reference, reference_models), map_location="cpu", weights_only=True)
    assert last_checkpoint(bundle, models).name == last_checkpoint(reference, reference_models).name
    assert RUN_RECORD in final and "random_states" in final
    final.pop(RUN_RECORD), expected.pop(RUN_RECORD)
    assert_bit_identical(final, expected, "checkpoint")
    best = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert_bit_identical(best, torch.load(reference_models / "model.pt", map_location="cpu", weights_only=True))
    # losses and validation metrics of the resumed epochs (the resumed run records from where it resumed)
    killed_epoch = killed_at["iteration"] // killed_at["epoch_length"]
    rows = curve_rows(evals)
    assert rows and {int(r[1]) for r in rows} == set(range(killed_epoch + 1, state["max_epochs"] + 1)), rows
    assert rows == [r for r in curve_rows(reference_eval) if int(r[1]) > killed_epoch]

    if name not in AGAIN_RUNS:
        return
    # the same command again: nothing to train, said last, nothing rewritten
    outputs = sorted(p for folder in (models, evals) for p in folder.glob("*") if p.is_file())
    before = {p: p.read_bytes() for p in outputs if not p.name.startswith("events.out")}
    again = monai_bundle(bundle, "run", *resume_run_args(bundle, name))
    # the log goes to stdout (logging.conf); stderr holds the data loading bars, printed before training
    assert "Trained zero iterations" in last_line(again.stdout), (again.stdout + again.stderr)[-3000:]
    assert {p: p.read_bytes() for p in before} == before

    if name != "cmunext":  # one bundle suffices for the data check, a training afresh
        return
    # your own data after the demo: another folder (here the demo's files, copied with new times, a user's folder)
    phantom = parse(bundle, "train", "quick").get_parsed_content("phantom_dir")
    other = tmp_path / "my_data"
    shutil.copytree(phantom, other, copy_function=shutil.copy)
    (other / "phantom.json").unlink(missing_ok=True)
    mine = monai_bundle(bundle, "run", *resume_run_args(bundle, name), "--dataset_dir", str(other))
    output = mine.stdout + mine.stderr
    assert "Resuming from" not in output and output.count("Not resuming from") == 1, output[-3000:]
    assert "other data (" in output and str(other) in output, output[-3000:]
    moved = sorted((models / "previous_runs").iterdir())
    assert len(moved) == 1 and sorted(p.name for p in moved[0].iterdir()) == [
        last_checkpoint(reference, reference_models).name,
        "model.pt",
    ]
    assert (moved[0] / "model.pt").read_bytes() == before[models / "model.pt"]
    assert int(curve_rows(evals)[0][2]) == 1  # trained from the first iteration
    assert trainer_state(last_checkpoint(bundle, models))["iteration"] == state["iteration"]


# The DDP check's schedule: the bundle's quick run (its network, data layout and loaders) cut to two epochs of a few
# iterations, each epoch validated (as many validations as the quick run makes, at most), so that both ranks still go
# through the phantom written once, the distributed samplers' epochs, DDP's gradient all-reduce, the validation split
# across ranks, rank 0's checkpoint and best model, and the barrier before the group closes; the quick schedules' other
# iterations repeat the same code (the full quick run is the trained fixture's).
DDP_RUNS = {
    "asenet": ["--max_iterations", "4", "--epoch_length", "2"],  # quick: 8 iterations in 2 epochs
    "cmunext": ["--epochs", "2", "--image_size", "[32,32]", "--phantom#num_cases", "20"],  # quick: 6 epochs of 18
    "dfcps": ["--epoch_length", "1"],  # quick: 2 epochs of 4 iterations
    "dmgsa": ["--epochs", "2", "--val_interval", "1"],  # quick: 12 epochs, validated at 6 and 12
    "ugmcl": ["--max_iterations", "4", "--epoch_length", "2"],  # quick: 12 iterations in 2 epochs
}


@pytest.mark.parametrize("name", sorted(DDP_RUNS))
def test_ddp_schedule_keeps_two_validated_epochs(name):
    """The DDP check's cut schedule (static, in the default run): at least two epochs, each validated, so that the
    samplers' epochs, the distributed validation and the best-model save still run; and no longer than the quick run."""
    args = DDP_RUNS[name]
    assert name in BUNDLES and len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    overrides = override_values(args)
    quick = parse(ROOT / "bundles" / name, "train", "multi_gpu_train", "quick")
    cut = parse(ROOT / "bundles" / name, "train", "multi_gpu_train", "quick")
    for key, value in overrides.items():
        assert key in cut, f"{name}: --{key} names no key of the DDP run's configs"
        cut[key] = value
    epochs = cut.get_parsed_content("epochs")
    assert epochs >= 2 and cut.get_parsed_content("val_interval") == 1, (epochs, cut["val_interval"])
    assert epochs <= quick.get_parsed_content("epochs")
    for key in ("max_iterations", "epoch_length", "image_size"):
        if key in overrides and isinstance(quick[key], (int, list)):
            assert overrides[key] <= quick[key], (key, overrides[key], quick[key])


@pytest.mark.integration
@pytest.mark.parametrize("name", grouped("ddp"))
def test_multi_gpu_config_with_two_gloo_processes(name, tmp_path):
    bundle = copy_bundle(name, tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        configs(bundle, "train", "multi_gpu_train", "quick"),
        *DDP_RUNS.get(name, []),
    ]
    env = _env()
    env.update(OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=bundle, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    # torchrun's own traceback fills the end of stderr; the failing rank's reason is earlier, so quote it as well
    reasons = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if re.search(r"terminate|Error|Exception|what\(\)|\[rank\d", line) and "ChildFailedError" not in line
    ]
    assert proc.returncode == 0, "\n".join(reasons[-40:]) + "\n" + proc.stdout[-3000:] + proc.stderr[-4000:]
    assert (bundle / "models" / "model.pt").is_file()
    state = trainer_state(last_checkpoint(bundle))
    assert state["iteration"] == state["max_epochs"] * state["epoch_length"]


@pytest.mark.integration
@pytest.mark.parametrize("name", grouped("badinput"))
def test_corrupt_input_gets_a_clear_error(name, tmp_path, tmp_path_factory):
    """A truncated image in a user's data set stops training before it starts, naming the file; nothing is written."""
    bundle = copy_bundle(name, tmp_path)
    seed_phantom(bundle, ("train", "quick"), [], tmp_path_factory)
    parser = parse(bundle, "train", "quick")
    datalist = parser.get_parsed_content("datalist")  # the phantom's datalist, as a first run prepares it
    phantom = Path(parser.get_parsed_content("dataset_dir"))
    user_data = tmp_path / "user_data"
    shutil.copytree(phantom, user_data)
    (user_data / "phantom.json").unlink(missing_ok=True)  # no marker: this is now a user's folder
    victim_src = Path(datalist["training"][0]["image"])
    victim = user_data / victim_src.relative_to(phantom)
    victim.write_bytes(victim.read_bytes()[: max(16, victim.stat().st_size // 3)])
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in user_data.rglob("*")}

    proc = monai_bundle(
        bundle,
        "run",
        "training",
        "--config_file",
        configs(bundle, "train", "quick"),
        "--dataset_dir",
        str(user_data),
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, "training accepted a corrupt image"
    assert str(victim) in output, output[-3000:]
    assert "DataValidationError" in output or "corrupt" in output.lower() or "cannot" in output.lower()
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in user_data.rglob("*")}
    assert after == before, "the user's data folder was modified"
