"""Sans-I/O protocol parsers and state machines: bytes in, typed actions out, no sockets."""
