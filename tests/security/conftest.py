# The RS256 key pair and settings of the JWT tests, shared with the attacks on them here.
from tests.gateway.test_jwt import rs256, rsa_pems  # noqa: F401
