"""Delivery to many residents: one durable outbox in the database, one rate-limited sender."""
