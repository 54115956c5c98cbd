"""One module per integration; each turns a Notification into a stored message and delivers
it (see base.py for the interface)."""
