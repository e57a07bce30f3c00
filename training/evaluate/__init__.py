"""Evaluation of CLIP checkpoints: image-text retrieval on a build's test split, zero-shot scene classification."""
