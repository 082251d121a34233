"""Training: tokenizer, domain pretraining, multi-task fine-tuning, calibration, ONNX export.

``python -m training.recipe`` (``make train``) runs every step from ``../shared/data`` and writes
``models/``. Nothing here is imported by the scoring path.
"""
