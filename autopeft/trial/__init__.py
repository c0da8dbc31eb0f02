"""Running one trial: building, training and measuring a PEFT model."""
