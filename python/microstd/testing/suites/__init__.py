"""The conformance suites: one package per area, each a set of pytest test modules.

microstd runs them on its own backends (tests/contract/test_*_suite.py); the
pytest plugin (microstd.testing.plugin) runs them on a third-party backend.
"""
