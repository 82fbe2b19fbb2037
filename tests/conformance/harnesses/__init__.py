"""One module per adapter family; each defines ``HARNESSES``, a list of harness instances."""
