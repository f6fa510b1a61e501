"""Answers read from outcomes: what happened, and what admins should look at."""
