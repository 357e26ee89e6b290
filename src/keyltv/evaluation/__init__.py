"""Metrics, backtests and plots for account-value models."""
