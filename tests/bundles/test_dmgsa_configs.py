"""The DMGSA bundle's configs: the paper's defaults, and each ablation config really removing its component."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from common.handlers import DynamicMaskRatio
from tests.bundles.lookup import handler_id, parse_configs

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "dmgsa" / "configs"
parse = functools.partial(parse_configs, CONFIGS.parent)  # parse("train", "quick", ...)


def test_paper_defaults() -> None:
    parser = parse("train")
    assert parser["mask_rho"] == 2.0 and parser["mask_ratio_max"] == 0.35  # DMR: rho in [1, 3], r in [0.15, 0.5]
    assert parser["monr_orders"] == [0.5, 1.5] and parser["gem_p_init"] == 3.0
    assert all(parser[f"use_{name}"] for name in ("dmr", "monr", "gmgs", "adversarial"))
    assert [parser["hu_min"], parser["hu_max"]] == [-1200, 600]  # the public code's window: centre -300, width 1800
    handler = parser.get_parsed_content(handler_id(parser, "common.handlers.DynamicMaskRatio"))
    assert isinstance(handler, DynamicMaskRatio) and handler.fixed_ratio is None
    model = parser.get_parsed_content("training_model")
    assert model.recon_head is not None and len(model.network.gmgs) == 4
    assert [d.name for d in parser.get_parsed_content("train#trainer#discriminators")] == ["moni", "mong"]
    targets = parser.get_parsed_content("train#trainer#targets")
    assert targets.orders == (0.5, 1.5) and targets.formula == "power"  # METHODS.md: MONI_k = (Xa / 255)^k
    assert parser.get_parsed_content("train#trainer#separation_weight") == 0.1
    # checkpoints save and resume everything that learns: network and head, both discriminators, all optimizers
    saved = set(parser["checkpoint_dict"])
    assert {"training_model", "optimizer", "lr_scheduler", "d_moni", "d_mong", "d_moni_optimizer"} <= saved
    assert "d_mong_optimizer" in saved
    for target, key in (("ResumeCheckpointLoader", "load_dict"), ("AtomicCheckpointSaver", "save_dict")):
        assert parser[f"{handler_id(parser, f'common.handlers.{target}')}#{key}"] == "@checkpoint_dict"


@pytest.mark.parametrize("component", ["dmr", "monr", "gmgs", "adversarial"])
def test_each_ablation_removes_its_component(component: str) -> None:
    parser = parse("train", "quick", f"ablation_no_{component}")
    assert parser.get_parsed_content("ckpt_dir").endswith(f"models/ablation_no_{component}")
    handler = parser.get_parsed_content(handler_id(parser, "common.handlers.DynamicMaskRatio"))
    model = parser.get_parsed_content("training_model")
    discriminators = parser.get_parsed_content("train#trainer#discriminators")
    targets = parser.get_parsed_content("train#trainer#targets")
    separation = parser.get_parsed_content("train#trainer#separation_weight")
    terms = parser.get_parsed_content("loss_terms")
    # DMR off: a fixed mask ratio instead of the schedule; the rest stays
    assert (handler.fixed_ratio == 0.35) == (component == "dmr")
    # MONR off: no reconstruction head, no targets, and no discriminators (they judge reconstructions)
    assert (model.recon_head is None) == (component == "monr")
    assert (targets is None) == (component == "monr")
    assert ("reconstruction" in terms) == (component != "monr")
    # GMGS off: a plain U-Net and no separation term
    assert (len(model.network.gmgs) == 0) == (component == "gmgs")
    assert (separation == 0.0) == (component == "gmgs")
    # adversarial learning off (or nothing to judge)
    assert (discriminators == []) == (component in ("adversarial", "monr"))
    assert ("adv_moni" in terms) == (component not in ("adversarial", "monr"))


def test_the_monr_formula_switch_reaches_the_targets() -> None:
    """``monr_formula`` (top-level) picks the MONI formula; ``as_written`` is the degenerate one-order reading."""
    parser = parse("train", "quick")
    parser["monr_formula"] = "as_written"
    assert parser.get_parsed_content("train#trainer#targets").formula == "as_written"
    parser = parse("train", "quick", "ablation_no_dmr")  # an ablation keeps the default formula
    assert parser.get_parsed_content("train#trainer#targets").formula == "power"
