"""Batch re-scoring at scale: input cut into tasks, engines that score them, checkpoints."""
