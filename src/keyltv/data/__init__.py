"""Data contract, validation and loaders."""

from keyltv.data.accounts import load_accounts
from keyltv.data.outputs import write_table
from keyltv.data.schema import InputError
from keyltv.data.transactions import TransactionLog, load_transactions

__all__ = ["InputError", "TransactionLog", "load_accounts", "load_transactions", "write_table"]
