"""Python modules generated from protos/marketdata (run `make proto`)."""
