"""Reporting: aggregation of run records (``summary``), published numbers (``reference``), tables
(``tables``), plots (``plots``) and writing them all (``generate``)."""
