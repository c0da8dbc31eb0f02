"""autopeft.storage."""
