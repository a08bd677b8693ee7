"""Payments: the providers' adapters against their protocol fakes."""
