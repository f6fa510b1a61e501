"""Domain types shared by every layer; imports nothing else of ours."""
