"""autopeft.allocation."""
