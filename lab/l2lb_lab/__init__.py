"""l2lb's local lab: a real Kubernetes control plane plus a layer-2 LAN of network namespaces.

`lab up` (l2lb_lab.cli) builds it from pki -> controlplane -> lan -> forwarders -> kubelets;
`lab down` removes all of it. Names shared with tests and the agent live in l2lb_lab.topology.
"""
