"""Per-site workers: actions routed to a queue per site (Celery on RabbitMQ), run next to their targets.

The engine sends each action whose target is at a worker site to that site's queue (:mod:`.dispatch`); ``agent
worker --site S`` consumes it (:mod:`.worker`), claims the action in the journal with a lease kept alive by a
heartbeat (:mod:`.lease`) and runs it with the same :class:`agent.lifecycle.ActionRunner` as a single machine.
Delivery is at least once (late acknowledgement), the effect exactly once (the claim): see docs/workers.md.
"""
