"""Calls to the outside over HTTP: the one client every provider and upstream goes through
(`app.outbound.client`), bounded by a total deadline (`app.outbound.deadline`). SDKs that
bring their own transport (Tencent Cloud, COS, the payment SDKs) keep it; `deadline.within`
bounds their calls too, by the sockets a call opens (the payment SDKs'). Importing the
package loads nothing; urllib3 comes with `client`."""
