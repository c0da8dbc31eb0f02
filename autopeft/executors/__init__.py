"""autopeft.executors."""
