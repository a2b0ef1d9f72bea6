"""Attacker's-eye tests: each file proves one hardening fix (see docs/security.md)."""
