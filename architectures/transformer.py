"""Causal transformer baseline (placeholder, being written)."""
