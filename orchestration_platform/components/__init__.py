"""Component types: one class per pipeline kind (the YAML under defs/ says what, the class says how)."""
