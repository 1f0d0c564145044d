"""Exercises of chapter 1, "What KL divergence measures"."""
