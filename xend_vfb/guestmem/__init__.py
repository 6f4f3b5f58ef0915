"""guestmem package."""
