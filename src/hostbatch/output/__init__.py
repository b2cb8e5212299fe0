"""hostbatch.output."""
