"""The lab kubelet, one part of the lab: one process per node, inside the node's netns.

`python -m l2lb_lab.kubelet` runs `main` (wiring); the modules it wires:
node (Node object, heartbeat Lease), ../pods.py (Pod workers), container (one container's
state machine), runtime (how a container runs: runc with the Pod's securityContext, or a
plain process), oci (the OCI runtime spec rendered from a Pod, pure), images (what an image
name means in the lab, env and downward API, pure), process (host processes: spawn, adopt,
signal), tokens (ServiceAccount tokens), probe, status (Pod status, pure), events, api,
relay and ../proxy.py (kube-proxy's part).  Importing the package starts nothing.
"""

PACKAGE = __name__  # what `lab up` runs with `python -m`
