"""Checks on the connecting host and the sender: DNSBL, FCrDNS, HELO, sender domain."""
