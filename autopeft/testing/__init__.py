"""Synthetic benchmark problems for tests and bench/ (no training)."""
