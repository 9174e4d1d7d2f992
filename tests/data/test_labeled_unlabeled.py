"""Tests of common.data.semi_supervised: two loaders zipped into semi-supervised batches, epochs, DDP sharding."""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset, DistributedSampler
from monai.transforms import Compose, RandFlipd, RandGaussianNoised
from monai.utils import set_determinism

from common.data import LABELED_BATCH_SIZE_KEY, LabeledUnlabeledLoader, unlabeled_cases
from common.handlers import RandomStates


def labeled_cases(count: int) -> list[dict]:
    return [
        {"id": f"L{i}", "image": torch.full((1, 4, 4), float(i)), "label": torch.ones(1, 4, 4)} for i in range(count)
    ]


def unlabeled(count: int) -> list[dict]:
    return [{"id": f"U{i}", "image": torch.full((1, 4, 4), 100.0 + i)} for i in range(count)]


def loader(cases: list[dict], batch_size: int, sampler=None) -> DataLoader:
    return DataLoader(Dataset(cases), batch_size=batch_size, shuffle=sampler is None, drop_last=True, sampler=sampler)


def values(batch: dict) -> list[int]:
    return [int(v) for v in batch["image"][:, 0, 0, 0]]


def test_batches_put_the_labeled_part_first() -> None:
    combined = LabeledUnlabeledLoader(loader(labeled_cases(4), 2), loader(unlabeled(6), 2))
    assert len(combined) == 2  # one pass over the labeled loader
    batches = list(combined)
    assert len(batches) == 2
    for batch in batches:
        assert set(batch) == {"image", "label", LABELED_BATCH_SIZE_KEY}
        assert batch["image"].shape == (4, 1, 4, 4) and batch["label"].shape == (2, 1, 4, 4)
        assert batch[LABELED_BATCH_SIZE_KEY] == 2
        first, second = values(batch)[:2], values(batch)[2:]
        assert all(v < 100 for v in first) and all(v >= 100 for v in second)
    assert sorted(v for b in batches for v in values(b)[:2]) == [0, 1, 2, 3]  # every labeled case once per pass
    assert type(batches[0]["image"]) is torch.Tensor  # no MONAI metadata: the two parts have different cases


def test_explicit_epoch_length_cycles_both_streams() -> None:
    combined = LabeledUnlabeledLoader(loader(labeled_cases(4), 2), loader(unlabeled(3), 1), epoch_length=7)
    batches = list(combined)
    assert len(combined) == 7 and len(batches) == 7
    labeled_seen = [v for b in batches for v in values(b)[:2]]
    unlabeled_seen = [v for b in batches for v in values(b)[2:]]
    assert sorted(labeled_seen[:4]) == [0, 1, 2, 3] and sorted(labeled_seen[4:8]) == [0, 1, 2, 3]
    assert sorted(unlabeled_seen[:3]) == [100, 101, 102] and sorted(unlabeled_seen[3:6]) == [100, 101, 102]
    assert len(list(combined)) == 7  # a new epoch starts afresh


def test_ddp_shards_both_lists_and_set_epoch_reshuffles() -> None:
    labeled, unlabeled_list = labeled_cases(8), unlabeled(8)

    def rank_loader(rank: int) -> LabeledUnlabeledLoader:
        labeled_sampler = DistributedSampler(Dataset(labeled), num_replicas=2, rank=rank, shuffle=True)
        unlabeled_sampler = DistributedSampler(Dataset(unlabeled_list), num_replicas=2, rank=rank, shuffle=True)
        return LabeledUnlabeledLoader(loader(labeled, 2, labeled_sampler), loader(unlabeled_list, 2, unlabeled_sampler))

    ranks = [rank_loader(0), rank_loader(1)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    seen = [[v for b in r for v in values(b)] for r in ranks]
    labeled_parts = [[v for v in s if v < 100] for s in seen]
    unlabeled_parts = [[v for v in s if v >= 100] for s in seen]
    assert not set(labeled_parts[0]) & set(labeled_parts[1])
    assert sorted(labeled_parts[0] + labeled_parts[1]) == list(range(8))
    assert not set(unlabeled_parts[0]) & set(unlabeled_parts[1])
    first_epoch = seen[0]
    for rank in ranks:
        rank.set_epoch(1)
    second = [[v for b in r for v in values(b) if v < 100] for r in ranks]
    assert second[0] != labeled_parts[0]  # a new shuffle (and shard) per epoch, as DistributedSampler does
    assert not set(second[0]) & set(second[1]) and sorted(second[0] + second[1]) == list(range(8))
    ranks[0].set_epoch(0)
    assert [v for b in ranks[0] for v in values(b)] == first_epoch  # deterministic per epoch


def test_unlabeled_cases_strip_labels() -> None:
    datalist = {
        "training": [{"id": "a", "image": "a.h5", "label": "a.h5"}],
        "unlabeled": [{"id": "b", "image": "b.h5"}],
    }
    assert unlabeled_cases(datalist) == [{"id": "b", "image": "b.h5"}]
    assert unlabeled_cases(datalist, include_labeled=True) == [
        {"id": "b", "image": "b.h5"},
        {"id": "a", "image": "a.h5"},
    ]
    assert "label" in datalist["training"][0]  # the datalist itself is not modified
    with pytest.raises(ValueError, match="no unlabeled case"):
        unlabeled_cases({"training": datalist["training"], "unlabeled": []})


def test_errors() -> None:
    with pytest.raises(ValueError, match="epoch_length"):
        LabeledUnlabeledLoader(loader(labeled_cases(2), 2), loader(unlabeled(2), 2), epoch_length=0)
    with pytest.raises(ValueError, match="labeled loader yields no batch"):
        LabeledUnlabeledLoader(loader(labeled_cases(1), 2), loader(unlabeled(2), 2))
    combined = LabeledUnlabeledLoader(loader(labeled_cases(2), 2), loader(unlabeled(1), 2), epoch_length=1)
    with pytest.raises(ValueError, match="unlabeled loader yields no batch"):
        list(combined)
    no_label = LabeledUnlabeledLoader(loader(unlabeled(2), 2), loader(unlabeled(2), 2))
    with pytest.raises(KeyError, match="labeled batch has no"):
        list(no_label)
    other_size = [{"image": torch.zeros(1, 5, 4)} for _ in range(2)]
    with pytest.raises(ValueError, match="same patch size"):
        list(LabeledUnlabeledLoader(loader(labeled_cases(2), 2), loader(other_size, 2)))


def test_extra_keys_are_concatenated_like_the_images() -> None:
    """A second view of each image (DFCPS's ``image_strong``) travels with it, labeled part first."""

    def with_strong(cases: list[dict]) -> list[dict]:
        return [{**case, "image_strong": case["image"] + 0.5} for case in cases]

    combined = LabeledUnlabeledLoader(
        loader(with_strong(labeled_cases(4)), 2), loader(with_strong(unlabeled(4)), 3), extra_keys="image_strong"
    )
    for batch in combined:
        assert set(batch) == {"image", "image_strong", "label", LABELED_BATCH_SIZE_KEY}
        assert batch["image_strong"].shape == batch["image"].shape == (5, 1, 4, 4)
        torch.testing.assert_close(batch["image_strong"], batch["image"] + 0.5)
    missing = LabeledUnlabeledLoader(loader(labeled_cases(2), 2), loader(unlabeled(2), 2), extra_keys=["image_strong"])
    with pytest.raises(KeyError, match="image_strong"):
        next(iter(missing))


@pytest.mark.parametrize("num_workers", [0, 2], ids=["main process", "workers"])
def test_random_states_of_both_streams_are_checkpointed(num_workers: int) -> None:
    """The random states a checkpoint holds (:class:`common.handlers.RandomStates` of the trainer) reach the
    labeled and the unlabeled loader: their shuffling, their own generator and their transforms' ``R`` (in the
    main process) or their workers' seeds. Restored after epoch 1, epoch 2 comes again, batch for batch, with an
    unlabeled stream that restarts mid-epoch."""
    set_determinism(0)
    noise = Compose([RandGaussianNoised(keys="image", prob=0.5, std=1.0), RandFlipd(keys="image", prob=0.5)])
    labeled_loader = DataLoader(
        Dataset(labeled_cases(6), noise), batch_size=2, shuffle=True, drop_last=True, num_workers=num_workers
    )
    unlabeled_loader = DataLoader(
        Dataset(unlabeled(4), noise),
        batch_size=2,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(7),
    )
    combined = LabeledUnlabeledLoader(labeled_loader, unlabeled_loader, epoch_length=3)
    trainer = Engine(lambda engine, batch: None)
    trainer.state.dataloader = combined  # as Ignite's run() sets it
    states = RandomStates(trainer)
    found = states.generators()
    assert any(path.startswith("state.dataloader.unlabeled_loader.") for path in found), sorted(found)
    assert any(path.startswith("state.dataloader.labeled_loader.") for path in found), sorted(found)

    list(combined)  # epoch 1
    saved = copy.deepcopy(states.state_dict())
    epoch_2 = [batch["image"] for batch in combined]
    states.load_state_dict(saved)
    again = [batch["image"] for batch in combined]
    assert all(torch.equal(a, b) for a, b in zip(again, epoch_2)) and len(again) == 3
    epoch_3 = [batch["image"] for batch in combined]  # drawn on, not repeated
    assert not all(torch.equal(a, b) for a, b in zip(epoch_3, epoch_2))
