"""Embeddings, hypernetworks, the student rate RNN and the baselines."""
