"""autopeft.methods."""
