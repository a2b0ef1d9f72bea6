"""`microstd.testing.suites.broker.contract`, run on every backend of this project.

The suite ships in the package, so a plugin author runs the very same tests
(`pytest --microstd-broker=URL`); the backends come from conftest.py.
"""

from microstd.testing.suites.broker.contract import *  # noqa: F403
