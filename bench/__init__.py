"""Benchmarks for dsplatform; each prints a table and writes bench/results/<name>.json.

Run from the repository root: ``.venv/bin/python -m bench.run_all`` (or one module, e.g.
``.venv/bin/python -m bench.bench_quota --help``).
"""
