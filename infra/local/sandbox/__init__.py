"""Simulators of the payment providers' protocols: the local cloud serves them, tests wrap them."""
