"""hostbatch.transport."""
