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

Other column names are mapped through ``Config.columns``; a log without line totals
maps ``quantity`` and ``unit_price`` instead of ``amount`` (and ``unit_cost`` instead of
``margin``), and the line's amount and margin are computed from them. Validation itself runs in
SQL (see :mod:`keyltv.data.io`) so that it streams over logs of any size; this module
only holds the contract, its limits and the messages. Every bad input and how keyltv
handles it is listed in ``docs/bad-inputs.md``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REQUIRED = ("customer_id", "date", "amount")
OPTIONAL = ("margin",)

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
