"""Data contract, validation and loaders."""

from keyltv.data.io import TransactionLog, load_accounts, load_transactions, write_table
from keyltv.data.schema import InputError

__all__ = ["InputError", "TransactionLog", "load_accounts", "load_transactions", "write_table"]
