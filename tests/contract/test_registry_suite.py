"""`microstd.testing.suites.registry.contract`, run on every backend of this project.

The suite ships in the package, so a plugin author runs the very same tests
(`pytest --microstd-registry=URL`); the backends come from conftest.py.
"""

from microstd.testing.suites.registry.contract import *  # noqa: F403
