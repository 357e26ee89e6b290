import re

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from keyltv.config import Flags, Tiers
from keyltv.data.schema import InputError
from keyltv.evaluation.plots import plot_pareto
from keyltv.scoring.report import render_report, write_report
from keyltv.scoring.rules import apply_flags, tier_migrations

EVIL_ID = "<b>00042</b>"


def score_table(**extra_columns) -> pd.DataFrame:
    """Five accounts through the real rules, then the run-level columns score_accounts adds."""
    outputs = pd.DataFrame(
        {
            "predicted_value": [100.0, 90.0, 5.0, 1.0, 0.0],
            "predicted_value_low": [60.0, 50.0, 1.0, 0.0, 0.0],
            "predicted_value_high": [150.0, 140.0, 9.0, 3.0, 0.0],
            "predicted_orders": [4.0, 3.0, 1.0, 0.2, 0.0],
            "p_alive": [0.9, 0.5, 0.9, 0.8, 0.1],
            "trailing_value": [100.0, 120.0, 1.0, 3.0, 0.0],
            "decline_risk": [0.1, 0.8, 0.1, 0.9, 0.0],
            "growth_potential": [0.2, 0.1, 0.9, 0.1, 0.1],
            **extra_columns,
        },
        index=pd.Index([EVIL_ID, "00007", "00003", "00011", "00012"], name="customer_id"),
    )
    scores = apply_flags(outputs, Flags(valuable_share=0.4), Tiers())
    scores["as_of"] = "2024-06-01"
    scores["horizon_days"] = 365
    scores["model_version"] = "keyltv/3"
    return scores.reset_index()


@pytest.fixture(scope="module")
def page() -> str:
    return render_report(score_table(), title="Book <review>", notes={"return_lines": 12})


def test_sections_and_summary(page):
    for heading in ("Summary", "Value concentration", "Tiers and segments", "Top key accounts",
                    "At-risk accounts", "High-potential accounts", "Input notes"):
        assert f"<h2>{heading}</h2>" in page
    assert "2024-06-01" in page and "keyltv/3" in page
    assert "<td>total predicted value</td><td class=\"num\">196.00</td>" in page
    assert "<td>return_lines</td><td class=\"num\">12</td>" in page


def test_plots_are_embedded_and_nothing_is_fetched(page):
    assert page.count('<img alt="plot" src="data:image/png;base64,') == 3
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page


def test_user_strings_are_escaped(page):
    assert EVIL_ID not in page
    assert "&lt;b&gt;00042&lt;/b&gt;" in page
    assert "<title>Book &lt;review&gt;</title>" in page


def test_rendering_leaves_no_open_figure(page):
    assert plt.get_fignums() == []


def test_optional_sections_appear_only_with_their_columns(page):
    assert "Low-margin valuable accounts" not in page and "Tier migrations" not in page
    scores = score_table(predicted_profit=[30.0, 2.0, 1.0, 0.1, 0.0])
    migrations = tier_migrations(scores.set_index("customer_id")["tier"],
                                 pd.Series({EVIL_ID: "B", "00007": "A", "00099": "A"}))
    scores = scores.join(migrations, on="customer_id")
    scores["reasons"] = ["", "orders slowing; <no> margin", "", "", ""]
    html = render_report(scores, title="t")
    assert "<h2>Low-margin valuable accounts (false key accounts)</h2>" in html
    assert "<h2>Tier migrations</h2>" in html
    assert "total predicted profit" in html
    assert "up: 1, down: 1, same: 0, new: 3" in html
    assert "orders slowing; &lt;no&gt; margin" in html
    assert "not scored now" not in html
    # Accounts of the earlier file that are gone: a column, so each row adds up.
    gone = render_report(scores, title="t", previous_not_scored={"A": 2, "D": 1})
    rows = re.findall(r"<tr><td>(\w+)</td>(?:<td[^>]*>\d+</td>){4}<td[^>]*>(\d+)</td></tr>",
                      gone[gone.index("<h2>Tier migrations</h2>"):])
    assert "<th>not scored now</th>" in gone
    assert dict(rows) == {"A": "2", "B": "0", "D": "1", "new": "0"}


def test_with_margins_the_key_list_and_pareto_curve_follow_profit_as_the_tiers_do():
    # Audit 29: tier A was chosen by profit, but the list showed it by value (10 of 25
    # shown were thin-margin accounts) and the curve's top 20% was by value.
    scores = score_table(predicted_profit=[5.0, 40.0, 1.0, 0.1, 0.0])
    scores = apply_flags(scores.set_index("customer_id"), Flags(valuable_share=0.4),
                         Tiers(shares=(0.4, 0.3, 0.2))).reset_index()
    html = render_report(scores, title="t")
    key = html[html.index("<h2>Top key accounts</h2>"):html.index("<h2>At-risk accounts</h2>")]
    assert "Tier A, by predicted profit." in key
    assert key.index("00007") < key.index("&lt;b&gt;00042")  # profit 40 before profit 5
    by_value = render_report(score_table(), title="t")
    assert "Tier A, by predicted value." in by_value
    assert "<h2>Profit concentration</h2>" in html and "Accounts sorted by predicted profit" in html
    ax = plot_pareto(scores["predicted_profit"], quantity="profit")
    assert ax.lines[0].get_label() == "top 20% of accounts hold 87% of profit"
    assert ax.get_ylabel() == "cumulative share of profit"
    plt.close(ax.figure)


def test_missing_required_column_is_named():
    with pytest.raises(ValueError, match="column 'segment' is missing"):
        render_report(score_table().drop(columns="segment"), title="t")


def test_an_empty_book_still_renders():
    html = render_report(score_table().iloc[0:0], title="empty")
    assert "<h2>Top key accounts</h2>" in html and "0 account(s)." in html


def test_write_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "report.html"
    path.write_text("old", encoding="utf-8")
    assert write_report("<p>é</p>", path) == path
    assert path.read_text(encoding="utf-8") == "<p>é</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_write_into_a_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="No such file or directory"):
        write_report("x", tmp_path / "nope" / "report.html")


def test_flag_lists_say_where_their_thresholds_came_from(page):
    assert "Flagged at" not in page  # no thresholds given: nothing said
    html = render_report(score_table(), title="t", thresholds={
        "at_risk_decline": (0.5, "the config"),
        "high_potential_growth": (0.32719, "expected precision")})
    assert "Flagged at decline_risk &gt;= 0.500 (the config)." in html
    assert "Flagged at growth_potential &gt;= 0.327 (expected precision)." in html
