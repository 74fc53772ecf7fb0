"""Training: the loop, the optimizer, human-feedback rounds and the `clickpose train` recipe."""
