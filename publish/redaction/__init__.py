"""Redaction: derivatives of clips made with ffmpeg from an approved plan, linked to their originals."""
