"""`promptlang explain`: what a model predicts at a pattern's mask, and why, for a few examples."""
