"""Virtual keys, JWTs and who a request is: the gateway's keys-and-auth app."""
