"""The sync conformance suite (microstd.testing)."""
