"""End-to-end scenarios: real namespaces, real veths, real traffic (see docs/scenarios.md)."""
