"""The column contract of a transaction log and the error raised when it is broken.

A transaction log has one row per invoice line with

========== ======== ==========================================================
column     required meaning
========== ======== ==========================================================
customer_id yes     opaque account id, kept as a string (``00042`` stays ``00042``)
date        yes     ISO 8601 date or timestamp without time zone, or ``date_format``
amount      yes     net value of the line (or quantity x unit_price); negative = return
margin      no      gross profit of the line (same sign convention as amount)
========== ======== ==========================================================

Other column names are mapped through ``Config.columns``; a log without line totals
maps ``quantity`` and ``unit_price`` instead of ``amount`` (and ``unit_cost`` instead of
``margin``), and the line's amount and margin are computed from them. Validation itself runs in
SQL (see :mod:`keyltv.data.lines` and :mod:`keyltv.data.checks`) so that it streams
over logs of any size; this module only holds the contract, its limits and the messages.
Every bad input and how keyltv handles it is listed in ``docs/bad-inputs.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# A time followed by an offset, "Z" or "UTC": DuckDB would silently drop the offset when
# casting to TIMESTAMP. Plain dates such as 2024-07-28 must not match (their "-28").
TZ_PATTERN = r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|UTC|[+-]\d{2}(:?\d{2})?)$"

# What an ISO 8601 date or timestamp starts with; DuckDB's cast would also turn words
# such as 'epoch' or 'infinity' into timestamps.
ISO_DATE_PATTERN = r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d.*)?$"

# No invoice line is worth 1e15 in any currency; sums of such values would overflow
# the features. Larger magnitudes are an export error (a column shifted into amount).
MAX_ABS_AMOUNT = 1e15

# A line above this multiple of the median positive line is an outlier: kept (a key
# account's one big project is real) but counted, so that a typo is seen in the notes.
OUTLIER_FACTOR = 1000.0

_SECRET_KEYS = re.compile(r"token|secret|password|passwd|pwd|key|signature|sig|auth|credential",
                          re.IGNORECASE)


class InputError(ValueError):
    """Bad user input: the message names the file, the column and the value.

    The CLI turns it into one line on stderr and exit code 2.
    """


@dataclass(frozen=True)
class NumberFormat:
    """How the log writes numbers: decimal separator and optional thousands separator.

    The default is the plain form DuckDB casts (``-1234.5``). European exports write
    ``-1.234,5`` or ``-1 234,5``; a configured format is parsed strictly, so that an
    ambiguous value (``1.5`` where the decimal separator is a comma) is refused, never
    read as another number.
    """

    decimal: str = "."
    thousands: str | None = None

    def __post_init__(self) -> None:
        if self.decimal not in DECIMAL_SEPARATORS:
            raise ValueError(f"decimal separator {self.decimal!r}: expected one of "
                             f"{', '.join(map(repr, DECIMAL_SEPARATORS))}")
        if self.thousands is not None and self.thousands not in THOUSANDS_SEPARATORS:
            raise ValueError(f"thousands separator {self.thousands!r}: expected one of "
                             f"{', '.join(map(repr, THOUSANDS_SEPARATORS))}, or none")
        if self.thousands == self.decimal:
            raise ValueError(f"the thousands and decimal separators are both {self.decimal!r}")

    @property
    def plain(self) -> bool:
        """Whether this is the default form, which DuckDB's cast reads as it is."""
        return self.decimal == "." and self.thousands is None

    def sql(self, text: str) -> str:
        """SQL that reads the text expression ``text`` as a DOUBLE (NULL if it is none)."""
        if self.plain:
            return _cast_number(text)
        if self.thousands is not None:
            # Separators only between groups of three digits, before any decimals.
            sep = _THOUSANDS_REGEX[self.thousands]
            dec = re.escape(self.decimal)
            grouped = rf"[+-]?\d{{1,3}}({sep}\d{{3}})+({dec}\d*)?([eE][+-]?\d+)?"
            text = (f"CASE WHEN NOT regexp_matches({text}, {sql_literal(sep)}) THEN {text} "
                    f"WHEN regexp_full_match({text}, {sql_literal(grouped)}) "
                    f"THEN regexp_replace({text}, {sql_literal(sep)}, '', 'g') END")
        if self.decimal == ",":
            # A point is then no part of a number: '1.5' is refused, not read as 15 or 1.5.
            text = f"CASE WHEN NOT contains({text}, '.') THEN replace({text}, ',', '.') END"
        return _cast_number(text)

    def hint(self) -> str:
        """What a number must look like, for error messages."""
        if self.plain:
            return PLAIN_NUMBER
        example = f"-1{self.thousands or ''}234{self.decimal}5"
        config = f"decimal_separator {self.decimal!r}"
        if self.thousands is not None:
            config += f" and thousands_separator {self.thousands!r}"
        return f"a number such as {example} ({config} in the config; no currency signs)"


def _cast_number(text: str) -> str:
    """DuckDB's cast of plain number text to DOUBLE, without the digit separator ``_``.

    The cast reads ``1_000`` as 1000 (as Python does); no export writes that, so a
    value with ``_`` is not a number here, in every configured form.
    """
    return f"TRY_CAST(CASE WHEN NOT contains({text}, '_') THEN {text} END AS DOUBLE)"


PLAIN_NUMBER = ("a plain number such as -1234.5 (no currency signs; for 1.234,5 set "
                "decimal_separator and thousands_separator in the config)")
DECIMAL_SEPARATORS = (".", ",")
THOUSANDS_SEPARATORS = (".", ",", " ", "'")
# A space separator also matches the no-break spaces that spreadsheets write for it.
_THOUSANDS_REGEX = {".": r"\.", ",": ",", " ": r"[ \x{00A0}\x{202F}]", "'": "'"}


def reads_time_zone(date_format: str) -> bool:
    """Whether a strptime format reads an offset or zone name (``%z``, ``%Z``; not ``%%z``)."""
    return re.search("%[zZ]", date_format.replace("%%", "")) is not None


def as_date(value: object, name: str = "as_of") -> date:
    """A cut date from what a notebook passes: a date, ``YYYY-MM-DD``, a datetime.

    keyltv works in days: a time of day is dropped (``pd.Timestamp.now()`` means today,
    and only transactions of earlier days are read). A time-zone-aware value is refused,
    as time-zone-aware dates in a log are: which local day it names is not known.

    Raises
    ------
    InputError
        For anything else, naming ``name`` and the value.
    """
    if isinstance(value, str):
        try:
            return date.fromisoformat(value) if len(value) == 10 else _not_a_date(value, name)
        except ValueError:
            _not_a_date(value, name)
    if type(value).__name__ == "datetime64":  # numpy's: a datetime, or None for NaT
        value = value.astype("datetime64[us]").item()
    if value is None or value != value:  # NaT is a datetime unequal to itself
        _not_a_date(value, name)
    if getattr(value, "tzinfo", None) is not None:
        raise InputError(f"{name} {value!s}: time-zone-aware; pass the local date "
                         "(e.g. value.date() in the log's time zone)")
    if isinstance(value, datetime):  # pandas' Timestamp is one
        return value.date()
    if isinstance(value, date):
        return value
    return _not_a_date(value, name)


def _not_a_date(value: object, name: str) -> date:
    raise InputError(f"{name} {describe_value(value)}: expected a date such as 2024-07-01 "
                     "(datetime.date, 'YYYY-MM-DD' or a timestamp without time zone)")


def as_horizon(value: object, name: str = "horizon_days") -> int:
    """A horizon in whole days, at least 1 (numpy integers accepted).

    Raises
    ------
    InputError
        For a non-integer, a bool or a value below 1.
    """
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
        raise InputError(f"{name} {describe_value(value)}: expected a whole number of days, "
                         "at least 1")
    return int(value)


def sql_literal(text: str) -> str:
    """Quote ``text`` as an SQL string literal (for SQL that cannot bind parameters)."""
    return "'" + text.replace("'", "''") + "'"


def describe_value(value: object, limit: int = 40) -> str:
    """Quote a user value for an error message, shortened and with control bytes visible."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def redact_text(text: str) -> str:
    """Mask ``user:password@`` inside any URI of a message."""
    return re.sub(r"//([^/:@\s]*):[^@/\s]*@", r"//\1:***@", text)


def redact_uri(uri: str) -> str:
    """Mask the password and secret-looking query values of a URI, to print or log it.

    ``https://bob:hunter2@host/x?token=abc&run=1`` becomes
    ``https://bob:***@host/x?token=***&run=1``.
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable URI>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_KEYS.search(k) else v) for k, v in pairs],
                          safe="*/:")
    if (netloc, query) == (parts.netloc, parts.query):
        return uri  # urlunsplit would rewrite e.g. sqlite:////abs/path
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
