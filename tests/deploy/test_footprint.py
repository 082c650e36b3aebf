"""The capacity figures' measurement (deploy/bench/footprint.py) on a stack of its own: what it counts is what the
pipeline did, and its scaling follows the settings it names."""

import asyncio
import copy
import math
from pathlib import Path
from typing import Any

import pytest

from deploy.bench.footprint import measure, scale, stack_settings
from deploy.stack.loopback import loopback_stack
from shared.runtime.config import IntakeSettings, ValidatorSettings, VaultWriterSettings

WARM_UP = 5
BINDINGS = 20
PACE_PER_S = 50.0


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir: Path = tmp_path_factory.mktemp("footprint")
    with loopback_stack(run_dir, stack_settings(PACE_PER_S)) as stack:
        return asyncio.run(measure(stack, BINDINGS, warm_up=WARM_UP))


def _added(measured: dict[str, Any], before: str, after: str, topic: str) -> int:
    snapshots = measured["snapshots"]
    return int(snapshots[after]["topics"][topic]["records"] - snapshots[before]["topics"][topic]["records"])


def test_the_bindings_and_the_sweep_are_counted_on_their_own_topics(measured: dict[str, Any]) -> None:
    assert _added(measured, "warm", "bound", "binding.requested") == BINDINGS
    assert _added(measured, "warm", "bound", "binding.stored") == BINDINGS
    assert _added(measured, "bound", "swept", "binding.requested") == 0
    # The sweep re-checks every stored binding, the warm-up's too, once each.
    assert _added(measured, "bound", "swept", "binding.recheck-requested") == WARM_UP + BINDINGS
    assert _added(measured, "bound", "swept", "binding.rechecked") == WARM_UP + BINDINGS
    # intake's start is timed on every status the topic holds, each one verified (none is forged here).
    assert measured["status_read"]["records"] == measured["snapshots"]["swept"]["topics"]["binding.status"]["records"]


def test_vault_grows_with_the_bindings_and_every_call_is_audited(measured: dict[str, Any]) -> None:
    warm, bound, swept = (measured["snapshots"][name] for name in ("warm", "bound", "swept"))
    assert bound["vault_snapshot_bytes"] > warm["vault_snapshot_bytes"]
    assert warm["vault_audit_bytes"] < bound["vault_audit_bytes"] < swept["vault_audit_bytes"]
    assert set(swept["rss_bytes"]) >= {"intake", "validator", "vault_writer", "whitelist", "vault", "kafka"}


def test_a_sweep_at_scale_lasts_the_bindings_over_the_configured_pace(measured: dict[str, Any]) -> None:
    target = 1_000_000
    scaled = scale(measured, target)
    pace = ValidatorSettings.model_fields["health_rechecks_per_s"].default
    achieved = scaled["achieved_recheck_per_s"]
    assert achieved == pytest.approx((WARM_UP + BINDINGS) / measured["sweep_s"], abs=0.05)
    assert scaled["sweep_at_target_s"] == round(target / min(pace, achieved))


def test_topics_hold_every_binding_once_and_the_sweeps_their_retention_holds(measured: dict[str, Any]) -> None:
    target = 1_000_000
    scaled = scale(measured, target)
    interval_s = VaultWriterSettings.model_fields["health_sweep_interval_s"].default
    # One sweep at a time: the next starts at the first slot after the one before it ended.
    period_s = math.ceil(scaled["sweep_at_target_s"] / interval_s) * interval_s
    requested = scaled["topics"]["binding.requested"]
    assert requested["bytes_per_recheck"] == 0 < requested["bytes_per_binding"]
    assert requested["at_target_bytes"] == pytest.approx(requested["bytes_per_binding"] * target, rel=0.01)
    rechecked = scaled["topics"]["binding.rechecked"]
    assert rechecked["bytes_per_binding"] == 0 < rechecked["bytes_per_recheck"]
    sweeps_kept = rechecked["retention_days"] * 86_400 / period_s
    expected = rechecked["bytes_per_recheck"] * target * sweeps_kept
    assert rechecked["at_target_bytes"] == pytest.approx(expected, rel=0.01)


def test_a_sweeps_lists_of_every_user_are_audited_as_counts_not_names(measured: dict[str, Any]) -> None:
    listing = measured["listing"]
    assert listing["users"] == WARM_UP + BINDINGS and listing["one_names"] == 1  # one binding per user
    vault = scale(measured, 1_000_000)["vault"]
    # The audit device elides LIST responses (deploy/stack/bao.py): a LIST of every user costs what a LIST of one
    # name does, give or take its path, so a sweep's LISTs grow with its pages, not with pages × users.
    assert abs(listing["audit_bytes"] - listing["one_name_audit_bytes"]) < 200
    assert vault["audit_list_bytes_per_user"] < 10
    page = VaultWriterSettings.model_fields["sweep_page_size"].default
    per_page = vault["audit_list_fixed_bytes"] + vault["audit_list_bytes_per_user"] * 1_000_000
    expected = (1_000_000 // page + 1) * per_page
    assert vault["audit_listing_per_sweep_at_target_bytes"] == pytest.approx(expected, rel=0.01)


def test_intake_memory_is_scaled_only_up_to_its_replay_bound(measured: dict[str, Any]) -> None:
    grown = copy.deepcopy(measured)
    halfway, bound, swept = grown["halfway"], grown["snapshots"]["bound"], grown["snapshots"]["swept"]
    assert 0 < halfway["bindings"] < BINDINGS
    # 1,000 bytes more per binding over the second half of the bindings.
    bound["rss_bytes"]["intake"] = halfway["rss_bytes"]["intake"] + 1_000 * (BINDINGS - halfway["bindings"])
    replay_bound = IntakeSettings.model_fields["intake_replay_memory_max_requests"].default
    intake = scale(grown, 10 * replay_bound)["memory"]["intake"]
    assert intake["at_target_bytes"] == swept["rss_bytes"]["intake"] + 1_000 * (replay_bound - BINDINGS)
