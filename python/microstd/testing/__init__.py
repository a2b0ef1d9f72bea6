"""microstd's conformance kit: the contract suites, for backends outside microstd.

A backend is done when it passes its area's suite, the same tests microstd
runs on each of its own backends. A plugin author runs them with pytest:

    pip install 'microstd[testing]'
    pytest --microstd-store='dict://{unique}'       # or --microstd-broker / -sync / -registry

or, for a backend that needs more than a URL, by defining the area's target
fixture (`store_target`, ...) in a conftest and loading the suite modules
(see docs/backends.md). `targets` describes what a suite runs against,
`tables` the bad-argument tables every backend must answer the same way.
"""

from __future__ import annotations

from microstd.testing.targets import (
    BrokerTarget,
    RegistryTarget,
    StoreTarget,
    SyncTarget,
    fresh_url,
)

__all__ = ["BrokerTarget", "RegistryTarget", "StoreTarget", "SyncTarget", "fresh_url"]
