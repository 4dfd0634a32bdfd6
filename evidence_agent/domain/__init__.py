"""Pure domain rules: no I/O here, only values in and values out."""
