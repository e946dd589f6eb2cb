"""What `relevo run` tells an operator while it runs: a live view on a terminal, a
summary line per interval in a log."""
