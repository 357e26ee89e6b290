import numpy as np
import pandas as pd
import pytest

from keyltv.config import Flags, Tiers
from keyltv.scoring.rules import (
    apply_flags,
    assign_tiers,
    crowded_flags,
    silent_flags,
    tier_migrations,
)

IDS = pd.Index([f"{i:03d}" for i in range(10)])


def test_tiers_by_share_of_accounts_follow_the_pyramid():
    value = pd.Series(np.arange(10, 0, -1, dtype=float), index=IDS)
    assert assign_tiers(value, Tiers()).tolist() == list("AABBBCCCDD")


def test_the_top_account_is_always_in_tier_a():
    assert assign_tiers(pd.Series([5.0], index=["x"]), Tiers()).tolist() == ["A"]
    assert assign_tiers(pd.Series([5.0, 1.0], index=["x", "y"]), Tiers()).tolist() == ["A", "C"]


def test_tiers_by_cumulative_value():
    value = pd.Series([80.0, 10.0, 5.0, 4.0, 1.0] + [0.0] * 5, index=IDS)
    tiers = assign_tiers(value, Tiers(method="cumulative_value", value_cuts=(0.8, 0.95, 0.99)))
    assert tiers.tolist() == list("ABBCD") + ["D"] * 5


def test_tie_order_is_stable_by_id():
    value = pd.Series(np.ones(10), index=IDS[::-1])
    assert assign_tiers(value, Tiers()).loc[["000", "001", "009"]].tolist() == ["A", "A", "D"]


def scores(**overrides):
    base = {
        "predicted_value": [100.0, 90.0, 5.0, 1.0, 0.0],
        "trailing_value": [100.0, 120.0, 1.0, 3.0, 0.0],
        "decline_risk": [0.1, 0.8, 0.1, 0.9, 0.0],
        "growth_potential": [0.2, 0.1, 0.9, 0.1, 0.1],
        "p_alive": [0.9, 0.5, 0.9, 0.8, 0.1],
    }
    base.update(overrides)
    return pd.DataFrame(base, index=IDS[:5])


def test_flags_and_segments():
    out = apply_flags(scores(), Flags(valuable_share=0.4), Tiers())
    assert out["tier"].tolist() == ["A", "B", "B", "C", "D"]
    assert out["at_risk"].tolist() == [False, True, False, False, False]
    assert out["high_potential"].tolist() == [False, False, True, False, False]
    assert out["segment"].tolist() == ["key", "at_risk", "growing", "cultivate", "sleeping"]
    assert "low_margin_key" not in out


def test_a_key_account_that_has_probably_left_is_sleeping():
    out = apply_flags(scores(p_alive=[0.05, 0.5, 0.9, 0.8, 0.1]), Flags(valuable_share=0.4),
                      Tiers())
    assert out["key_account"].iloc[0]
    assert out["segment"].tolist() == ["sleeping", "at_risk", "growing", "cultivate", "sleeping"]


def test_low_margin_key_needs_profit():
    out = apply_flags(scores(predicted_profit=[30.0, 2.0, 1.0, 0.1, 0.0]),
                      Flags(valuable_share=0.4), Tiers())
    assert out["low_margin_key"].tolist() == [False, True, False, False, False]
    assert out["tier"].iloc[0] == "A"


def test_a_flag_that_marks_nobody_says_why():
    flags = Flags(valuable_share=0.4)
    assert silent_flags(apply_flags(scores(), flags, Tiers()), flags) == []
    # A threshold above every valuable account's score (a learned one, say).
    high = flags.model_copy(update={"at_risk_decline": 0.95})
    assert silent_flags(apply_flags(scores(), high, Tiers()), high) == [
        "at_risk: no valuable account reached decline_risk >= 0.950 (the highest is 0.800), "
        "so none is flagged"]
    # High potential also needs a rise: the likely grower is predicted below its trailing value.
    flat = scores(trailing_value=[100.0, 50.0, 300.0, 5.0, 0.0])
    assert silent_flags(apply_flags(flat, flags, Tiers()), flags)[-1] == (
        "high_potential: the accounts with growth_potential >= "
        f"{flags.high_potential_growth:.3f} are not predicted above their trailing value, "
        "so none is flagged")
    assert silent_flags(apply_flags(scores().head(0), flags, Tiers()), flags) == []
    # A threshold just above the highest score is printed with the digits that tell them apart.
    close = flags.model_copy(update={"at_risk_decline": 0.80004})
    assert silent_flags(apply_flags(scores(), close, Tiers()), close)[0].startswith(
        "at_risk: no valuable account reached decline_risk >= 0.80004 (the highest is 0.80000)")


def test_a_flag_that_marks_most_of_its_accounts_says_so():
    flags = Flags(valuable_share=0.4)
    assert crowded_flags(apply_flags(scores(), flags, Tiers()), flags) == []
    low = flags.model_copy(update={"at_risk_decline": 0.05})  # both valuable accounts
    assert crowded_flags(apply_flags(scores(), low, Tiers()), low) == [
        "at_risk: marks 2 of the 2 valuable accounts (100%) at decline_risk >= 0.050 "
        "(flags.at_risk_decline in the config): too many to call; work them by "
        "decline_risk, highest first"]
    grow = flags.model_copy(update={"high_potential_growth": 0.05})
    rising = scores(trailing_value=[1.0, 1.0, 1.0, 0.0, 0.0], predicted_value=[9.0, 9.0, 9.0, 1.0, 0.0])
    lines = crowded_flags(apply_flags(rising, grow, Tiers()), grow,
                          frozenset({"high_potential_growth"}))
    assert lines == ["high_potential: marks 4 of the 5 accounts (80%) at growth_potential "
                     ">= 0.050 (learned in training): too many to call; work them by "
                     "growth_potential, highest first"]
    assert crowded_flags(apply_flags(scores().head(0), flags, Tiers()), flags) == []


def test_migrations():
    current = pd.Series(["A", "C", "B"], index=["x", "y", "z"])
    previous = pd.Series(["B", "A", "D"], index=["x", "y", "w"])
    out = tier_migrations(current, previous)
    assert out["tier_change"].tolist() == ["up", "down", "new"]
    assert out["previous_tier"].tolist()[:2] == ["B", "A"]


def test_config_rejects_bad_shares():
    with pytest.raises(ValueError, match="sum below 1"):
        Tiers(shares=(0.5, 0.3, 0.3))


def test_scoring_uses_learned_thresholds_only_while_their_target_is_set():
    from types import SimpleNamespace

    from keyltv.config import Config
    from keyltv.scoring.score import scoring_flags

    bundle = SimpleNamespace(flag_thresholds={"at_risk_decline": 0.2, "high_potential_growth": 0.7})
    flags = scoring_flags(bundle, Config())
    assert (flags.at_risk_decline, flags.high_potential_growth) == (0.2, 0.7)
    fixed = Config(flags={"at_risk_precision": None, "at_risk_decline": 0.4})
    assert scoring_flags(bundle, fixed).at_risk_decline == 0.4
    assert scoring_flags(SimpleNamespace(), Config()).at_risk_decline == 0.5  # older bundles


def test_an_account_that_barely_moved_near_a_cut_stays_in_its_earlier_tier():
    # Shares 20/30/30/20 of ten accounts: A = 000-001, B = 002-004, C = 005-007, D = 008-009;
    # cuts A/B (90 + 50) / 2 = 70, B/C (40 + 39) / 2 = 39.5, C/D (19 + 18.5) / 2 = 18.75.
    value = pd.Series([100, 90, 50, 45, 40, 39, 20, 19, 18.5, 10], index=IDS, dtype=float)
    assert assign_tiers(value, Tiers()).tolist() == list("AABBBCCCDD")
    previous = pd.Series(list("ABBBBBCDCD"), index=IDS)
    earlier = value.copy()
    earlier["001"] = 60.0  # a real rise across the A/B cut
    # 001 moves up; 005, 007 and 008 lie within 5% of their cuts, barely moved, and stay.
    assert assign_tiers(value, Tiers(), previous, earlier).tolist() == list("AABBBBCDCD")
    assert assign_tiers(value, Tiers(hysteresis=0.0), previous, earlier).tolist() == \
        list("AABBBCCCDD")
    assert assign_tiers(value, Tiers(), previous).tolist() == list("AABBBCCCDD")  # no values
    # Near the cut but fallen from 60 (35%, more than MAX_HELD_CHANGE): a move.
    fell = earlier.copy()
    fell["005"] = 60.0
    assert assign_tiers(value, Tiers(), previous, fell)["005"] == "C"
    # Two tiers at once is a move, however near the cut.
    far = previous.copy()
    far["005"] = "A"
    assert assign_tiers(value, Tiers(), far, earlier)["005"] == "C"
    # 1% of the cuts (0.395, 0.1875) is nearer than 005, 007 and 008 lie: all move.
    assert assign_tiers(value, Tiers(hysteresis=0.01), previous, earlier).tolist() == \
        list("AABBBCCCDD")
