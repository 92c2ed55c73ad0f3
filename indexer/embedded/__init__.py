"""The embedded engine's storage (single-machine default): versioned index folders, and fsync'ed logs for product updates, reviews and shopper events."""
