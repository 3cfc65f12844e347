"""Progressive delivery: a route's flag moves through steps by itself, guarded by evidence.

``gateway rollout start ROUTE`` puts a rollout in the shared flag state. Every worker records
the outcomes of the rollout's current step (``outcomes``) into its worker report; one worker at
a time (the lease holder, ``controller``) adds every worker's outcomes up, compares the new side
with legacy for the same routes in the same window (``analysis``), and advances the step or
rolls back to legacy, as one audited flag change.
"""
