"""Test support shared by every test package: one copy of each helper (issue 14).

tests/ is on sys.path (tests/conftest.py's directory), so test modules import `support.<module>`.
"""
