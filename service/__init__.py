"""qinglang: content-risk scoring for Chinese public-account platforms.

One post's way through the service, one module per stage: :mod:`service.normalise`,
:mod:`service.classify` (with :mod:`service.features` and :mod:`service.evidence`),
:mod:`service.decide`, assembled by :mod:`service.pipeline` for the CLI, the API and batch jobs.
"""
