"""Sources: gzipped CSV files are read as their plain twins, or refused in one line."""

import gzip

import pytest

from keyltv.data.accounts import load_accounts
from keyltv.data.schema import InputError
from keyltv.data.transactions import load_transactions

LOG = "customer_id,date,amount\n007,2024-01-01,5.5\n007,2024-01-03,-1.5\n12,2024-01-02,3\n"


def write_gzip(path, text: str | bytes) -> str:
    with gzip.open(path, "wb") as handle:
        handle.write(text.encode() if isinstance(text, str) else text)
    return str(path)


def daily(source) -> list[list]:
    return load_transactions(source).daily()[["customer_id", "day", "amount"]].values.tolist()


@pytest.mark.parametrize(
    ("name", "text"),
    [("tx.csv.gz", LOG),
     ("tx.TSV.GZ", LOG.replace(",", "\t")),
     ("tx.txt.gz", "\ufeff" + LOG.replace(",", ";").replace("\n", "\r\n"))],
    ids=["csv", "tsv-upper-case", "txt-bom-semicolon-crlf"],
)
def test_a_gzipped_log_is_read_as_its_plain_twin(tmp_path, name, text):
    (tmp_path / "plain.csv").write_text(LOG)
    plain = load_transactions(tmp_path / "plain.csv")
    packed = load_transactions(write_gzip(tmp_path / name, text))
    assert daily(packed.source) == daily(tmp_path / "plain.csv")
    assert (packed.n_lines, packed.fingerprint) == (plain.n_lines, plain.fingerprint)


def test_gzipped_parts_and_members_are_read_as_one_log(tmp_path):
    folder = tmp_path / "tx"
    folder.mkdir()
    header, *rows = LOG.splitlines(keepends=True)
    (folder / "part-1.csv").write_text(header + rows[0])
    # Two gzip members in one file, as `cat a.gz b.gz` makes.
    (folder / "part-2.csv.gz").write_bytes(gzip.compress((header + rows[1]).encode())
                                           + gzip.compress(rows[2].encode()))
    (tmp_path / "plain.csv").write_text(LOG)
    assert daily(folder) == daily(tmp_path / "plain.csv")


def test_a_gzipped_account_table_is_read(tmp_path):
    accounts = load_accounts(write_gzip(tmp_path / "acc.csv.gz",
                                        "customer_id,region\n007,north\n12,south\n"))
    assert accounts["region"].astype(str).to_dict() == {"007": "north", "12": "south"}


def truncated(path):
    data = gzip.compress(LOG.encode() * 200)
    path.write_bytes(data[: len(data) // 2])


def bad_checksum(path):
    data = bytearray(gzip.compress(LOG.encode()))
    data[-8] ^= 0xFF  # the CRC-32 of the trailer: DuckDB alone would read the file
    path.write_bytes(bytes(data))


def bad_deflate(path):
    data = bytearray(gzip.compress(LOG.encode() * 50))
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (truncated, "tx.csv.gz: cannot read file: the gzip data ends early (a truncated copy "
                    "or download?); copy or export the file again"),
        (bad_checksum, "tx.csv.gz: cannot read file: the gzip data is damaged (its CRC-32 "
                       "checksum does not match); copy or export the file again"),
        (bad_deflate, "tx.csv.gz: cannot read file: the gzip data is damaged"),
        (lambda p: p.write_bytes(gzip.compress(LOG.encode()) + b"junk"),
         "tx.csv.gz: cannot read file: the gzip data is damaged (bytes after its end are not "
         "gzip)"),
        (lambda p: p.write_text(LOG),
         "tx.csv.gz: cannot read file: not gzip data, although the name ends in .gz"),
        (lambda p: p.write_bytes(b""), "tx.csv.gz: file is empty"),
        (lambda p: p.write_bytes(gzip.compress(b"")), "tx.csv.gz: file is empty"),
    ],
    ids=["truncated", "checksum", "deflate", "trailing-junk", "plain-text", "empty",
         "empty-inside"],
)
def test_a_broken_gzip_file_is_refused_in_one_line(tmp_path, make, message):
    make(tmp_path / "tx.csv.gz")
    with pytest.raises(InputError) as refused:
        load_transactions(tmp_path / "tx.csv.gz")
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [("tx.parquet.gz", "unsupported file type '.parquet.gz'; use one of .csv, .txt, .tsv, "
                       ".csv.gz, .txt.gz, .tsv.gz, .parquet, .pq"),
     ("tx.gz", "unsupported file type '.gz'"),
     ("tx.csv.zst", "unsupported file type '.zst'")],
)
def test_other_compressed_files_are_refused_by_name(tmp_path, name, message):
    (tmp_path / name).write_bytes(b"\x00")
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        load_transactions(tmp_path / name)


def test_gzip_data_under_a_plain_name_is_named_as_such(tmp_path):
    write_gzip(tmp_path / "tx.csv", LOG)
    with pytest.raises(InputError, match=r"tx.csv: cannot read file: gzip-compressed data; "
                                         r"name the file tx.csv.gz"):
        load_transactions(tmp_path / "tx.csv")
