"""Real services (SeaweedFS, PostgreSQL) started by the test suite on loopback."""
