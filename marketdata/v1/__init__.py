"""Generated code for package marketdata.v1 (run `make proto`); never edit by hand."""
