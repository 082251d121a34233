"""Batch re-scoring at scale: input cut into tasks, engines that score them, checkpoints."""


class RescoreError(Exception):
    """The run could not start or finish; OUTPUT and the reject file were left as they were."""
