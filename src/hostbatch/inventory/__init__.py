"""hostbatch.inventory."""
