"""Reporting: aggregation of run records (``summary``), the statistics (``stats``), intervals and
paired tests (``uncertainty``), the cost axes and their Pareto fronts (``costs``), what a report is
drawn from (``inputs``), published numbers (``reference``), tables (``tables``), plots (``plots``),
writing them all (``generate``), and two result folders side by side (``comparison``)."""
