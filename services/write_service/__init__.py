"""write-service: takes commands over REST and records state and events atomically in the write database."""
