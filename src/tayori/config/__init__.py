"""Typed settings from one TOML file; the config reference in docs/ is generated from here."""
