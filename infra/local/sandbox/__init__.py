"""Simulators of the payment providers, for the local cloud and the tests' fakes."""
