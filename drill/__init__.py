"""The reliability drill: real processes, injected faults, and a count of every accepted job."""
