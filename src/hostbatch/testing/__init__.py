"""hostbatch.testing."""
