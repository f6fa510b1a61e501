"""asyncio listeners: inbound SMTP, POP3; TLS and connection limits they share."""
