"""Tests of common.bundle.command_line: unknown overrides refused with the closest key, user errors printed last."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from monai.bundle.scripts import create_workflow, run

from common.bundle import BundleInputError, find_inputs
from common.bundle.command_line import DEBUG_ENV, check_overrides, user_error_of
from common.bundle.locate import repository_root
from common.data import DataValidationError, prepare_datalist

REPO = repository_root()
BUNDLES = sorted(p.parent.parent for p in (REPO / "bundles").glob("*/configs/metadata.json"))


def write_config(folder: Path, run_expression: str = "$print('RAN')") -> Path:
    configs = folder / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    config = {
        "imports": ["$import common"],
        "epochs": 3,
        "train": {"lr": 0.1},
        "initialize": ["$common.bundle.check_command_line()"],
        "run": [run_expression],
    }
    path = configs / "train.json"
    path.write_text(json.dumps(config))
    return path


def runner(config: Path, *args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop(DEBUG_ENV, None)
    if debug:
        env[DEBUG_ENV] = "1"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config), "--logging_file", "False"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=300)


def test_typo_names_the_closest_key() -> None:
    with pytest.raises(BundleInputError, match=r"--epoch: train.json define no key 'epoch'; did you mean --epochs\?"):
        check_overrides(["epoch"], ["epochs", "learning_rate", "seed"], config_files="train.json")


def test_help_points_at_the_model_card() -> None:
    with pytest.raises(BundleInputError, match=r"--help: a bundle run has no help option") as raised:
        check_overrides(["help"], ["epochs"], model_card="bundles/cmunext/docs/README.md")
    assert "bundles/cmunext/docs/README.md" in str(raised.value)


def test_nested_ids_need_their_top_level_key() -> None:
    check_overrides(["train#trainer#max_epochs", "epochs"], ["train", "epochs"])  # defined: accepted
    with pytest.raises(BundleInputError, match=r"--trian#trainer#max_epochs: .* no key 'trian'; did you mean --train"):
        check_overrides(["trian#trainer#max_epochs"], ["train", "epochs"])


@pytest.mark.parametrize("word", ["false", "False ", "no", "off", "true", "yes", "on"])
def test_a_boolean_switch_given_as_text_is_refused(word: str) -> None:
    # the runner keeps `--use_dmr false` as the text 'false', which `$` expressions take as true
    spelled = "False" if word.strip().lower() in ("false", "no", "off") else "True"
    with pytest.raises(BundleInputError, match=rf"(?m)--use_dmr {word}: .* as text, .*; write --use_dmr {spelled}$"):
        check_overrides({"use_dmr": word}, {"use_dmr": True, "epochs": 3})


def test_a_text_word_for_an_expression_default_is_refused() -> None:
    # "amp": "$torch.cuda.is_available()" is a boolean once evaluated: `--amp false` would turn AMP on
    with pytest.raises(BundleInputError, match=r"--amp false: .*; write --amp False"):
        check_overrides({"amp": "false"}, {"amp": "$torch.cuda.is_available()"})
    with pytest.raises(BundleInputError, match=r"--resume off: .*; write --resume False"):
        check_overrides({"resume": "off"}, {"resume": "@train_resume"})


def test_booleans_and_text_of_text_keys_pass() -> None:
    config = {"use_dmr": True, "dataset_layout": "kvasir_seg", "epochs": 3}
    check_overrides(
        {"use_dmr": False, "dataset_layout": "no", "epochs": "5"}, config
    )  # only a bool default is a switch
    check_overrides(["use_dmr"], config)  # ids without values: nothing to check but the key


@pytest.mark.integration
def test_a_text_switch_stops_the_real_runner(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "amp": True}))
    result = runner(config, "--amp", "false")
    assert result.returncode != 0 and "RAN" not in result.stdout
    assert (
        "--amp false: the command line passes 'false' as text, which counts as true; write --amp False"
        in (result.stderr.strip().splitlines()[-2])
    )
    assert "RAN" in runner(config, "--amp", "False").stdout


def test_every_unknown_key_is_listed_and_nothing_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path)
    with pytest.raises(RuntimeError) as raised:  # MONAI's ConfigExpression wraps it
        run(config_file=str(config), logging_file=False, epoch=5, lr=1.0)
    error = user_error_of(raised.value)
    assert isinstance(error, BundleInputError)
    assert "did you mean --epochs?" in str(error) and "--lr:" in str(error)
    assert "RAN" not in capsys.readouterr().out


def test_defined_keys_and_the_runners_own_arguments_pass(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path)
    run(
        run_id="run",
        init_id="initialize",
        final_id="finalize",
        meta_file=str(tmp_path / "configs" / "metadata.json"),
        config_file=[str(config)],
        logging_file=False,
        epochs=5,
        **{"train#lr": 0.5, "train#new_entry": 1, "_meta_#version": "0.0.1"},
    )
    assert "RAN" in capsys.readouterr().out


def test_args_file_overrides_are_checked(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"config_file": str(config), "logging_file": False, "epohcs": 2}))
    with pytest.raises(RuntimeError) as raised:
        run(args_file=str(args_file))
    assert "did you mean --epochs?" in str(user_error_of(raised.value))


def test_mlflow_tracking_settings_are_keys(tmp_path: Path) -> None:
    from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

    from common.bundle.command_line import _tracking_keys

    # MONAI documents these as overridable with --tracking mlflow; they are not in the bundle's configs. The bundles
    # take MONAI's own settings (no settings file of the project): their keys are exactly MONAI's
    assert {"experiment_name", "run_name", "tracking_uri"} <= _tracking_keys("mlflow")
    assert _tracking_keys("mlflow") == set(DEFAULT_MLFLOW_SETTINGS["configs"])
    assert _tracking_keys(None) == set()
    # a user's own settings, as a file or a dict, add their own keys
    own = {"handlers_id": DEFAULT_MLFLOW_SETTINGS["handlers_id"], "configs": {"experiment_name": "x", "my_key": 1}}
    settings = tmp_path / "tracking.json"
    settings.write_text(json.dumps(own))
    assert _tracking_keys(str(settings)) == _tracking_keys(own) == {"experiment_name", "my_key"}


def test_parsing_from_python_is_not_checked(tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(write_config(tmp_path)))
    parser.update({"not_a_key": 1})  # MONAI Label and tests set ids directly: no command line to check
    assert parser.get_parsed_content("initialize#0") is False


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_real_bundle_configs_refuse_a_typo_and_accept_the_runner_keys(bundle: Path) -> None:
    configs = bundle / "configs"
    files = [str(configs / "train.json"), str(configs / "quick.json")]
    runner_keys = {
        "meta_file": str(configs / "metadata.json"),
        "logging_file": str(configs / "logging.conf"),
        "init_id": "initialize",
        "run_id": "training",
        "final_id": "finalize",
    }
    # create_workflow runs `initialize` (the check) but not the training
    create_workflow(config_file=files, **runner_keys, epochs=1, bundle_root=str(bundle), device="cpu")
    with pytest.raises(RuntimeError) as raised:
        create_workflow(config_file=files, **runner_keys, epoch=1)
    assert "did you mean --epochs?" in str(user_error_of(raised.value))


@pytest.mark.parametrize("config", sorted((REPO / "bundles").glob("*/configs/*.json")), ids=lambda p: p.name)
def test_every_initialize_starts_with_the_check(config: Path) -> None:
    content = json.loads(config.read_text())
    if isinstance(content, dict) and "initialize" in content:
        assert content["initialize"][0] == "$common.bundle.check_command_line()", config


@pytest.mark.integration
def test_the_message_is_the_last_lines_without_traceback(tmp_path: Path) -> None:
    result = runner(write_config(tmp_path), "--epoch", "5")
    assert result.returncode != 0
    assert "RAN" not in result.stdout
    assert "Traceback" not in result.stderr and "Failed to evaluate" not in result.stderr
    last = result.stderr.strip().splitlines()
    assert last[-3].startswith("BundleInputError: command-line override(s) refused")
    assert "--epoch: train.json define no key 'epoch'; did you mean --epochs?" in last[-2]
    assert f"Set {DEBUG_ENV}=1 for the full traceback" in result.stderr

    debug = runner(write_config(tmp_path), "--epoch", "5", debug=True)
    assert "Traceback" in debug.stderr and "Failed to evaluate" in debug.stderr


@pytest.mark.integration
def test_a_data_error_is_printed_last_and_a_bug_keeps_its_traceback(tmp_path: Path) -> None:
    raising = "$common.data.check_cases([{'image': '/no/such.png'}])"  # the hook is installed by `initialize`
    result = runner(write_config(tmp_path / "a", raising))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "/no/such.png: missing file"

    bug = runner(write_config(tmp_path / "b", "$1 / 0"))
    assert bug.returncode != 0 and "Traceback" in bug.stderr
    assert "ZeroDivisionError" in bug.stderr and "RuntimeError: Failed to evaluate" in bug.stderr


def test_user_error_found_in_the_chain() -> None:
    inner = DataValidationError(["/x.png: unreadable or corrupt image"])
    try:
        try:
            raise inner
        except ValueError as error:
            raise RuntimeError("Failed to evaluate ConfigExpression") from error
    except RuntimeError as outer:
        assert user_error_of(outer) is inner
    assert user_error_of(RuntimeError("a bug")) is None
    assert user_error_of(ValueError("a bug")) is None


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_error_hints_name_real_keys(bundle: Path, tmp_path: Path) -> None:
    keys = set(json.loads((bundle / "configs" / "inference.json").read_text()))
    keys |= set(json.loads((bundle / "configs" / "train.json").read_text()))
    messages = []
    for call in (
        lambda: find_inputs(str(tmp_path / "missing")),
        lambda: find_inputs(str(tmp_path), "*.png"),
        lambda: prepare_datalist(tmp_path / "missing", "kvasir_seg", tmp_path / "d.json"),
    ):
        with pytest.raises(FileNotFoundError) as raised:
            call()
        messages.append(str(raised.value))
    named = {name for message in messages for name in re.findall(r"--(\w+)", message)}
    assert named and named <= keys, named - keys
    assert not any("set generate_phantom" in message for message in messages)
