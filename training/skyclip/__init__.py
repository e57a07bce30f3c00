"""SkyCLIP: continual pre-training of CLIP on a build's kept pairs (open_clip_train underneath)."""
