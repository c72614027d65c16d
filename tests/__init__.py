"""Test data built through the real services, shared by every app's tests
(``tests.factories``), and the fixtures of the root ``conftest.py``."""
