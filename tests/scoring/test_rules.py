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
                          {"high_potential_growth": "learned in training"})
    assert lines == ["high_potential: marks 4 of the 5 accounts (80%) at growth_potential "
                     ">= 0.050 (learned in training): too many to call; work them by "
                     "growth_potential, highest first"]
    lines = crowded_flags(apply_flags(rising, grow, Tiers()), grow,
                          {"high_potential_growth": "expected precision"})
    assert "(set for an expected precision of 0.5 among the valuable)" in lines[0]
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

    # Scores far below either target: no threshold is set on these accounts.
    unlikely = pd.DataFrame({"predicted_value": [200.0, 100.0], "trailing_value": [100.0, 50.0],
                             "decline_risk": [0.1, 0.1], "growth_potential": [0.1, 0.1]})
    bundle = SimpleNamespace(flag_thresholds={"at_risk_decline": 0.2, "high_potential_growth": 0.7})
    flags, sources = scoring_flags(bundle, Config(), unlikely)
    assert (flags.at_risk_decline, flags.high_potential_growth) == (0.2, 0.7)
    assert set(sources.values()) == {"learned in training"}
    fixed = Config(flags={"at_risk_precision": None, "at_risk_decline": 0.4})
    flags, sources = scoring_flags(bundle, fixed, unlikely)
    assert (flags.at_risk_decline, sources["at_risk_decline"]) == (0.4, "the config")
    older = scoring_flags(SimpleNamespace(), Config(), unlikely)[0]  # bundles without thresholds
    assert older.at_risk_decline == 0.5


def test_a_threshold_learned_for_another_precision_target_is_passed_over_and_said():
    from types import SimpleNamespace

    from keyltv.config import Config
    from keyltv.scoring.score import scoring_flags
    from keyltv.workflows.score_job import unused_learned_thresholds

    unlikely = pd.DataFrame({"predicted_value": [200.0, 100.0], "trailing_value": [100.0, 50.0],
                             "decline_risk": [0.1, 0.1], "growth_potential": [0.1, 0.1]})
    # Learned for precision 0.5 (the default targets); audit 29 scored with 0.7, and the
    # 0.5 threshold flagged five times as many accounts as the 0.5 target's own list.
    bundle = SimpleNamespace(flag_thresholds={"at_risk_decline": 0.2, "high_potential_growth": 0.3},
                             flag_targets={"at_risk_decline": 0.6, "high_potential_growth": 0.5})
    stricter = Config(flags={"high_potential_precision": 0.7})
    flags, sources = scoring_flags(bundle, stricter, unlikely)
    assert (flags.high_potential_growth, sources["high_potential_growth"]) == (0.5, "the config")
    assert (flags.at_risk_decline, sources["at_risk_decline"]) == (0.2, "learned in training")
    said = unused_learned_thresholds(bundle, stricter, sources)
    assert said == ["high_potential: no threshold on the accounts scored reaches precision 0.7, "
                    "and the model's learned threshold was for precision 0.5: the config's "
                    "high_potential_growth 0.5 is used"]
    assert scoring_flags(bundle, Config(), unlikely)[0].high_potential_growth == 0.3
    assert unused_learned_thresholds(bundle, Config(), sources) == []


def test_wilson_lower_bound():
    from keyltv.scoring.rules import wilson_lower_bound

    bound = wilson_lower_bound(np.array([0.5, 0.5, 1.0]), np.array([100, 10_000, 5]))
    assert bound[0] == pytest.approx(0.4188, abs=1e-3)
    assert bound[1] == pytest.approx(0.4918, abs=1e-3)  # more trials, a tighter bound
    assert bound[2] == pytest.approx(0.6490, abs=1e-3)  # 5 of 5 is not certainty


def test_threshold_flags_the_largest_group_whose_expected_precision_is_sure_enough():
    from keyltv.scoring.rules import lowest_reaching_threshold, wilson_lower_bound

    # 100 accounts at 0.9, then 100 at 0.3 (scores read as chances), then 200 at 0.05.
    chance = np.repeat([0.9, 0.3, 0.05], [100, 100, 200])
    threshold = lowest_reaching_threshold(chance, chance, 0.5)
    # Flagging the 0.3 group too: mean 0.6 over 200 accounts, lower bound above 0.5;
    # the 0.05 group would bring it to 0.325.
    assert wilson_lower_bound(np.array([0.6]), np.array([200]))[0] > 0.5
    assert threshold == 0.3
    # A tie is flagged whole: 250 accounts at one score, half of them likely.
    tied = np.full(250, 0.4)
    assert lowest_reaching_threshold(tied, np.repeat([0.9, 0.1], 125), 0.6) is None
    assert lowest_reaching_threshold(chance, chance, 0.95) is None  # nobody that sure
    assert lowest_reaching_threshold(np.array([]), np.array([]), 0.5) is None


def test_no_threshold_is_set_where_nearly_every_account_would_be_flagged():
    from keyltv.scoring.rules import lowest_reaching_threshold

    # A common event: even the least likely tenth still keeps the group above 0.6.
    chance = np.linspace(0.95, 0.7, 100)
    assert lowest_reaching_threshold(chance, chance, 0.6) is None
    assert lowest_reaching_threshold(chance[:89], chance[:89], 0.6) is None
    chance = np.r_[np.linspace(0.95, 0.7, 100), np.full(100, 0.01)]
    assert lowest_reaching_threshold(chance, chance, 0.6) == pytest.approx(0.7)


def test_expected_precision_thresholds_count_only_the_accounts_a_rule_could_flag():
    from keyltv.scoring.rules import expected_precision_thresholds, resolve_thresholds

    n = 400
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "trailing_value": np.r_[np.full(100, 100.0), np.full(300, 1.0)],
        "growth_potential": np.r_[np.full(50, 0.8), np.full(50, 0.2), rng.uniform(0, 1, 300)],
        "decline_risk": np.r_[np.full(60, 0.9), np.full(40, 0.05), np.zeros(300)],
    }, index=[f"{i:03d}" for i in range(n)])
    # The 100 valuable accounts (top quarter by value), all predicted to grow.
    frame["predicted_value"] = frame["trailing_value"] * 1.5
    flags = Flags(valuable_share=0.25)
    found = expected_precision_thresholds(frame, flags)
    # Growth: the 0.8 half of the valuable is sure enough (the 0.2 half brings the mean
    # to 0.5, below the target with confidence); the other 300 accounts are not counted,
    # whatever their scores.
    assert found["high_potential_growth"] == 0.8
    assert found["at_risk_decline"] == 0.9
    resolved, sources = resolve_thresholds(flags, {"high_potential_growth": 0.1}, frame)
    assert resolved.high_potential_growth == 0.8 and sources["high_potential_growth"] == (
        "expected precision")
    # Valuable accounts predicted below their trailing value cannot be high potential.
    frame["predicted_value"] = frame["trailing_value"] * 0.9
    assert "high_potential_growth" not in expected_precision_thresholds(frame, flags)
    resolved, sources = resolve_thresholds(flags, {"high_potential_growth": 0.1}, frame)
    assert (resolved.high_potential_growth, sources["high_potential_growth"]) == (
        0.1, "learned in training")


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
