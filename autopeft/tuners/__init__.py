"""autopeft's own peft tuners, each a folder laid out as peft's."""
