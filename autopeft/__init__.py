"""autopeft: automatic PEFT configuration search."""
