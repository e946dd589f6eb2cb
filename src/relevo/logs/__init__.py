"""Log output for `relevo run`: text or JSON lines, each carrying the message fields."""
