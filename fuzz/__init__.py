"""Fuzzing the gateway's served OpenAPI document with schemathesis (``python -m fuzz.run``)."""
