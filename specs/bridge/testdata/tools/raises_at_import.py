"""A tools module that raises at import, as a missing model file does."""

open("/no/such/model.bin", "rb")  # noqa: SIM115
