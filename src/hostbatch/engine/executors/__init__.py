"""hostbatch.engine.executors."""
