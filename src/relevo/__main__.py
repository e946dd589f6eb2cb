"""`python -m relevo` is the `relevo` command."""

from relevo.cli import main

main()
