"""Tests of common.bundle.distributed: handler filtering by rank, torchrun checks, a real one-process gloo group."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from ignite.handlers import ProgressBar
from monai.handlers import (
    CheckpointSaver,
    LrScheduleHandler,
    MetricsSaver,
    StatsHandler,
    TensorBoardImageHandler,
    TensorBoardStatsHandler,
)
from torch.nn.parallel import DistributedDataParallel

import common.bundle.distributed as distributed
from common.bundle import handlers_for_this_rank, init_distributed, is_main_process, local_device, wrap_ddp
from common.handlers import TrainingProgressBar


class FileWriter:
    main_process_only = True


class Harmless:
    main_process_only = False


@pytest.fixture
def handlers(tmp_path: Path) -> dict:
    net = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    made = {
        "checkpoint": CheckpointSaver(save_dir=str(tmp_path / "ckpt"), save_dict={"net": net}),
        "tb_stats": TensorBoardStatsHandler(log_dir=str(tmp_path / "tb")),
        "tb_image": TensorBoardImageHandler(log_dir=str(tmp_path / "tb")),
        "metrics": MetricsSaver(save_dir=str(tmp_path / "metrics")),
        "progress": ProgressBar(),
        "training_progress": TrainingProgressBar(),
        "file_writer": FileWriter(),
        "stats": StatsHandler(),
        "lr": LrScheduleHandler(torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)),
        "harmless": Harmless(),
        "plain": object(),
    }
    yield made
    made["tb_stats"]._writer.close()
    made["tb_image"]._writer.close()


def test_everything_kept_when_not_distributed(handlers: dict) -> None:
    assert not dist.is_initialized()
    assert is_main_process()
    listed = list(handlers.values())
    assert handlers_for_this_rank(listed) == listed
    assert handlers_for_this_rank(None) is None


def test_rank_zero_keeps_everything(handlers: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "is_main_process", lambda: True)
    listed = list(handlers.values())
    assert handlers_for_this_rank(listed) == listed


def test_other_ranks_drop_main_process_only_handlers(handlers: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)
    kept = handlers_for_this_rank(list(handlers.values()))
    assert kept == [handlers["stats"], handlers["lr"], handlers["harmless"], handlers["plain"]]
    assert handlers_for_this_rank(None) is None
    assert handlers_for_this_rank([]) == []


def test_other_ranks_leave_no_event_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the config builds every handler on every rank: a TensorBoard handler has made its event file before filtering
    kept_dir, dropped_dir, given_dir = tmp_path / "rank0", tmp_path / "rank1", tmp_path / "given"
    rank0 = TensorBoardStatsHandler(log_dir=str(kept_dir))
    assert handlers_for_this_rank([rank0]) == [rank0]
    assert len(list(kept_dir.iterdir())) == 1  # rank 0 (here: not distributed) keeps its writer and file
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)
    other = TensorBoardStatsHandler(log_dir=str(dropped_dir))
    image = TensorBoardImageHandler(log_dir=str(dropped_dir))
    assert len(list(dropped_dir.iterdir())) == 2
    from torch.utils.tensorboard import SummaryWriter

    outside = SummaryWriter(log_dir=str(given_dir))
    handed_in = TensorBoardStatsHandler(summary_writer=outside)
    assert handlers_for_this_rank([other, image, handed_in, StatsHandler()])[0].__class__ is StatsHandler
    assert list(dropped_dir.iterdir()) == []  # both files this process made are gone
    assert len(list(given_dir.iterdir())) == 1  # a writer handed in from outside is not ours to close or delete
    outside.add_scalar("still_open", 1.0)
    outside.close()
    rank0._writer.close()


@pytest.mark.parametrize(("initialized", "rank", "expected"), [(False, 3, True), (True, 0, True), (True, 1, False)])
def test_is_main_process(monkeypatch: pytest.MonkeyPatch, initialized: bool, rank: int, expected: bool) -> None:
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: initialized)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: rank)
    assert is_main_process() is expected
    # the filtering follows the real rank check, not only a patched is_main_process
    saver = ProgressBar()
    assert handlers_for_this_rank([saver]) == ([saver] if expected else [])


@pytest.mark.parametrize("missing", ["RANK", "WORLD_SIZE"])
def test_init_distributed_requires_torchrun(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.delenv(missing)
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed()
    assert not dist.is_initialized()


def test_local_device_is_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device() == torch.device("cpu")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def single_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment torchrun gives a one-process CPU run (gloo on a free port)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for key, value in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
    }.items():
        monkeypatch.setenv(key, value)


def test_single_process_gloo_group_trains_a_ddp_model(single_process_env: None) -> None:
    assert not dist.is_initialized()
    init_distributed()
    try:
        assert dist.is_initialized()
        assert dist.get_backend() == "gloo"
        assert dist.get_world_size() == 1 and dist.get_rank() == 0
        init_distributed()  # idempotent: a second call does not try to join again
        assert is_main_process()
        handlers = [ProgressBar(), FileWriter()]
        assert handlers_for_this_rank(handlers) == handlers

        device = local_device()
        assert device == torch.device("cpu")
        torch.manual_seed(0)
        network = torch.nn.Linear(3, 2)
        expected_weight = network.weight.detach().clone()
        model = wrap_ddp(network, device)
        assert isinstance(model, DistributedDataParallel)
        assert model.module is network and model.device_ids is None
        torch.testing.assert_close(model.module.weight, expected_weight)  # rank 0 broadcasts its own weights

        x = torch.randn(4, 3)
        out = model(x)
        assert out.shape == (4, 2)
        out.sum().backward()
        # d(sum(Wx + b))/dW = column sums of x for every output row; averaged over one rank it is unchanged
        torch.testing.assert_close(network.weight.grad, x.sum(0).expand(2, 3))
        torch.testing.assert_close(network.bias.grad, torch.full((2,), 4.0))
    finally:
        dist.destroy_process_group()
    assert not dist.is_initialized()


def test_other_ranks_log_warnings_only() -> None:
    import logging

    from common.bundle import quiet_logging_on_other_ranks

    root, chatty, quiet = logging.getLogger(), logging.getLogger("leb.test.chatty"), logging.getLogger("leb.test.q")
    saved = root.level, chatty.level, quiet.level
    try:
        root.setLevel(logging.INFO)
        chatty.setLevel(logging.DEBUG)  # a logger with its own level below WARNING (MONAI's StatsHandler sets one)
        quiet.setLevel(logging.ERROR)
        quiet_logging_on_other_ranks(0)
        assert (root.level, chatty.level, quiet.level) == (logging.INFO, logging.DEBUG, logging.ERROR)
        quiet_logging_on_other_ranks(1)
        assert (root.level, chatty.level, quiet.level) == (logging.WARNING, logging.WARNING, logging.ERROR)
        assert not logging.getLogger("leb.test.inherits").isEnabledFor(logging.INFO)
        assert logging.getLogger("leb.test.inherits").isEnabledFor(logging.WARNING)
    finally:
        root.setLevel(saved[0]), chatty.setLevel(saved[1]), quiet.setLevel(saved[2])


BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"


@pytest.mark.parametrize("bundle", sorted(p.parent.parent.name for p in BUNDLES_DIR.glob("*/configs/train.json")))
def test_multi_gpu_configs_show_dataset_progress_on_rank_zero_only(bundle: str) -> None:
    import json

    config = json.loads((BUNDLES_DIR / bundle / "configs" / "multi_gpu_train.json").read_text())
    progress = {k for k, v in config.items() if k.endswith("#progress")}
    assert {"train#dataset#progress", "validate#dataset#progress"} <= progress
    assert all(config[k] == "$common.bundle.is_main_process()" for k in progress)


def test_close_distributed_waits_for_every_rank_then_leaves(
    single_process_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.bundle import close_distributed

    calls = []
    barrier, destroy = dist.barrier, dist.destroy_process_group
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: (calls.append("barrier"), barrier(*a, **k))[1])
    monkeypatch.setattr(dist, "destroy_process_group", lambda *a, **k: (calls.append("destroy"), destroy(*a, **k))[1])
    close_distributed()  # no group yet: nothing to do
    assert calls == []
    init_distributed()
    close_distributed()
    # the barrier must come first: a rank leaving while rank 0 still writes its last checkpoint fails the run
    assert calls == ["barrier", "destroy"]
    assert not dist.is_initialized()
