import duckdb
import pytest

from keyltv.data.schema import NumberFormat, describe_value, redact_text, redact_uri


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://bob:hunter2@mlflow.example.com/x?token=abc&run=1",
         "https://bob:***@mlflow.example.com/x?token=***&run=1"),
        ("https://abc123@mlflow.example.com", "https://***@mlflow.example.com"),
        ("sqlite:////tmp/keyltv/mlflow.db", "sqlite:////tmp/keyltv/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("databricks", "databricks"),
    ],
    ids=["password-and-token", "bare-token", "sqlite", "local-server", "profile"],
)
def test_redact_uri_masks_secrets_and_keeps_everything_else(uri, shown):
    assert redact_uri(uri) == shown


def test_redact_text_masks_passwords_inside_messages():
    message = "request to http://bob:hunter2@host:5000/api failed"
    assert redact_text(message) == "request to http://bob:***@host:5000/api failed"


def test_describe_value_shortens_and_shows_control_bytes():
    assert describe_value("a\tb") == "'a\\tb'"
    assert len(describe_value("x" * 100)) == 40


@pytest.mark.parametrize(
    ("decimal", "thousands", "text", "value"),
    [
        (",", ".", "1.234,5", 1234.5),
        (",", ".", "-1.234.567,25", -1234567.25),
        (",", ".", "1.234", 1234.0),  # a point groups thousands here
        (",", ".", "1.5", None),  # not three digits after the point: refused
        (",", ".", "1.23.4", None),
        (",", ".", "1234.5", None),
        (",", None, "12,5", 12.5),
        (",", None, "1.234,5", None),  # no thousands separator configured
        (".", ",", "1,234.50", 1234.5),
        (".", ",", "12,5", None),
        (",", " ", "1\u00a0234,5", 1234.5),  # the no-break space spreadsheets write
        (".", "'", "1'234.5", 1234.5),
        (".", None, "1,234.5", None),  # the default: plain numbers only
        (".", None, "-1234.5", -1234.5),
    ],
)
def test_number_format_reads_its_form_and_refuses_ambiguous_text(decimal, thousands, text, value):
    sql = NumberFormat(decimal, thousands).sql("v")
    got = duckdb.connect().execute(f"SELECT {sql} FROM (SELECT ? AS v)", [text]).fetchall()[0][0]
    assert got == value


def test_number_format_refuses_equal_or_unknown_separators():
    with pytest.raises(ValueError, match="both ','"):
        NumberFormat(",", ",")
    with pytest.raises(ValueError, match="decimal separator ';'"):
        NumberFormat(";")
    assert "-1.234,5" in NumberFormat(",", ".").hint()


def test_as_date_reads_what_a_notebook_passes():
    import datetime as dt

    import numpy as np
    import pandas as pd

    from keyltv.data.schema import InputError, as_date, as_horizon

    day = dt.date(2024, 1, 2)
    for value in ("2024-01-02", day, dt.datetime(2024, 1, 2, 9), pd.Timestamp("2024-01-02 15:30"),
                  np.datetime64("2024-01-02T10:00:00.123456789")):
        assert as_date(value) == day
    for value in ("2024/01/02", "2024-1-2", None, 5, pd.NaT, np.datetime64("NaT")):
        with pytest.raises(InputError, match="as_of .*: expected a date such as 2024-07-01"):
            as_date(value)
    with pytest.raises(InputError, match="cutoff 2024-01-02 00:00:00\\+00:00: time-zone-aware"):
        as_date(pd.Timestamp("2024-01-02", tz="UTC"), "cutoff")
    assert as_horizon(np.int64(30)) == 30
    for value in ("365", 0, -1, 1.5, True):
        with pytest.raises(InputError, match="expected a whole number of days, at least 1"):
            as_horizon(value)
