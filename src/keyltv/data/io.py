"""Load and validate transaction logs and account tables; write outputs atomically.

The public entry point of the loaders and writers, which live in:

- :mod:`keyltv.data.transactions`: :func:`load_transactions` and :class:`TransactionLog`
  (a log validated and aggregated to daily per-account rows);
- :mod:`keyltv.data.accounts`: :func:`load_accounts`;
- :mod:`keyltv.data.outputs`: :func:`check_writable`, :func:`write_table`,
  :func:`copy_query`, :func:`write_text` and :func:`write_atomic`;
- :mod:`keyltv.data.sources`, :mod:`keyltv.data.columns`, :mod:`keyltv.data.lines` and
  :mod:`keyltv.data.checks`: reading a source, mapping its columns, parsing its lines
  and checking them.
"""

from keyltv.data.accounts import load_accounts
from keyltv.data.outputs import (
    can_copy_query,
    check_writable,
    copy_query,
    write_atomic,
    write_table,
    write_text,
)
from keyltv.data.transactions import TransactionLog, load_transactions

__all__ = [
    "TransactionLog",
    "can_copy_query",
    "check_writable",
    "copy_query",
    "load_accounts",
    "load_transactions",
    "write_atomic",
    "write_table",
    "write_text",
]
