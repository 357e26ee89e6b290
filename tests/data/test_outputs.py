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
