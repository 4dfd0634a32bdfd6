"""Disclosure: packages for courts, prosecutors and review bodies, with a record kept."""
