from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keyltv.data.accounts import load_accounts
from keyltv.data.schema import InputError
from keyltv.data.transactions import load_transactions
from tests.conftest import frame, write_csv


def test_daily_table_nets_returns_and_keeps_ids_as_strings(tiny_log):
    daily = tiny_log.daily()
    expected = pd.DataFrame(
        {
            "customer_id": ["00003", "00042", "00042", "00042", "7", "7"],
            "day": pd.to_datetime(["2024-03-05", "2024-01-01", "2024-01-11", "2024-02-10",
                                   "2024-01-05", "2024-01-20"]),
            "amount": [10.0, 80.0, 50.0, 30.0, 40.0, -40.0],
            "returns": [0.0, -20.0, 0.0, 0.0, 0.0, -40.0],
            "lines": [1, 2, 1, 1, 1, 1],
        }
    )
    got = daily[expected.columns].reset_index(drop=True)
    got["day"] = pd.to_datetime(got["day"])
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert tiny_log.notes["return_lines"] == 2
    assert (tiny_log.n_lines, tiny_log.n_accounts) == (7, 3)
    assert (tiny_log.first_date, tiny_log.last_date) == (date(2024, 1, 1), date(2024, 3, 5))


def test_csv_keeps_leading_zeros_and_maps_columns(tmp_path):
    path = write_csv(tmp_path, "Kunde;Datum;Umsatz\n00042;05.01.2024;12,5\n")
    with pytest.raises(InputError, match="'Umsatz': not a number '12,5'"):
        load_transactions(path, columns={"customer_id": "Kunde", "date": "Datum",
                                         "amount": "Umsatz"}, date_format="%d.%m.%Y")
    path = write_csv(tmp_path, "Kunde,Datum,Umsatz\n00042,05.01.2024,12.5\n")
    log = load_transactions(path, columns={"customer_id": "Kunde", "date": "Datum",
                                           "amount": "Umsatz"}, date_format="%d.%m.%Y")
    assert log.daily()["customer_id"].tolist() == ["00042"]
    assert log.first_date == date(2024, 1, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customer_id,date\n1,2024-01-01\n",
         r"column 'amount' is missing; found columns: 'customer_id', 'date'"),
        ("customer_id,date,amount\n", "no transaction rows"),
        ("customer_id,date,amount\n1,2024-01-01,abc\n",
         r"column 'amount': not a number 'abc' in 1 row"),
        ("customer_id,date,amount\n1,2024-13-01,5\n",
         r"column 'date': cannot parse date '2024-13-01'"),
        ("customer_id,date,amount\n1,2024-01-01,5\n2,01/02/2024,5\n",
         r"cannot parse date '01/02/2024'"),
        ("customer_id,date,amount\n1,2024-01-01T10:00:00+02:00,5\n", "time-zone-aware date"),
        ("customer_id,date,amount\n ,2024-01-01,5\n", "column 'customer_id': blank customer id"),
        ("customer_id,date,amount\n1,2024-01-01,inf\n", "not a finite number 'inf'"),
        ("customer_id,date,amount\n1,1024-01-01,5\n", "implausible date"),
    ],
    ids=["missing-column", "header-only", "bad-amount", "bad-date", "mixed-date-formats",
         "tz-aware", "blank-id", "infinite", "implausible-year"],
)
def test_bad_csv_names_file_column_and_value(tmp_path, text, message):
    path = write_csv(tmp_path, text)
    with pytest.raises(InputError, match=message) as info:
        load_transactions(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("day", "ok"), [("1899-12-31 23:59:59", False), ("1900-01-01", True),
                                         ("2200-12-31 23:59:59", True), ("2201-01-01", False)])
def test_plausible_years_are_1900_to_2200_inclusive(tmp_path, day, ok):
    path = write_csv(tmp_path, f"customer_id,date,amount\n1,2024-01-01,5\n2,{day},5\n")
    if ok:
        assert load_transactions(path).n_lines == 2
    else:
        with pytest.raises(InputError, match=f"implausible date '{day}' in 1 row"):
            load_transactions(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.csv", "file not found"),
        (lambda p: p, "the folder holds no CSV or Parquet file"),
        (lambda p: (p / "x.xlsx").write_text("x") and p / "x.xlsx",
         "unsupported file type '.xlsx'"),
        (lambda p: (p / "e.csv").write_text("") or p / "e.csv", "file is empty"),
        (lambda p: (p / "b.csv").write_bytes(b"customer_id,date,amount\n\xff\xfe,2024-01-01,1\n")
         and p / "b.csv", "not UTF-8"),
    ],
    ids=["missing", "directory", "extension", "empty", "not-utf8"],
)
def test_bad_paths(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        load_transactions(make(tmp_path))


def test_partitioned_aggregation_gives_the_same_daily_table(monkeypatch):
    # Several partitions (forced here with a tiny size) must give the table, notes and
    # fingerprint of one: every account-day and every duplicate falls in one partition.
    rows = [(f"c{i % 7}", f"2024-01-{1 + i % 5:02d}", float(i % 4 - 1)) for i in range(60)]
    rows += [("c1", "2024-01-02", 5.0)] * 3 + [("c2", "2024-01-09", 7.5)] * 2
    one = load_transactions(frame(rows))
    monkeypatch.setattr("keyltv.data.lines.LINES_PER_PARTITION", 4)
    many = load_transactions(frame(rows))
    pd.testing.assert_frame_equal(many.daily(), one.daily())
    assert many.notes == one.notes and many.notes["duplicate_lines"] > 0
    assert many.fingerprint == one.fingerprint


def test_duplicate_lines_are_counted_and_kept():
    log = load_transactions(frame([("a", "2024-01-01", 5.0)] * 3 + [("b", "2024-01-02", 1.0)]))
    assert log.notes["duplicate_lines"] == 2
    assert log.daily()["amount"].tolist() == [15.0, 1.0]


def test_lines_are_duplicates_when_their_values_are_however_written(tmp_path):
    path = write_csv(tmp_path, "customer_id,date,amount\na,2024-01-01,10\n"
                               "a,2024-01-01 00:00:00,10.00\n a ,2024-01-01, 1e1\n"
                               "a,2024-01-01,10.01\na,2024-01-02,10\n")
    assert load_transactions(path).notes["duplicate_lines"] == 2


# Whitespace that loading strips, at either edge: space, tab, line break, form feed,
# no-break space, byte-order mark. A line break at the edge of a value needs quotes.
PADS = [(" ", ""), ("", "\t"), ("\u00a0", ""), ("\ufeff", " "), ("", "\r\n"), ("\f", "\u00a0")]


def padded_log(tmp_path, column: str | None, date_format: bool = False):
    """A small log as CSV text; with ``column``, every value in it padded with PADS."""
    rows = [("007", "2024-01-05", "12.5", "3"), ("007", "2024-01-05 10:30:00", "-2.5", ""),
            ("A-1", "2024-02-29", "100", "40.25"), ("x y", "2024-03-01T08:00:00", "0", "0")]
    columns = ("customer_id", "date", "amount", "margin")
    lines = ["customer_id,date,amount,margin"]
    for k, row in enumerate(rows):
        cells = list(row)
        if date_format:
            cells[1] = date.fromisoformat(cells[1][:10]).strftime("%d.%m.%Y")
        if column is not None:
            left, right = PADS[k % len(PADS)]
            i = columns.index(column)
            cells[i] = '"' + left + cells[i] + right + '"'
        lines.append(",".join(cells))
    return write_csv(tmp_path, "\n".join(lines) + "\n", f"{column}-{date_format}.csv")


@pytest.mark.parametrize("date_format", [False, True], ids=["iso", "date_format"])
@pytest.mark.parametrize("column", ["customer_id", "date", "amount", "margin"])
def test_padded_values_load_exactly_as_the_clean_log(tmp_path, column, date_format):
    fmt = "%d.%m.%Y" if date_format else None
    clean = load_transactions(padded_log(tmp_path, None, date_format), date_format=fmt)
    padded = load_transactions(padded_log(tmp_path, column, date_format), date_format=fmt)
    pd.testing.assert_frame_equal(padded.daily(), clean.daily())
    # Stripping ids merges ' 007 ' and '007\t': counted as the accounts they become (3).
    stripped = padded.notes.pop("ids_stripped_of_whitespace", 0)
    assert stripped == (3 if column == "customer_id" else 0)
    same = {"source": "", "source_path": ""}  # two files: only their names differ
    assert padded.summary() | same == clean.summary() | same


# Invisible characters that pasted or exported values carry at an edge: zero-width
# space, word joiner, soft hyphen, left-to-right mark, narrow no-break space.
INVISIBLE = ["\u200b", "\u2060", "\u00ad", "\u200e", "\u202f"]


@pytest.mark.parametrize("pad", INVISIBLE, ids=["zwsp", "word-joiner", "soft-hyphen", "lrm",
                                                "narrow-nbsp"])
def test_invisible_characters_at_an_edge_are_stripped_and_the_ids_counted(tmp_path, pad):
    clean = "customer_id,date,amount\n007,2024-01-05,12.5\n007,2024-02-01,3\nA-1,2024-02-29,1\n"
    padded = (f"customer_id,date,amount\n007{pad},2024-01-05,12.5\n007,2024-02-01{pad},{pad}3\n"
              f"{pad}A-1,2024-02-29,1\n")
    log = load_transactions(write_csv(tmp_path, padded, "padded.csv"))
    expected = load_transactions(write_csv(tmp_path, clean, "clean.csv"))
    pd.testing.assert_frame_equal(log.daily(), expected.daily())
    assert log.notes["ids_stripped_of_whitespace"] == 2  # '007' + pad and pad + 'A-1'
    assert log.n_accounts == 2


@pytest.mark.parametrize("stamp", ["2024-01-31 10:00:00+02:00 ", "2024-01-31 10:00Z\t",
                                   "\u00a02024-01-31 10:00 UTC"])
def test_padded_time_zone_aware_date_is_refused(tmp_path, stamp):
    path = write_csv(tmp_path, f'customer_id,date,amount\na,2024-01-01,1\na,"{stamp}",2\n')
    with pytest.raises(InputError, match="column 'date': time-zone-aware date"):
        load_transactions(path)


def test_margin_is_optional_and_read_when_present():
    rows = [("a", "2024-01-01", 100.0, 30.0), ("a", "2024-01-03", -10.0, -3.0)]
    log = load_transactions(frame(rows, ("customer_id", "date", "amount", "margin")))
    assert log.has_margin
    assert log.daily()["margin"].tolist() == [30.0, -3.0]
    assert not load_transactions(frame([("a", "2024-01-01", 1.0)])).has_margin


def test_parquet_round_trip(tmp_path, tiny_rows):
    path = tmp_path / "tx.parquet"
    frame(tiny_rows).to_parquet(path)
    assert load_transactions(path).fingerprint == load_transactions(frame(tiny_rows)).fingerprint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customer_id,date,amount\n1,2024-01-01,5\n2,2024-01-02,5,7\n",
         r"cannot read line 3: expected 3 fields, found 4 in '2,2024-01-02,5,7'"),
        ('customer_id,date,amount\n1,2024-01-01,"5\n2,2024-01-02,5\n',
         "cannot read line 2: a quoted value is not closed"),
        ("customer_id,date,amount,amount\n1,2024-01-01,5,6\n",
         "column 'amount' appears more than once in the header"),
        ("\ncustomer_id,date,amount\n1,2024-01-01,5\n", "line 1 is empty"),
        ("Customer ID,date,amount\n1,2024-01-01,5\n",
         r"column 'customer_id' is missing \(did you mean 'Customer ID'\?\)"),
        ("customer_id,date,amount\n1,2024-01-01,1e300\n",
         "implausible amount '1e300' in 1 row"),
        ("customer_id,date,amount,margin\n1,2024-01-01,5,x\n", "column 'margin': not a number 'x'"),
    ],
    ids=["ragged-row", "unclosed-quote", "duplicated-column", "blank-first-line", "near-miss",
         "absurd-amount", "bad-margin"],
)
def test_malformed_csv_is_refused_with_the_line_or_column(tmp_path, text, message):
    path = write_csv(tmp_path, text)
    with pytest.raises(InputError, match=message) as info:
        load_transactions(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_non_utf8_byte_late_in_the_file_names_its_line(tmp_path):
    path = tmp_path / "tx.csv"
    rows = "".join(f"{i:05d},2024-01-01,5\n" for i in range(5000))
    path.write_bytes(b"customer_id,date,amount\n" + rows.encode() + b"M\xfcller,2024-01-02,5\n")
    with pytest.raises(InputError, match="cannot read line 5002: bytes that are not UTF-8"):
        load_transactions(path)
    path.write_bytes("customer_id,date,amount\n1,2024-01-01,5\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16 text; re-export the file as UTF-8"):
        load_transactions(path)


@pytest.mark.parametrize(
    "text",
    ["customer_id;date;amount\r\n007;2024-01-01;5.5\r\n",
     "\ufeffcustomer_id\tdate\tamount\n007\t2024-01-01\t5.5\n",
     'customer_id|date|amount\n"007"|2024-01-01|"5.5"\n'],
    ids=["semicolon-crlf", "bom-tab", "pipe-quoted"],
)
def test_delimiter_is_read_from_the_header(tmp_path, text):
    log = load_transactions(write_csv(tmp_path, text))
    assert log.daily()[["customer_id", "amount"]].values.tolist() == [["007", 5.5]]


def test_time_zone_aware_frame_is_refused():
    rows = frame([("a", pd.Timestamp("2024-01-01 10:00", tz="Europe/Berlin"), 5.0)])
    with pytest.raises(InputError, match="column 'date': time-zone-aware date"):
        load_transactions(rows, label="tz")


def test_fully_returned_account_nets_to_exactly_zero():
    rows = [("a", "2024-01-01", 0.1), ("a", "2024-01-01", 0.2), ("a", "2024-01-05", -0.3),
            ("b", "2024-01-02", 1.0)]
    daily = load_transactions(frame(rows)).con.execute(
        "SELECT customer_id, sum(amount) FROM daily GROUP BY ALL ORDER BY 1").fetchall()
    assert [(k, float(v)) for k, v in daily] == [("a", 0.0), ("b", 1.0)]


@pytest.mark.parametrize(("line", "count", "stored", "day_sum"), [
    (4e10, 2, "DECIMAL(18,6)", "80000000000.250000"),
    # Lines below 1e11 whose day sums past DECIMAL(18, 6)'s 1e12: the table must widen.
    (9e10, 20, "DECIMAL(38,6)", "1800000000000.250000"),
])
def test_daily_sums_are_exact_beyond_the_narrow_decimal(line, count, stored, day_sum):
    rows = [("a", "2024-01-01", line)] * count + [("a", "2024-01-01", 0.25),
                                                  ("b", "2024-01-02", -1.5)]
    con = load_transactions(frame(rows)).con
    types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                             "WHERE table_name = 'daily'").fetchall())
    assert types["amount"] == types["margin"] == types["returns"] == stored
    assert con.execute("SELECT customer_id, CAST(amount AS VARCHAR), CAST(returns AS VARCHAR) "
                       "FROM daily ORDER BY 1").fetchall() == [
        ("a", day_sum, "0.000000"), ("b", "-1.500000", "-1.500000")]


def test_outliers_are_kept_and_counted():
    rows = [(str(i), "2024-01-01", 100.0 + i) for i in range(50)] + [("x", "2024-01-02", 5e8)]
    log = load_transactions(frame(rows))
    assert log.notes["outlier_lines"] == 1
    assert log.daily()["amount"].max() == 5e8
    assert load_transactions(frame(rows[:-1])).notes["outlier_lines"] == 0


@pytest.mark.parametrize(("largest", "outliers"), [(20_200.0, 1), (19_800.0, 0)])
def test_outlier_threshold_uses_the_median_positive_line_to_within_one_percent(largest, outliers):
    # Positive lines 10, 20, 30 and the largest: the median line is 20 (the lower middle
    # one), so the threshold is 1000 x 20; returns and zero lines do not count.
    rows = [("a", "2024-01-01", 10.0), ("a", "2024-01-02", 20.0), ("b", "2024-01-03", 30.0),
            ("b", "2024-01-04", -5.0), ("c", "2024-01-05", 0.0), ("c", "2024-01-06", largest)]
    assert load_transactions(frame(rows)).notes["outlier_lines"] == outliers


def test_memory_limit_caps_duckdb_and_spills_outside_the_working_folder(tmp_path, monkeypatch):
    import tempfile

    from keyltv.data.simulate import simulate_b2b

    monkeypatch.chdir(tmp_path)  # DuckDB's own default spill folder would be ./.tmp
    tx, _ = simulate_b2b(3000, seed=3)  # 292k lines: 24 MB is too little to hold them
    capped = load_transactions(tx, memory_limit="24MB")
    limit, spill = capped.con.execute(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchall()[0]
    assert limit == "22.8 MiB"  # 24 MB (10^6 bytes) shown in MiB
    assert spill.startswith(tempfile.gettempdir()) and "keyltv-duckdb-" in spill
    assert Path(spill).is_dir()  # it spilled there
    # Same daily table, and so the same features, as without a limit.
    plain = load_transactions(tx)
    pd.testing.assert_frame_equal(capped.daily(), plain.daily())
    assert capped.fingerprint == plain.fingerprint
    capped.con.close()
    assert not Path(spill).exists() and not (tmp_path / ".tmp").exists()


def test_blank_ids_are_refused_unless_dropped_and_then_counted_and_left_out():
    rows = [("a", "2024-01-01", 5.0), ("", "2024-01-02", 3.0), ("b", "2024-01-03", 2.0),
            ("\u00a0", "not a date", "n/a")]  # a blank id: nothing else on the line is read
    tx = frame(rows)
    with pytest.raises(InputError, match="blank customer id '' in 2 row.*drop_blank_ids: true"):
        load_transactions(tx)
    log = load_transactions(tx, drop_blank_ids=True)
    assert log.notes["blank_id_lines_dropped"] == 2
    assert (log.n_lines, log.n_accounts) == (4, 2)  # lines read, accounts kept
    assert log.daily()["customer_id"].tolist() == ["a", "b"]
    # An id of whitespace alone on an otherwise valid line: blank once stripped, dropped
    # and counted as such, not also as an id stripped of whitespace (audit 28).
    spaced = load_transactions(frame([*rows[:3], ("  ", "2024-01-04", 1.0)]),
                               drop_blank_ids=True)
    assert spaced.notes["blank_id_lines_dropped"] == 2
    assert "ids_stripped_of_whitespace" not in spaced.notes
    assert spaced.daily()["customer_id"].tolist() == ["a", "b"]
    # Dropping blank ids does not relax the other rules on the lines that are kept.
    with pytest.raises(InputError, match="cannot parse date 'soon'"):
        load_transactions(frame(rows + [("c", "soon", 1.0)]), drop_blank_ids=True)
    with pytest.raises(InputError, match="every one of the 2 line.*blank customer id"):
        load_transactions(frame([("", "2024-01-01", 1.0), (" ", "x", "y")]), drop_blank_ids=True)


# A wholesale export without line totals: value = quantity x unit price, margin from the
# unit cost; a cancellation is a negative quantity, a blank cost leaves no margin.
WHOLESALE = (
    "Invoice,Quantity,InvoiceDate,Price,Cost,Customer ID\n"
    "489434,12,2024-01-01 07:45:00,6.95,4.20,13085\n"
    "489434,48,2024-01-01 07:45:00,0.25,0.10,13085\n"
    "C489449,-12,2024-01-03 10:33:00,6.95,4.20,13085\n"
    "489520,3,2024-01-03 11:00:00,2.10,,12682\n"
)
PRICED = {"customer_id": "Customer ID", "date": "InvoiceDate", "quantity": "Quantity",
          "unit_price": "Price", "unit_cost": "Cost"}


def test_amount_and_margin_come_from_quantity_and_prices(tmp_path):
    log = load_transactions(write_csv(tmp_path, WHOLESALE), columns=PRICED)
    daily = log.daily().set_index(["customer_id", "day"]).sort_index()
    # 12 x 6.95 + 48 x 0.25 = 95.4; margin 12 x 2.75 + 48 x 0.15 = 40.2 (exact decimals).
    assert daily["amount"].tolist() == [6.3, 95.4, -83.4]
    assert daily["margin"].tolist()[1:] == [40.2, -33.0]
    assert pd.isna(daily["margin"].tolist()[0])  # 12682's only line has no cost
    assert log.has_margin
    assert (log.notes["return_lines"], log.notes["missing_margin_lines"]) == (1, 1)
    without_cost = {k: v for k, v in PRICED.items() if k != "unit_cost"}
    log = load_transactions(write_csv(tmp_path, WHOLESALE), columns=without_cost)
    assert not log.has_margin
    assert log.daily()["amount"].sum() == pytest.approx(18.3)


@pytest.mark.parametrize(
    ("cell", "value", "message"),
    [
        ("Quantity", "2 pcs", r"column 'Quantity': not a number '2 pcs' in 1 row"),
        ("Price", "", r"column 'Price': blank unit price '' in 1 row"),
        ("Price", "inf", r"column 'Price': not a finite number 'inf' in 1 row"),
        ("Cost", "n/a", r"column 'Cost': not a number 'n/a' in 1 row\(s\); expected .*or blank"),
        ("Quantity", "1e9", r"column 'Quantity x Price': implausible amount \(quantity x unit "
                            r"price\) '1e9 x 6e6' in 1 row"),
    ],
)
def test_bad_quantity_or_price_names_its_column_and_value(tmp_path, cell, value, message):
    text = WHOLESALE.replace(",6.95,4.20,", ",6e6,4.20,", 1) if value == "1e9" else WHOLESALE
    rows = [line.split(",") for line in text.splitlines()]
    rows[1][rows[0].index(cell)] = value
    path = write_csv(tmp_path, "\n".join(",".join(r) for r in rows) + "\n")
    with pytest.raises(InputError, match=message):
        load_transactions(path, columns=PRICED)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"quantity": "Quantity"}, "set both columns.quantity and columns.unit_price"),
        ({"quantity": "Quantity", "unit_price": "Price", "amount": "Price"},
         "columns.amount and columns.quantity x unit_price are both mapped; set columns.amount "
         "to None"),
        ({"quantity": "Quantity", "unit_price": "Price", "unit_cost": "Cost", "margin": "Cost"},
         "columns.margin and columns.unit_cost are both mapped; set columns.margin to None"),
        ({"quantity": "Quantity", "unit_price": "Price", "unit_prize": "Price"},
         r"columns.unit_prize is not a column role \(did you mean 'unit_price'\?\); roles: "
         "customer_id, date"),
        ({"amount": "Price", "unit_cost": "Cost"}, "columns.unit_cost needs columns.quantity"),
        ({"quantity": "Qty", "unit_price": "Price"}, "column 'Qty' .*is missing"),
    ],
)
def test_quantity_price_mapping_is_checked(tmp_path, columns, message):
    path = write_csv(tmp_path, WHOLESALE)
    with pytest.raises(InputError, match=message):
        load_transactions(path, columns={"customer_id": "Customer ID", "date": "InvoiceDate",
                                         **columns})


GERMAN = "Kunde;Datum;Umsatz;Rohertrag\n00042;05.01.2024;1.234,50;-12,5\n00042;06.01.2024;12,5;\n"


def test_numbers_written_with_a_decimal_comma_and_thousands_points(tmp_path):
    columns = {"customer_id": "Kunde", "date": "Datum", "amount": "Umsatz",
               "margin": "Rohertrag"}
    log = load_transactions(write_csv(tmp_path, GERMAN), columns=columns,
                            date_format="%d.%m.%Y", decimal_separator=",",
                            thousands_separator=".")
    daily = log.daily()
    assert daily["amount"].tolist() == [1234.5, 12.5]
    assert daily["margin"].tolist()[0] == -12.5 and pd.isna(daily["margin"].tolist()[1])
    # With a decimal comma a point can only group thousands: '1.5' is refused, not guessed.
    text = GERMAN.replace("12,5;\n", "1.5;\n")
    with pytest.raises(InputError, match=r"column 'Umsatz': not a number '1.5' in 1 row\(s\); "
                                         r"expected a number such as -1.234,5 \(decimal_separator"):
        load_transactions(write_csv(tmp_path, text), columns=columns, date_format="%d.%m.%Y",
                          decimal_separator=",", thousands_separator=".")
    with pytest.raises(InputError, match="thousands and decimal separators are both ','"):
        load_transactions(write_csv(tmp_path, GERMAN), columns=columns, decimal_separator=",",
                          thousands_separator=",")


def write_parts(root: Path) -> Path:
    """A Spark-style folder: part files (one under a partition folder) and markers."""
    (root / "tx" / "year=2024").mkdir(parents=True)
    (root / "tx" / "year=2024" / "part-0.csv").write_text(
        "customer_id,date,amount\n1,2024-01-01,5\n")
    (root / "tx" / "part-1.csv").write_text("customer_id,date,amount\n1,2024-02-01,7\n"
                                            "2,2024-01-02,3\n")
    (root / "tx" / "_SUCCESS").write_text("")
    (root / "tx" / ".part-1.csv.crc").write_bytes(b"\x00crc")
    return root / "tx"


def test_a_folder_of_parts_or_a_glob_is_read_as_one_log(tmp_path):
    folder = write_parts(tmp_path)
    log = load_transactions(folder)
    assert (log.n_lines, log.n_accounts) == (3, 2)
    assert log.daily()["amount"].sum() == 15.0
    same = load_transactions(str(folder / "**" / "*.csv"))
    assert same.fingerprint == log.fingerprint
    frame([("1", "2024-01-01", 1.0), ("2", "2024-01-02", 2.0)]).to_parquet(tmp_path / "p-0.parquet")
    frame([("3", "2024-01-03", 3.0)]).to_parquet(tmp_path / "p-1.parquet")
    assert load_transactions(str(tmp_path / "p-*.parquet")).n_lines == 3


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ("customer_id,date,amount\n3,2024-01-02,x\n",
         r"tx/part-2.csv: column 'amount': not a number 'x' in 1 row\(s\) of .*tx; expected"),
        ("customer_id,amount,date\n3,1,2024-01-02\n",
         r"tx/part-2.csv: its header differs from .*tx/part-1.csv's \('customer_id', 'date', "
         r"'amount'\); every file of .*tx needs the same columns in the same order"),
        ('customer_id,date,amount\n3,2024-01-02,"1\n',
         r"tx/part-2.csv: cannot read line 2: a quoted value is not closed"),
        ("", r"tx/part-2.csv: file is empty"),
    ],
    ids=["bad-value", "other-header", "unclosed-quote", "empty-part"],
)
def test_a_bad_part_is_named_by_its_own_file(tmp_path, part, message):
    folder = write_parts(tmp_path)
    (folder / "part-2.csv").write_text(part)
    with pytest.raises(InputError, match=message):
        load_transactions(folder)


def test_a_file_named_like_a_pattern_is_read_as_that_file(tmp_path):
    path = write_csv(tmp_path, "customer_id,date,amount\n1,2024-01-01,5\n", name="tx[1].csv")
    assert load_transactions(path).n_lines == 1


def test_a_glob_without_match_or_a_folder_of_mixed_files_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"nothing-\*.csv: no file matches this pattern"):
        load_transactions(str(tmp_path / "nothing-*.csv"))
    folder = write_parts(tmp_path)
    (folder / "notes.json").write_text("{}")
    with pytest.raises(InputError, match=r"notes.json: unsupported file type '.json'"):
        load_transactions(folder)
    (folder / "notes.json").unlink()
    frame([("a", "2024-01-01", 1.0)]).to_parquet(folder / "part-9.parquet")
    with pytest.raises(InputError, match="holds both CSV and Parquet files"):
        load_transactions(folder)


def test_the_number_format_applies_to_text_columns_not_to_typed_ones(tmp_path):
    # A Parquet DOUBLE has no separators to read: 1234.5 stays 1234.5 under a decimal comma.
    path = tmp_path / "tx.parquet"
    frame([("a", "2024-01-01", 1234.5)]).to_parquet(path)
    log = load_transactions(path, decimal_separator=",", thousands_separator=".")
    assert log.daily()["amount"].tolist() == [1234.5]
    text = frame([("a", "2024-01-01", "1.234,5")])
    log = load_transactions(text, decimal_separator=",", thousands_separator=".")
    assert log.daily()["amount"].tolist() == [1234.5]


def test_a_date_format_applies_to_a_text_date_not_to_a_typed_one(tmp_path):
    path = tmp_path / "tx.parquet"
    typed = frame([("a", "2024-01-31", 5.0)]).assign(date=lambda f: pd.to_datetime(f["date"]))
    typed.to_parquet(path)
    log = load_transactions(path, date_format="%d.%m.%Y")
    assert log.first_date == date(2024, 1, 31)
    log = load_transactions(frame([("a", "31.01.2024", 5.0)]), date_format="%d.%m.%Y")
    assert log.first_date == date(2024, 1, 31)


def test_a_latin_1_export_is_read_when_the_config_says_so(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_bytes("Kunde;Datum;Umsatz\nMüller GmbH;2024-01-05;12,5\n".encode("latin-1"))
    columns = {"customer_id": "Kunde", "date": "Datum", "amount": "Umsatz"}
    with pytest.raises(InputError, match="not UTF-8.*; re-export .*or set encoding: latin-1 in the config"):
        load_transactions(path, columns=columns, decimal_separator=",")
    log = load_transactions(path, columns=columns, decimal_separator=",", encoding="latin-1")
    assert log.daily()["customer_id"].tolist() == ["Müller GmbH"]
    accounts = tmp_path / "acc.csv"
    accounts.write_bytes("customer_id,Branche\nMüller GmbH,Maschinenbau\n".encode("latin-1"))
    assert load_accounts(accounts, encoding="latin-1").index.tolist() == ["Müller GmbH"]
    with pytest.raises(InputError, match="encoding 'cp1252': expected one of 'utf-8', 'latin-1'"):
        load_transactions(path, columns=columns, encoding="cp1252")


def test_parquet_parts_need_the_same_columns_and_types(tmp_path):
    # DuckDB reads parts with the first one's schema: 2.4 stored as DOUBLE in a later
    # part was read as the first part's BIGINT 2, and a later part's extra column vanished.
    (tmp_path / "pq").mkdir()
    pd.DataFrame({"customer_id": ["1"], "date": ["2023-01-02"], "amount": [10]}).to_parquet(
        tmp_path / "pq" / "p-0.parquet")
    pd.DataFrame({"customer_id": ["1"], "date": ["2023-02-02"], "amount": [2.4]}).to_parquet(
        tmp_path / "pq" / "p-1.parquet")
    with pytest.raises(InputError, match=r"p-1.parquet: column 'amount' is stored as DOUBLE, "
                                         r"but as BIGINT in .*p-0.parquet"):
        load_transactions(tmp_path / "pq")
    pd.DataFrame({"customer_id": ["1"], "date": ["2023-02-02"], "amount": [2],
                  "margin": [1.0]}).to_parquet(tmp_path / "pq" / "p-1.parquet")
    with pytest.raises(InputError, match=r"p-1.parquet: its columns \('customer_id', 'date', "
                                         r"'amount', 'margin'\) differ from .*p-0.parquet's"):
        load_transactions(tmp_path / "pq")


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_key_value_folder_name_does_not_replace_a_column(tmp_path, kind):
    # Spark and Hive name folders date=2023-01-02; DuckDB read that as the date column.
    folder = tmp_path / "date=2023-01-02"
    folder.mkdir()
    data = pd.DataFrame({"customer_id": ["1"], "date": ["2023-05-05"], "amount": ["5"]})
    path = folder / f"part-0.{kind}"
    data.to_csv(path, index=False) if kind == "csv" else data.to_parquet(path)
    for source in (path, tmp_path):
        assert load_transactions(source).first_date == date(2023, 5, 5)


def test_date_format_reads_a_numeric_parquet_date_column(tmp_path):
    pd.DataFrame({"customer_id": ["1", "2"], "date": [20230102, 20230315],
                  "amount": [5.0, 6.0]}).to_parquet(tmp_path / "tx.parquet")
    log = load_transactions(tmp_path / "tx.parquet", date_format="%Y%m%d")
    assert (log.first_date, log.last_date) == (date(2023, 1, 2), date(2023, 3, 15))


@pytest.mark.parametrize(("form", "message"), [
    ("%d.%m.%Y %z", r"tx.csv: date_format '%d.%m.%Y %z' reads a time zone \(%z or %Z\)"),
    ("%Y-%m-%d %Z", "reads a time zone"),
    ("%Q", r"tx.csv: date_format '%Q' is not a strptime format \(Unrecognized format"),
])
def test_an_unusable_date_format_is_refused_before_reading(tmp_path, form, message):
    path = write_csv(tmp_path, "customer_id,date,amount\n1,02.01.2023 +0900,5\n")
    with pytest.raises(InputError, match=message):
        load_transactions(path, date_format=form)
    assert load_transactions(write_csv(tmp_path, "customer_id,date,amount\n1,2023-01-02 %z,5\n"),
                             date_format="%Y-%m-%d %%z").n_lines == 1


def test_two_roles_cannot_read_one_column(tmp_path):
    path = write_csv(tmp_path, "customer_id,date,Quantity\n1,2024-01-01,-1\n")
    with pytest.raises(InputError, match="columns.quantity and columns.unit_price both name "
                                         "column 'Quantity'"):
        load_transactions(path, columns={"amount": None, "quantity": "Quantity",
                                         "unit_price": "Quantity"})


def test_plain_day_shortcut_reads_what_the_iso_rule_reads():
    # The shortcut for YYYY-MM-DD skips the ISO regex; on every ten-character value with
    # dashes at 5 and 8 that it takes, the regex path (on the stripped value) must give
    # the same day. Characters are drawn where the cast might be lenient: signs, spaces,
    # letters, other separators.
    import duckdb
    import numpy as np

    from keyltv.data import lines
    from keyltv.data.schema import ISO_DATE_PATTERN

    rng = np.random.default_rng(3)
    alphabet = list("0123456789 +-./:Tx\t")
    values = ["2024-01-31", "2024-1-31 ", "0999-01-01", " 999-01-01", "-999-01-01",
              "2024-02-30", "2024-01-3 ", "+024-01-01", "2024-01- 1", "2024-+1-01"]
    for _ in range(20000):  # valid days, one or two characters changed
        day = date(int(rng.integers(1, 10000)), int(rng.integers(1, 13)),
                   int(rng.integers(1, 29)))
        chars = list(f"{day.year:04d}-{day.month:02d}-{day.day:02d}")
        for i in rng.choice([0, 1, 2, 3, 5, 6, 8, 9], size=rng.integers(1, 3)):
            chars[i] = rng.choice(alphabet)
        values.append("".join(chars))
    con = duckdb.connect()
    con.execute("CREATE TABLE v (date_raw VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?)", [[v] for v in values])
    rows = con.execute(
        f"""SELECT date_raw, CAST(TRY_CAST(date_raw AS DATE) AS TIMESTAMP),
                   CASE WHEN regexp_matches(trim(date_raw, ' \t'), '{ISO_DATE_PATTERN}')
                        THEN TRY_CAST(trim(date_raw, ' \t') AS TIMESTAMP) END
            FROM v WHERE {lines._PLAIN_DAY}""").fetchall()
    assert len(rows) > 2000  # the draw does reach the shortcut
    assert [r for r in rows if r[1] != r[2]] == []
    taken = {r[0] for r in rows}
    assert "2024-01-31" in taken and "0999-01-01" not in taken and " 999-01-01" not in taken


def test_whole_float_ids_read_as_the_csv_export_writes_them():
    # pandas stores an integer id column with a blank as float64.
    rows = pd.DataFrame({"customer_id": [17850.0, 1.5, None, 3.0], "date": ["2024-01-01"] * 4,
                         "amount": [1.0, 2.0, 3.0, 4.0]})
    log = load_transactions(rows, drop_blank_ids=True)
    assert log.daily()["customer_id"].tolist() == ["1.5", "17850", "3"]
    accounts = load_accounts(pd.DataFrame({"customer_id": [17850.0, 3.0], "x": ["a", "b"]}))
    assert accounts.index.tolist() == ["17850", "3"]


def test_whole_float_ids_are_written_in_full_and_inexact_ones_refused():
    def ids(values, dtype="float64"):
        rows = pd.DataFrame({"customer_id": np.array(values, dtype=dtype), "date": "2024-01-01",
                             "amount": 1.0})
        return sorted(load_transactions(rows).daily()["customer_id"])

    # DuckDB writes 1e15 as '1000000000000000.0' and larger floats in scientific notation.
    assert ids([1e15, 2.0**53 - 1, -5.0]) == ["-5", "1000000000000000", "9007199254740991"]
    assert ids([0.5, 1e-5]) == ["0.5", "1e-05"]  # not whole numbers: DuckDB's text
    assert ids([2.0**24 - 1], dtype="float32") == ["16777215"]
    # From 2**53 on, floats skip whole numbers: 123456789012345678 is stored as ...680.
    with pytest.raises(InputError, match=r"column 'customer_id': 1 id\(s\) stored as floats at "
                                         r"or beyond 9,007,199,254,740,992 \(such as "
                                         r"1.2345678901234568e\+17\)"):
        ids([123456789012345678.0, 7.0])
    with pytest.raises(InputError, match=r"at or beyond 16,777,216 \(such as 16777218\)"):
        ids([2.0**24 + 2], dtype="float32")
    with pytest.raises(InputError, match="stored as floats at or beyond"):
        load_accounts(pd.DataFrame({"customer_id": [1e17, 3.0], "x": ["a", "b"]}))
    # true/false is a wrongly mapped column, not two accounts.
    with pytest.raises(InputError, match="column 'customer_id': holds true/false values"):
        load_transactions(pd.DataFrame({"customer_id": [True, False], "date": "2024-01-01",
                                        "amount": 1.0}))
    # A DECIMAL is exact at any size.
    rows = pd.DataFrame({"customer_id": [Decimal("123456789012345678901234.00")],
                         "date": ["2024-01-01"], "amount": [1.0]})
    assert load_transactions(rows).daily()["customer_id"].tolist() == ["123456789012345678901234"]


def test_what_is_not_a_frame_or_cannot_be_scanned_is_refused_by_name():
    with pytest.raises(InputError, match="expected a file path or a pandas DataFrame, got list"):
        load_transactions([{"customer_id": "a", "date": "2024-01-01", "amount": 1.0}])
    rows = pd.DataFrame({"customer_id": ["a"], "date": pd.period_range("2024-01-01", periods=1),
                         "amount": [1.0]})
    with pytest.raises(InputError, match="column 'date': dtype period\\[D\\] cannot be read"):
        load_transactions(rows)


def test_the_training_fingerprint_covers_the_days_before_the_cutoff_only(tiny_rows):
    cut = date(2024, 2, 1)
    base = load_transactions(frame(tiny_rows)).fingerprint_before(cut)
    later = [*tiny_rows, ("00042", "2024-06-01", 99.0)]  # a longer export, same past
    assert load_transactions(frame(later)).fingerprint_before(cut) == base
    assert load_transactions(frame(later[::-1])).fingerprint_before(cut) == base
    earlier = [*tiny_rows, ("00042", "2024-01-03", 1.0)]
    assert load_transactions(frame(earlier)).fingerprint_before(cut) != base
