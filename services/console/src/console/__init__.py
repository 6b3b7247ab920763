"""Tally's ops console: read-only pages over the four services' read APIs and Kafka, plus the
replay of a dead letter. It owns no billing state."""
