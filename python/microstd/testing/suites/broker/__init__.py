"""The broker conformance suite (microstd.testing)."""
