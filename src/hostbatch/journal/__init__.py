"""hostbatch.journal."""
