"""The column contract of a transaction log and the error raised when it is broken.

A transaction log has one row per invoice line with

========== ======== ==========================================================
column     required meaning
========== ======== ==========================================================
customer_id yes     opaque account id, kept as a string (``00042`` stays ``00042``)
date        yes     ISO 8601 date or timestamp without time zone, or ``date_format``
amount      yes     net value of the line; negative = return or credit note
margin      no      gross profit of the line (same sign convention as amount)
========== ======== ==========================================================

Other column names are mapped through ``Config.columns``. Validation itself runs in
SQL (see :mod:`keyltv.data.io`) so that it streams over logs of any size; this module
only holds the contract and the messages.
"""

from __future__ import annotations

REQUIRED = ("customer_id", "date", "amount")
OPTIONAL = ("margin",)

# A time followed by an offset, "Z" or "UTC": DuckDB would silently drop the offset when
# casting to TIMESTAMP. Plain dates such as 2024-07-28 must not match (their "-28").
TZ_PATTERN = r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|UTC|[+-]\d{2}(:?\d{2})?)$"


class InputError(ValueError):
    """Bad user input: the message names the file, the column and the value.

    The CLI turns it into one line on stderr and exit code 2.
    """


def describe_value(value: object, limit: int = 40) -> str:
    """Quote a user value for an error message, shortened and with control bytes visible."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "...'"
