"""The market-data gRPC service: generator (pure numpy), servicer (thin), app (wiring)."""
