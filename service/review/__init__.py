"""What follows a score: the review queue, credit (art13), dispositions (art19), reports and
appeals (art20), the re-registration check (art8, art10, art19) and the hash-chained records
(art19).

Plain rules over plain values, free of web and database details: the repository
(:mod:`service.storage`) runs them inside its transactions and the routers
(:mod:`service.api.review`) only translate HTTP.
"""
