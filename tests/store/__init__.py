"""Store backend tests: a package, so module names like test_redis never clash."""
