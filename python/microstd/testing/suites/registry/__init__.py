"""The registry conformance suite (microstd.testing)."""
