"""l2lb's in-cluster agent: the LoadBalancer IP controller and the layer-2 speaker.

Entry point: `python -m l2lb_agent controller|speaker` (see `l2lb_agent.cli`). The package has
three rings, kept apart by import-linter (`.importlinter` at the repo root): a pure core
(config, allocator, services, ownership, timing, frames), I/O adapters (kube, leader,
announcer, metrics) and the components that wire them (controller, speaker, cli).
"""

__version__ = "0.1.0"
