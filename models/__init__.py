"""Word-level recurrent language models: network, vocabulary, data, training, checkpoints.

This package imports nothing from ``service``: it can train and evaluate on its own.
"""
