# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options every l2lb module uses to reach the cluster, documented once."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description: Path to the kubeconfig; the client's default (E(KUBECONFIG), C(~/.kube/config)) if unset.
    type: path
  context:
    description: Context in the kubeconfig; its current context if unset.
    type: str
"""
