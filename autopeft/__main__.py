"""``python -m autopeft``: the command line (:mod:`autopeft.cli`)."""

from autopeft.cli import main

if __name__ == "__main__":
    main()
