"""Stores by role: metadata (SQL), blobs (files or SQL). Interfaces in `interfaces`."""
