"""Near-duplicates across accounts: coordinated batches (art18.4), the earliest source and fake
originality (art18.6, art17), and the confirmed-rumour bank (art13).

``fingerprint`` (canonical text, MinHash) → ``index`` (the windowed LSH, match) → ``cluster``
(earliest source, batches) → ``match`` (the rules, and the step the pipeline calls); ``bank`` is
the confirmed-rumour index.
"""

from service.neardup.match import Finding, NearDuplicates

__all__ = ["Finding", "NearDuplicates"]
