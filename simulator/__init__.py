"""A tool, not the ledger: writes simulated incidents (export bundles with planted errors) for
the demo, tests and benchmarks. Pure Python; only its `simulate_incident` command uses Django."""
