"""Differential harness against NHS England's receiver code (issue 18); see docs/conformance.md."""
