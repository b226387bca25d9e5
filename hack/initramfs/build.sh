#!/usr/bin/env bash
# build.sh builds the hammer's boot files: the Debian kernel (vmlinuz) and an initramfs
# (hammer-initrd.gz) whose /init is the static hammer, with the kernel modules it loads, the
# mke2fs/mkfs.vfat/mkswap/mdadm/lvm binaries and their shared libraries, and /dev/console.
#
# Usage: hack/initramfs/build.sh            (run as root from anywhere in the repository)
#   The last line on stdout is the output directory holding vmlinuz and hammer-initrd.gz.
#
# Idempotent and cached: the output lives in
#   ${METALFORGE_CACHE:-$HOME/.cache/metalforge}/initramfs/<key>
# where <key> hashes the kernel version, the hammer's sources (hammer/, pkg/api,
# pkg/bootrpc/bootpb, go.mod, go.sum) and this script. A warm build only computes the key.
# Kernel packages are kept in .../initramfs/debs.
#
# Environment:
#   KERNEL_VERSION   kernel ABI to use (default: the pinned one below, or, when the mirror no
#                    longer has it, the one linux-image-amd64 depends on)
#   EXTRA_MODULES    more module names to include (space separated)
#   METALFORGE_CACHE cache root
set -euo pipefail

# Pinned kernel ABI (Debian 12, `apt-cache depends linux-image-amd64`). Bump when the mirror moves.
pinned_kernel=6.1.0-56

# Modules the hammer loads (with their dependencies from modules.dep). Names missing from the
# kernel (built in, or renamed) are skipped.
modules=(
	# QEMU/KVM guests
	virtio_pci virtio_net virtio_blk virtio_scsi virtio_rng failover net_failover e1000
	# common server NICs and disk controllers
	e1000e igb ixgbe tg3 ahci nvme sd_mod
	# file systems the layouts use, and ext4's checksum driver (a soft dependency)
	ext4 crc32c_generic crc32c_intel vfat fat nls_cp437 nls_ascii nls_iso8859_1 nls_utf8
	# software RAID (md) and LVM (device-mapper; the linear target is part of dm_mod)
	md_mod raid0 raid1 raid10 raid456 dm_mod
	# in-band BMC access
	ipmi_msghandler ipmi_devintf ipmi_si
	# LLDP and DHCP use AF_PACKET (built into Debian's kernel; listed in case it is not)
	af_packet
)
# shellcheck disable=SC2206 # word splitting is the point
modules+=(${EXTRA_MODULES:-})

# Binaries the hammer runs, from the host's Debian packages.
# lvm is the one binary behind pvcreate, vgcreate, ...; the hammer runs `lvm <command>`.
tools=(/usr/sbin/mke2fs /usr/sbin/mkfs.vfat /usr/sbin/mkswap /usr/sbin/mdadm /usr/sbin/lvm)

log() { echo "initramfs: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

((EUID == 0)) || die "run as root (dpkg -x, mknod /dev/console, depmod)"
repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
cache="${METALFORGE_CACHE:-${HOME}/.cache/metalforge}/initramfs"
mkdir -p "${cache}/debs"

"${repo}/hack/deps.sh" cpio kmod e2fsprogs dosfstools util-linux gzip mdadm lvm2

# kernel_version picks the kernel ABI: explicit, pinned if the mirror has it, else current.
kernel_version() {
	if [[ -n "${KERNEL_VERSION:-}" ]]; then
		echo "${KERNEL_VERSION}"
		return
	fi
	local v="${pinned_kernel}"
	if ls "${cache}/debs/linux-image-${v}-amd64_"*.deb >/dev/null 2>&1; then
		echo "${v}"
		return
	fi
	if ! apt-cache show "linux-image-${v}-amd64" >/dev/null 2>&1; then
		apt-get -o DPkg::Lock::Timeout=300 -qq update >&2 || true
	fi
	if apt-cache show "linux-image-${v}-amd64" >/dev/null 2>&1; then
		echo "${v}"
		return
	fi
	v="$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: linux-image-\(.*\)-amd64$/\1/p' | head -n1)"
	[[ -n "${v}" ]] || die "no linux-image-*-amd64 package found with apt-cache"
	log "pinned kernel ${pinned_kernel} is gone from the mirror, using ${v}"
	echo "${v}"
}

kver="$(kernel_version)-amd64"

# The key covers everything that goes into the output.
source_hash="$(
	cd "${repo}"
	{
		find hammer pkg/api pkg/bootrpc/bootpb -type f \( -name '*.go' -o -name '*.proto' \) ! -name '*_test.go' -print0 | sort -z |
			xargs -0 sha256sum
		sha256sum go.mod go.sum hack/initramfs/build.sh
		go version
	} | sha256sum | cut -c1-16
)"
key="${kver}-${source_hash}"
out="${cache}/${key}"
if [[ -s "${out}/hammer-initrd.gz" && -s "${out}/vmlinuz" ]]; then
	log "cached: ${out}"
	echo "${out}"
	exit 0
fi

start=${SECONDS}
work="$(mktemp -d "${cache}/.build-XXXXXX")"
trap 'rm -rf "${work}"' EXIT

# Kernel package: download once, unpack, index its modules.
deb="$(ls "${cache}/debs/linux-image-${kver}_"*.deb 2>/dev/null | head -n1 || true)"
if [[ -z "${deb}" ]]; then
	log "downloading linux-image-${kver}"
	(cd "${cache}/debs" && apt-get -o APT::Sandbox::User=root download -q "linux-image-${kver}" >&2)
	deb="$(ls "${cache}/debs/linux-image-${kver}_"*.deb | head -n1)"
fi
log "unpacking $(basename "${deb}")"
dpkg -x "${deb}" "${work}/kernel"
kmods="${work}/kernel/lib/modules/${kver}"
[[ -d "${kmods}" ]] || die "${deb} has no lib/modules/${kver}"
depmod -b "${work}/kernel" "${kver}"

root="${work}/root"
mkdir -p "${root}"/{proc,sys,dev,run,tmp,etc,mnt/target,usr/sbin,lib/modules/"${kver}"}
ln -s usr/sbin "${root}/sbin"

# Modules: resolve each wanted module and its dependencies from the full modules.dep.
declare -A want=()
for m in "${modules[@]}"; do
	line="$(grep -E "(^|/)${m//_/[-_]}\.ko(\.[a-z]+)?:" "${kmods}/modules.dep" || true)"
	if [[ -z "${line}" ]]; then
		log "module ${m} is built in or absent: skipped"
		continue
	fi
	for f in ${line//:/}; do
		want["${f}"]=1
	done
done
for f in "${!want[@]}"; do
	mkdir -p "${root}/lib/modules/${kver}/$(dirname "${f}")"
	cp "${kmods}/${f}" "${root}/lib/modules/${kver}/${f}"
done
cp "${kmods}"/modules.{order,builtin,builtin.modinfo} "${root}/lib/modules/${kver}/" 2>/dev/null || true
depmod -b "${root}" "${kver}"
log "${#want[@]} module files"

# The hammer itself is /init.
log "building the hammer"
(cd "${repo}" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "${root}/init" ./hammer)

# mkfs tools with their shared libraries (paths as on the host, so the loader finds them).
copy_with_libs() {
	local bin="$1" real lib
	real="$(readlink -f "${bin}")"
	cp "${real}" "${root}/usr/sbin/$(basename "${bin}")"
	for lib in $(ldd "${real}" | grep -o '/[^ ]*'); do
		if [[ ! -e "${root}${lib}" ]]; then
			mkdir -p "${root}$(dirname "${lib}")"
			cp -L "${lib}" "${root}${lib}"
		fi
	done
}
for t in "${tools[@]}"; do
	[[ -x "${t}" ]] || die "${t} missing (e2fsprogs, dosfstools, util-linux, mdadm, lvm2)"
	copy_with_libs "${t}"
done
[[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "${root}/etc/"

# PID 1 has no output without /dev/console.
mknod -m 600 "${root}/dev/console" c 5 1
mknod -m 666 "${root}/dev/null" c 1 3

# Reproducible archive: fixed mtimes, sorted names.
find "${root}" -exec touch -h -d @0 {} +
mkdir -p "${work}/out"
(cd "${root}" && find . -print0 | LC_ALL=C sort -z | cpio --null --create --format=newc --reproducible --quiet) |
	gzip -9n >"${work}/out/hammer-initrd.gz"
cp "${work}/kernel/boot/vmlinuz-${kver}" "${work}/out/vmlinuz"
echo "${kver}" >"${work}/out/kernel-version"

mkdir -p "${cache}"
rm -rf "${out}"
mv "${work}/out" "${out}"
# Keep the three newest builds; older keys are from superseded sources.
find "${cache}" -mindepth 1 -maxdepth 1 -type d -name '*-amd64-*' -printf '%T@ %p\n' | sort -rn | tail -n +4 |
	cut -d' ' -f2- | xargs -r rm -rf
log "built in $((SECONDS - start)) s: vmlinuz $(du -h "${out}/vmlinuz" | cut -f1), hammer-initrd.gz $(du -h "${out}/hammer-initrd.gz" | cut -f1)"
echo "${out}"
