"""`microstd.testing.suites.sync.contract`, run on every backend of this project.

The suite ships in the package, so a plugin author runs the very same tests
(`pytest --microstd-sync=URL`); the backends come from conftest.py.
"""

from microstd.testing.suites.sync.contract import *  # noqa: F403
