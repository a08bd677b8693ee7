"""Payments: plans, orders, the providers' notifications and reconciliation.

`gateway` is the port every provider adapter implements (`wechatpay`, `alipay`); the
adapters import their SDKs themselves, so only the functions that pay load them.
"""
