"""hostbatch.cli."""
