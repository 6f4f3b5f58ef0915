"""rfb package."""
