#!/usr/bin/env bash
# customize.sh is the firewall image's part of build.sh's mmdebstrap customize hook (run after
# hack/images/debian/customize.sh): metal-osinit (the first-boot firewall setup), firewall-controller,
# their units, FRR with bgpd, forwarding sysctls. Environment (set by build.sh):
# METALFORGE_FIREWALL_ASSETS (this directory), METALFORGE_OSINIT_BIN, METALFORGE_FIREWALL_CONTROLLER_BIN.
set -euo pipefail

root="$1"
assets="${METALFORGE_FIREWALL_ASSETS:?}"

install -m 0755 "${METALFORGE_OSINIT_BIN:?}" "${root}/usr/sbin/metal-osinit"
install -D -m 0755 "${METALFORGE_FIREWALL_CONTROLLER_BIN:?}" "${root}/usr/local/bin/firewall-controller"
install -m 0644 "${assets}/metalforge-firewall.service" "${root}/etc/systemd/system/metalforge-firewall.service"
install -m 0644 "${assets}/firewall-controller.service" "${root}/etc/systemd/system/firewall-controller.service"
install -D -m 0644 "${assets}/sysctl.conf" "${root}/etc/sysctl.d/90-metalforge-firewall.conf"

# FRR: bgpd on (Debian ships it off); frr.conf comes from metal-osinit firewall at first boot.
sed -i 's/^bgpd=no/bgpd=yes/' "${root}/etc/frr/daemons"
grep -q '^bgpd=yes' "${root}/etc/frr/daemons" || { echo "customize.sh: cannot enable bgpd" >&2; exit 1; }

# firewall-controller owns the ruleset: nftables.service would flush it on every (re)start.
chroot "${root}" systemctl disable nftables.service 2>/dev/null || true
chroot "${root}" systemctl enable frr.service metalforge-firewall.service firewall-controller.service
