"""The HTTP API's contract shared by every app: the error shape, strict JSON in, JSON out."""
