"""Publish: disclosure packages for courts and review bodies, redacted derivatives, notices, statistics."""
