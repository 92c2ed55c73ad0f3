"""The OpenSearch engine's storage: the client and its failover, the index body, versioned indices behind an alias, and the update, review and UBI event indices."""
