# Network topology for tests (source this file; needs root and iproute2).
#
#   topo_init              a hub namespace with bridge br0 (10.99.0.0/24); installs an EXIT
#                          trap that removes everything created (call topo_cleanup yourself if
#                          you replace the trap)
#   topo_member NAME IP    namespace $TOPO-NAME, veth to the bridge, address IP/24, lo up
#   topo_tap NAME          a tap device NAME on the bridge (for a qemu guest run by topo_hub)
#   topo_hub CMD...        run CMD in the hub namespace (qemu with -netdev tap, dumpcap)
#   topo_in NAME CMD...    run CMD in member NAME's namespace
#   topo_cut NAME / topo_heal NAME   take member NAME's link to the bridge down / up
#   topo_mac NAME          the MAC address of member NAME's interface
#   topo_host IP           the host itself on the bridge (veth from the root namespace)
#   topo_cleanup           delete every namespace (and so every device) this topology made
#
# Every namespace is named "$TOPO-*" where TOPO is unique per run, so parallel runs and
# leftovers of a crashed run cannot collide; topo_cleanup also kills processes still inside.
TOPO=${TOPO:-ftl$$}
TOPO_NS=()

topo_cleanup() {
  # Safe under `set -e` (it runs from EXIT traps): no step may fail the function.
  local ns
  ip link del "${TOPO}h" 2>/dev/null || true
  for ns in "${TOPO_NS[@]}"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  TOPO_NS=()
}

topo_init() {
  ip netns add "$TOPO-hub" || return 1
  TOPO_NS+=("$TOPO-hub")
  trap topo_cleanup EXIT
  ip -n "$TOPO-hub" link set lo up
  ip -n "$TOPO-hub" link add br0 type bridge
  # no STP, no forwarding delay: a port forwards as soon as it is up
  ip -n "$TOPO-hub" link set br0 type bridge stp_state 0 forward_delay 0
  ip -n "$TOPO-hub" addr add 10.99.0.254/24 dev br0
  ip -n "$TOPO-hub" link set br0 up
}

topo_member() { # NAME IP
  local ns="$TOPO-$1"
  ip netns add "$ns" || return 1
  TOPO_NS+=("$ns")
  ip -n "$ns" link set lo up
  ip -n "$TOPO-hub" link add "v-$1" type veth peer name eth0 netns "$ns"
  ip -n "$TOPO-hub" link set "v-$1" master br0 up
  ip -n "$ns" addr add "$2/24" dev eth0
  ip -n "$ns" link set eth0 up
}

topo_tap() { # NAME
  ip -n "$TOPO-hub" tuntap add "$1" mode tap || return 1
  ip -n "$TOPO-hub" link set "$1" master br0 up
}

topo_hub() { ip netns exec "$TOPO-hub" "$@"; }
topo_in() { local n=$1; shift; ip netns exec "$TOPO-$n" "$@"; }
topo_cut() { ip -n "$TOPO-hub" link set "v-$1" down; }
topo_heal() { ip -n "$TOPO-hub" link set "v-$1" up; }
topo_mac() { ip -n "$TOPO-$1" -o link show eth0 | sed 's/.*link\/ether \([^ ]*\).*/\1/'; }

# The host itself on the bridge (a veth from the root namespace), so that tools run on the
# host reach the members: topo_host IP
topo_host() {
  ip link add "${TOPO}h" type veth peer name host0 netns "$TOPO-hub" || return 1
  ip -n "$TOPO-hub" link set host0 master br0 up
  ip addr add "$1/24" dev "${TOPO}h"
  ip link set "${TOPO}h" up
}
