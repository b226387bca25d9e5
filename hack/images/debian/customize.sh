#!/usr/bin/env bash
# customize.sh is build.sh's mmdebstrap customize hook for the debian and firewall images: it
# installs metal-phonehome and the metalforge configuration into the root file system $1.
# Environment (set by build.sh): METALFORGE_IMAGE_ASSETS (this directory), METALFORGE_PHONEHOME_BIN,
# METALFORGE_IMAGE_NAME; for the firewall image also what hack/images/firewall/customize.sh needs.
set -euo pipefail

root="$1"
assets="${METALFORGE_IMAGE_ASSETS:?}"

install -m 0755 "${METALFORGE_PHONEHOME_BIN:?}" "${root}/usr/sbin/metal-phonehome"
install -m 0644 "${assets}/metal-phonehome.service" "${root}/etc/systemd/system/metal-phonehome.service"
install -m 0644 "${assets}/ssh-hostkey.service" "${root}/etc/systemd/system/metalforge-ssh-hostkey.service"
install -D -m 0644 "${assets}/sshd.conf" "${root}/etc/ssh/sshd_config.d/metalforge.conf"
install -D -m 0644 "${assets}/dhcp.network" "${root}/etc/systemd/network/90-metalforge-dhcp.network"
install -D -m 0644 "${assets}/wait-online.conf" \
	"${root}/etc/systemd/system/systemd-networkd-wait-online.service.d/metalforge.conf"
install -d -m 0700 "${root}/etc/metalforge"

chroot "${root}" systemctl enable systemd-networkd.service metal-phonehome.service metalforge-ssh-hostkey.service
if [[ "${METALFORGE_IMAGE_NAME:-}" == firewall ]]; then
	"${METALFORGE_FIREWALL_ASSETS:?}/customize.sh" "${root}"
fi

# Per-machine state must not be baked into the image: host keys, machine-id, hostname, DNS.
rm -f "${root}"/etc/ssh/ssh_host_*
: >"${root}/etc/machine-id"
rm -f "${root}/var/lib/dbus/machine-id"
printf 'metalforge\n' >"${root}/etc/hostname"
rm -f "${root}/etc/resolv.conf"
: >"${root}/etc/resolv.conf"
