"""Payments: the providers' adapters against their fakes."""
