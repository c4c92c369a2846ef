"""`make bench`: measures the project's targets and writes them to BENCHMARKS.md.

Each area has a module ``benchmarks/bench_<area>.py`` with ``run(quick: bool) -> str`` returning a Markdown
section (a heading, the command that made it, a table of figures with their targets). ``python -m benchmarks``
runs them all (or those named with ``--only``) and rewrites the sections it ran, keeping the others.
"""
