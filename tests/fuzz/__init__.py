"""Coverage-guided fuzzing of the MIME layer (atheris / libFuzzer)."""
