"""Evidence agent: the station daemon and its core (detection, ingest, catalog, custody log, storage)."""
