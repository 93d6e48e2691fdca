"""Helpers shared by every test folder (no fixtures here: those live in each folder's
conftest.py). A test imports from ``tests.support``, never from another folder's
conftest or test module."""
