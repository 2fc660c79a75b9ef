"""read-service: serves queries from read models that the projector keeps up to date in the read database."""
