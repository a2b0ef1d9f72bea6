"""The store conformance suite (microstd.testing)."""
