"""One adapter per technology, each behind a port in `evidence_agent.ports`."""
