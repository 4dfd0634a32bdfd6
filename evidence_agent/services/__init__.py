"""Use cases that own transactions: the station (composition root), guard, ingest, storing, audit, the daemon."""
