"""Floor 1: settings, event bus, errors, logging, ids, clock and security primitives."""
