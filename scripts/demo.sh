#!/usr/bin/env bash
# `make demo`: the layer-2 tutorial (shared/seed/layer2-tutorial.txt), end to end, on the local lab.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
k() { lab kubectl "$@"; }

say "1. Bring up the lab: a real Kubernetes control plane and a LAN of three nodes"
lab up

say "2. Install l2lb with Ansible: ansible-playbook -i inventory/lab site.yml"
ansible-playbook -i inventory/lab site.yml

say "kubectl get pods -n l2lb-system -o wide"
k get pods -n l2lb-system -o wide

say "The agents run as containers: runc runs the l2lb-agent image's python with each Pod's securityContext"
k get pods -n l2lb-system -o custom-columns='POD:.metadata.name,CONTAINER:.status.containerStatuses[0].containerID' \
  || true
ps -C runc,python3 -o pid,ppid,user,args | grep -E 'PID|l2lb-system|l2lb_agent' \
  | sed -E 's/ --(root|log|log-format) [^ ]+//g; s|--bundle [^ ]*/([^/ ]+)|--bundle .../\1|' | cut -c1-150 || true

say "3. The tutorial's nginx Deployment and LoadBalancer Service"
k apply -f tests/manifests/tutorial-nginx.yaml
k rollout status deployment/nginx --timeout=120s
for _ in $(seq 1 60); do
  ip=$(k get service nginx -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null || true)
  [ -n "$ip" ] && break
  sleep 1
done
say "kubectl get service nginx"
k get service nginx
[ "${ip:-}" = 192.168.1.240 ] || { echo "expected EXTERNAL-IP 192.168.1.240, got '${ip:-none}'" >&2; exit 1; }

say "Who answers ARP for $ip, seen from the router (namespace l2lb-client)"
ip netns exec l2lb-client arping -c 3 -w 3 -I eth0 "$ip" || true
mac=$(ip netns exec l2lb-client arping -c 1 -w 2 -I eth0 "$ip" | grep -ioE '([0-9a-f]{2}:){5}[0-9a-f]{2}' | head -n 1 | tr 'A-F' 'a-f')
for n in 1 2 3; do
  m=$(ip netns exec "l2lb-node$n" cat /sys/class/net/eth0/address)
  [ "$m" = "$mac" ] && echo "$ip is-at $mac: that is node$n"
done

say "Which node announces each IP, as the API server records it: kubectl get ipannouncements"
k get ipannouncements

say "The speakers' log lines for the announcement (kubectl logs -l component=speaker -n l2lb-system)"
lab logs -n l2lb-system -l component=speaker 2>/dev/null | grep -E "nginx|$ip" | tail -n 10 || true

say "curl http://$ip  (from the router's namespace)"
ip netns exec l2lb-client curl -s --max-time 5 "http://$ip" | grep -o -m1 'Welcome to nginx!' | head -n 1

cat <<MSG

The lab keeps running. Explore it:
  .venv/bin/lab kubectl get svc,pods -A -o wide
  ip netns exec l2lb-client curl http://$ip
  ip netns exec l2lb-client arping -I eth0 $ip
  .venv/bin/lab node-down node1   # a live failover; then: .venv/bin/lab node-up node1
Stop it with: make lab-down
MSG
