"""guest package."""
