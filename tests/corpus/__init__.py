"""Tests that read the shared corpus of real and generated messages (../shared/corpus)."""
