import pandas as pd
import pytest

from keyltv.data.outputs import check_writable, write_atomic, write_table
from keyltv.data.schema import InputError
from tests.conftest import write_csv


def test_write_table_is_atomic_and_checks_the_path(tmp_path):
    out = tmp_path / "scores.csv"
    write_table(pd.DataFrame({"customer_id": ["007"]}), out)
    assert out.read_text().splitlines() == ["customer_id", "007"]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]  # no temp file left
    with pytest.raises(InputError, match="does not exist"):
        write_table(pd.DataFrame(), tmp_path / "nope" / "s.csv")
    with pytest.raises(InputError, match="must end in .csv or .parquet"):
        write_table(pd.DataFrame(), tmp_path / "s.xlsx")


def test_check_writable_leaves_nothing_and_names_the_problem(tmp_path):
    assert check_writable(tmp_path / "s.parquet") == tmp_path / "s.parquet"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="'.*f' is not a folder"):
        check_writable(tmp_path / "f" / "s.csv")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        check_writable(tmp_path / "d.csv")


@pytest.mark.parametrize("anonymous", [True, False], ids=["o-tmpfile", "named-temp"])
def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch, anonymous):
    import os

    if not anonymous:
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    out = tmp_path / "report.html"
    out.write_text("previous")

    def fail_midway(handle):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(out, fail_midway)
    assert out.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    write_atomic(out, lambda handle: handle.write(b"new"))
    assert out.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_the_output_must_not_be_an_input(tmp_path):
    tx = write_csv(tmp_path, "customer_id,date,amount\n1,2024-01-01,5\n")
    with pytest.raises(InputError, match="tx.csv: is also the --transactions input"):
        check_writable(tx, inputs={"--transactions": tx, "--accounts": None})
    assert check_writable(tmp_path / "out.csv", inputs={"--transactions": tx})
    assert check_writable(tmp_path / "out.csv", inputs={"--transactions": tmp_path})


# Ids as they reach the writer, and as a CSV cell holds them (OWASP's CSV injection).
FORMULA_IDS = [
    ("=1+1", "'=1+1"), ("@SUM(A1)", "'@SUM(A1)"), ("-2+3", "'-2+3"),
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
    ("\t=1", "'\t=1"), ("-", "'-"), ("+44 20 7946", "'+44 20 7946"), ("-1,5", "'-1,5"),
    # Quoted by someone else: one more quote, so that each reads back as it was.
    ("'=1", "''=1"), ("'-123", "''-123"),
    ("-123", "-123"), ("+44", "+44"), ("-1.5e+3", "-1.5e+3"), ("+.5", "+.5"),  # plain numbers
    ("'abc", "'abc"), ("a=1", "a=1"), ("007", "007"),
]


@pytest.mark.parametrize("direct", [False, True], ids=["pandas", "duckdb-copy"])
def test_csv_cells_a_spreadsheet_would_run_are_written_as_text(tmp_path, direct):
    import duckdb

    from keyltv.data.outputs import copy_query

    frame = pd.DataFrame({"customer_id": [raw for raw, _ in FORMULA_IDS],
                          "segment": pd.Categorical(["=x"] + ["key"] * (len(FORMULA_IDS) - 1)),
                          "value": -1.5})
    out = tmp_path / "scores.csv"
    if direct:
        con = duckdb.connect()
        con.register("frame", frame)
        assert copy_query(con, "SELECT * FROM frame", {}, out) == len(FORMULA_IDS)
    else:
        write_table(frame, out)
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert written["customer_id"].tolist() == [cell for _, cell in FORMULA_IDS]
    assert written["segment"].tolist()[:2] == ["'=x", "key"]
    assert set(written["value"]) == {"-1.5"}  # a number column is never quoted


def test_parquet_keeps_every_value_as_it_is(tmp_path):
    frame = pd.DataFrame({"customer_id": [raw for raw, _ in FORMULA_IDS]})
    write_table(frame, tmp_path / "scores.parquet")
    assert pd.read_parquet(tmp_path / "scores.parquet").equals(frame)


def test_escaped_cells_are_counted_and_read_back_exactly():
    from keyltv.data.outputs import count_escaped_cells, escape_formulas, unescape_formulas

    frame = pd.DataFrame({"customer_id": [raw for raw, _ in FORMULA_IDS],
                          "reasons": ["@once"] + [None] * (len(FORMULA_IDS) - 1)})
    escaped = [cell for raw, cell in FORMULA_IDS if cell != raw]
    assert count_escaped_cells(frame) == len(escaped) + 1
    back = unescape_formulas(escape_formulas(frame)["customer_id"])
    assert back.tolist() == frame["customer_id"].tolist()
    # Only keyltv's own quote comes off: not one before a plain number or other text.
    assert unescape_formulas(pd.Series(["'-123", "'abc", "'=1", "''=1"])).tolist() == [
        "'-123", "'abc", "=1", "'=1"]


def test_every_formula_start_is_escaped_by_both_writers(tmp_path):
    import duckdb

    from keyltv.data.outputs import FORMULA_STARTS, copy_query, escape_formulas

    cells = [f"{start}1+x" for start in FORMULA_STARTS]
    frame = pd.DataFrame({"cell": cells})
    assert escape_formulas(frame)["cell"].tolist() == ["'" + c for c in cells]
    con = duckdb.connect()
    con.register("frame", frame)
    copy_query(con, "SELECT * FROM frame", {}, tmp_path / "out.csv")
    assert pd.read_csv(tmp_path / "out.csv", dtype=str)["cell"].tolist() == ["'" + c for c in cells]
