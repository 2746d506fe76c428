"""Street character recognition (SVHN-like house-number strings, whole-string accuracy)."""
