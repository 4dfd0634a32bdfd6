"""Disk primitives: atomic writes, directory fsync, streaming hashes, the copy pump, the spool, read-only volume access."""
