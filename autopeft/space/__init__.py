"""autopeft.space."""
