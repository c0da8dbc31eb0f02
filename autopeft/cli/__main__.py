"""``python -m autopeft.cli``: the command line."""

from autopeft.cli import main

main()
