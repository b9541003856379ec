"""LSTM baseline (placeholder, being written)."""
