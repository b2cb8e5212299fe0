"""hostbatch.engine."""
