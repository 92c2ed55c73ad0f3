"""What the shop knows beyond the text: review sentiment (classifier, n-gram head, ingest), shopper events (profiles, popularity) and how much an event may weigh."""
