"""Member authentication: password hashes, login throttling, the authenticator servers use."""
