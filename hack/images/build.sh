#!/usr/bin/env bash
# build.sh builds a metalforge machine image: a root file system as tar.zst that the hammer
# streams onto a machine's root partition and then kexecs into (/boot/vmlinuz-<v> and
# /boot/initrd.img-<v>, plus /vmlinuz and /initrd.img symlinks).
#
# Usage: hack/images/build.sh small|debian|firewall
#
#   small     Debian kernel + busybox-static + metal-phonehome, a tiny Go initrd (metal-osinit).
#             For the end-to-end tests: ~20 MB, boots to "Phoned Home" in seconds under TCG.
#   debian    mmdebstrap minbase bookworm + systemd, udev, networkd (DHCP), openssh-server (ed25519
#             host key made at first boot), linux-image-amd64, initramfs-tools (listed modules
#             only), metal-phonehome as a systemd unit.
#   firewall  debian + frr + nftables + firewall-controller (static, /usr/local/bin, a systemd unit)
#             + metal-osinit (first-boot setup: firewall.json, frr.conf, VRF devices from the
#             allocation), features [firewall]. Needs ./cmd/firewall-controller.
#
# Needs root (mknod, chroot, ownership). Installs its Debian packages through hack/deps.sh. Outputs
# go to ${METALFORGE_CACHE:-~/.cache/metalforge}/images/<name>-<key>, keyed by every input (this
# script, hack/images/<name>/ (firewall: debian/ and firewall/), the content of the binaries it
# builds, package versions), so a second run with the same inputs only prints the directory. The
# directory holds <name>.tar.zst, <name>.tar.zst.sha256 and <name>.json {name, os, osVersion,
# features, sha256, size, kernel}. Progress goes to stderr; the last line on stdout is the output
# directory.
#
# Environment: METALFORGE_CACHE (cache root), METALFORGE_KERNEL_VERSION (e.g. 6.1.0-56-amd64;
# default: the hammer initramfs' pinned kernel, else what linux-image-amd64 depends on), ZSTD_LEVEL (default 3), METALFORGE_KEEP_WORK=1 (keep
# the build directory for debugging).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
cache="${METALFORGE_CACHE:-${HOME}/.cache/metalforge}/images"
debs="${cache}/debs"
zstd_level="${ZSTD_LEVEL:-3}"
apt_opts=(-q -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
work="" # the build directory, removed on exit

log() { printf '%s build.sh: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

# apt_ready makes sure the package lists know linux-image-amd64 (a fresh machine has none).
apt_ready() {
	if ! apt-cache policy linux-image-amd64 2>/dev/null | grep -q 'Candidate: [0-9]'; then
		log "apt-get update"
		apt-get "${apt_opts[@]}" update >&2
	fi
}

# candidate prints the version apt would install of a package.
candidate() {
	local v
	v="$(apt-cache policy "$1" | awk '/Candidate:/ {print $2}')"
	[[ -n "${v}" && "${v}" != "(none)" ]] || die "no candidate version of $1"
	printf '%s\n' "${v}"
}

# fetch_deb downloads a package into the .deb cache (once) and prints its path.
fetch_deb() {
	local pkg="$1" ver file
	ver="$(candidate "${pkg}")"
	file="${debs}/${pkg}_${ver//:/%3a}_amd64.deb"
	if [[ ! -s "${file}" ]]; then
		local tmp
		tmp="$(mktemp -d "${debs}/.dl.XXXXXX")"
		chmod 755 "${tmp}"
		chown _apt "${tmp}" 2>/dev/null || true # apt's download sandbox user
		log "download ${pkg} ${ver}"
		(cd "${tmp}" && apt-get "${apt_opts[@]}" download "${pkg}=${ver}" >&2) || die "apt-get download ${pkg}=${ver} failed"
		mv "${tmp}"/*.deb "${file}"
		rmdir "${tmp}"
	fi
	printf '%s\n' "${file}"
}

# kernel_version picks the kernel ABI: explicit, else the one the hammer's initramfs pins
# (hack/initramfs/build.sh) while the mirror has it, else what linux-image-amd64 depends on.
kernel_version() {
	if [[ -n "${METALFORGE_KERNEL_VERSION:-}" ]]; then
		printf '%s\n' "${METALFORGE_KERNEL_VERSION}"
		return
	fi
	local pinned
	pinned="$(sed -n 's/^pinned_kernel=\([0-9][^ ]*\)$/\1/p' "${repo}/hack/initramfs/build.sh" 2>/dev/null | head -n1)"
	if [[ -n "${pinned}" ]] && apt-cache show "linux-image-${pinned}-amd64" >/dev/null 2>&1; then
		printf '%s\n' "${pinned}-amd64"
		return
	fi
	apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: linux-image-\([0-9].*-amd64\)$/\1/p' | head -n1
}

# build_go builds the static Go binaries of the image into $1.
build_go() {
	local out="$1"
	shift
	local version
	version="$(cat "${repo}/VERSION" 2>/dev/null || echo dev)"
	for cmd in "$@"; do
		(cd "${repo}" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -buildvcs=false \
			-ldflags "-s -w -X main.version=${version}" -o "${out}/${cmd}" "./cmd/${cmd}") ||
			die "go build ./cmd/${cmd} failed"
	done
}

# key hashes its arguments (strings, or files and directories when they exist) into 16 hex digits.
key() {
	local a
	for a in "$@"; do
		if [[ -d "${a}" ]]; then
			(cd "${a}" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		elif [[ -f "${a}" ]]; then
			sha256sum <"${a}"
		else
			printf '%s\n' "${a}"
		fi
	done | sha256sum | cut -c1-16
}

# pack writes <name>.tar.zst of the root directory $2 into $3 and checks its paths; with "root"
# as $4 every file is owned by root.
pack() {
	local name="$1" root="$2" out="$3" owner="${4:-}"
	local tar_opts=(--sort=name --numeric-owner -C "${root}")
	if [[ "${owner}" == root ]]; then
		tar_opts+=(--owner=0 --group=0)
	fi
	log "pack ${name}.tar.zst (zstd -${zstd_level})"
	tar "${tar_opts[@]}" -cf - . | zstd -q -T0 "-${zstd_level}" -o "${out}/${name}.tar.zst"
	# No absolute paths, no "..": the hammer extracts as root onto a mounted file system.
	local bad
	bad="$(zstd -dc "${out}/${name}.tar.zst" | tar -tf - | grep -E '^/|(^|/)\.\.(/|$)' | head -n5 || true)"
	[[ -z "${bad}" ]] || die "${name}.tar.zst has unsafe paths: ${bad}"
}

# finish writes the checksum and the JSON description next to the tar.
finish() {
	local name="$1" out="$2" os="$3" osver="$4" features="$5" kver="$6"
	local sum size
	sum="$(sha256sum "${out}/${name}.tar.zst" | cut -d' ' -f1)"
	size="$(stat -c %s "${out}/${name}.tar.zst")"
	printf '%s  %s\n' "${sum}" "${name}.tar.zst" >"${out}/${name}.tar.zst.sha256"
	printf '{"name": "%s", "os": "%s", "osVersion": "%s", "features": [%s], "sha256": "%s", "size": %s, "kernel": "%s"}\n' \
		"${name}" "${os}" "${osver}" "${features}" "${sum}" "${size}" "${kver}" >"${out}/${name}.json"
	log "${name}: $((size / 1024 / 1024)) MiB compressed, sha256 ${sum}"
}

# require_files fails unless every glob below root matches something.
require_files() {
	local root="$1" g
	shift
	for g in "$@"; do
		compgen -G "${root}/${g}" >/dev/null || die "image lacks ${g}"
	done
}

# --- small ---------------------------------------------------------------------------------------

# Modules of the small image and its initrd: root disk (virtio, SCSI), NIC, ext4, the EFI vfat.
small_modules=(virtio_pci virtio_blk virtio_scsi sd_mod virtio_net crc32c_generic ext4 vfat nls_cp437 nls_ascii)

build_small() {
	local work="$1" out="$2" kver="$3" kdeb="$4" bbdeb="$5"
	local root="${work}/root" k="${work}/kernel" initrd="${work}/initrd"
	mkdir -p "${root}" "${k}" "${initrd}"

	log "unpack kernel ${kver}"
	dpkg -x "${kdeb}" "${k}"
	depmod -b "${k}" "${kver}"
	dpkg -x "${bbdeb}" "${work}/busybox"

	local d
	for d in bin sbin usr/bin usr/sbin usr/share/udhcpc etc/init.d etc/metalforge boot dev proc sys run tmp root \
		var/log "lib/modules/${kver}"; do
		mkdir -p "${root}/${d}"
	done
	chmod 700 "${root}/root" "${root}/etc/metalforge"
	chmod 1777 "${root}/tmp"

	# busybox and one relative symlink per applet.
	install -m 0755 "${work}/busybox/bin/busybox" "${root}/bin/busybox"
	local applet rel
	while read -r applet; do
		[[ "${applet}" == bin/busybox || "${applet}" == linuxrc ]] && continue
		rel="$(realpath -m --relative-to="$(dirname "/${applet}")" /bin/busybox)"
		ln -sfn "${rel}" "${root}/${applet}"
	done < <("${root}/bin/busybox" --list-full)

	# Kernel and the module subset (with dependencies, in the same tree layout), re-depmodded.
	install -m 0644 "${k}/boot/vmlinuz-${kver}" "${root}/boot/vmlinuz-${kver}"
	install -m 0644 "${k}/boot/config-${kver}" "${root}/boot/config-${kver}"
	local files
	files="$(for m in "${small_modules[@]}"; do
		modprobe -d "${k}" -S "${kver}" --show-depends "${m}" | awk '$1 == "insmod" {print $2}'
	done | LC_ALL=C sort -u)"
	[[ -n "${files}" ]] || die "no modules resolved"
	local f
	for f in ${files}; do
		install -D -m 0644 "${f}" "${root}/${f#"${k}/"}"
	done
	cp "${k}/lib/modules/${kver}"/modules.{order,builtin,builtin.modinfo} "${root}/lib/modules/${kver}/"
	depmod -b "${root}" "${kver}"

	# The initrd: metal-osinit as /init, the same modules, a console node.
	mkdir -p "${initrd}"/{dev,proc,sys,newroot,lib}
	install -m 0755 "${work}/bin/metal-osinit" "${initrd}/init"
	cp -a "${root}/lib/modules" "${initrd}/lib/"
	mknod -m 600 "${initrd}/dev/console" c 5 1
	mknod -m 666 "${initrd}/dev/null" c 1 3
	(cd "${initrd}" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) |
		gzip -9 >"${root}/boot/initrd.img-${kver}"
	ln -s "boot/vmlinuz-${kver}" "${root}/vmlinuz"
	ln -s "boot/initrd.img-${kver}" "${root}/initrd.img"

	# The OS: busybox init, rcS, DHCP, metal-phonehome.
	install -m 0755 "${work}/bin/metal-phonehome" "${root}/usr/sbin/metal-phonehome"
	install -m 0644 "${here}/small/inittab" "${root}/etc/inittab"
	install -m 0755 "${here}/small/rcS" "${root}/etc/init.d/rcS"
	install -m 0755 "${here}/small/phonehome" "${root}/etc/init.d/phonehome"
	install -m 0755 "${here}/small/udhcpc.script" "${root}/usr/share/udhcpc/default.script"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"${root}/etc/passwd"
	printf 'root:*:19000:0:99999:7:::\n' >"${root}/etc/shadow"
	chmod 600 "${root}/etc/shadow"
	printf 'root:x:0:\n' >"${root}/etc/group"
	printf 'metalforge\n' >"${root}/etc/hostname"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"${root}/etc/hosts"
	: >"${root}/etc/resolv.conf"
	printf 'PRETTY_NAME="metalforge small (busybox, Debian kernel %s)"\nNAME="metalforge small"\nID=metalforge-small\nID_LIKE=debian\nVERSION_ID=12\n' \
		"${kver}" >"${root}/etc/os-release"

	require_files "${root}" "boot/vmlinuz-*" "boot/initrd.img-*" sbin/init usr/sbin/metal-phonehome \
		"lib/modules/${kver}/modules.dep" "lib/modules/${kver}/kernel/fs/ext4/ext4.ko"
	pack small "${root}" "${out}" root
	finish small "${out}" debian 12-small '"machine"' "${kver}"
}

# --- debian / firewall ---------------------------------------------------------------------------

debian_packages=(systemd-sysv udev dbus iproute2 netbase openssh-server linux-image-amd64 initramfs-tools zstd kmod)
firewall_packages=(frr nftables)

build_debian() {
	local name="$1" work="$2" out="$3" kver="$4" features="$5"
	shift 5
	local packages=("$@")
	local root="${work}/root"
	local sources=()
	local s
	for s in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
		[[ -s "${s}" ]] && grep -qE '^(deb |URIs:)' "${s}" && grep -q 'debian' "${s}" && sources+=("${s}")
	done
	((${#sources[@]} > 0)) || die "no Debian apt sources found under /etc/apt"

	local excludes=()
	local p
	for p in usr/share/man usr/share/info usr/share/locale usr/share/doc usr/share/lintian \
		lib/modules/*/kernel/sound lib/modules/*/kernel/drivers/media lib/modules/*/kernel/drivers/net/wireless \
		lib/modules/*/kernel/drivers/bluetooth lib/modules/*/kernel/net/bluetooth lib/modules/*/kernel/drivers/staging \
		lib/modules/*/kernel/drivers/isdn lib/modules/*/kernel/drivers/iio lib/modules/*/kernel/drivers/gpu/drm/amd \
		lib/modules/*/kernel/drivers/gpu/drm/i915 lib/modules/*/kernel/drivers/gpu/drm/nouveau \
		lib/modules/*/kernel/drivers/gpu/drm/radeon; do
		excludes+=(--dpkgopt="path-exclude=/${p}/*" --dpkgopt="path-exclude=/usr/${p}/*")
	done
	excludes+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')

	export METALFORGE_IMAGE_ASSETS="${here}/debian" METALFORGE_PHONEHOME_BIN="${work}/bin/metal-phonehome"
	export METALFORGE_IMAGE_NAME="${name}"
	export METALFORGE_FIREWALL_ASSETS="${here}/firewall" METALFORGE_OSINIT_BIN="${work}/bin/metal-osinit"
	export METALFORGE_FIREWALL_CONTROLLER_BIN="${work}/bin/firewall-controller"
	log "mmdebstrap ${name}: ${packages[*]}"
	local packages_csv
	packages_csv="$(IFS=,; echo "${packages[*]}")"
	mmdebstrap --variant=minbase --mode=root --format=directory --components=main \
		--include="${packages_csv}" \
		--aptopt='Acquire::Languages "none"' \
		"${excludes[@]}" \
		--skip=essential/unlink \
		--setup-hook='mkdir -p "$1"/var/cache/apt/archives/ "$1"/etc/initramfs-tools/conf.d "$1"/usr/share/initramfs-tools/modules.d' \
		--setup-hook="sync-in ${debs} /var/cache/apt/archives/" \
		--setup-hook="upload ${here}/debian/initramfs.conf /etc/initramfs-tools/conf.d/metalforge" \
		--setup-hook="upload ${here}/debian/initramfs-modules /usr/share/initramfs-tools/modules.d/metalforge" \
		--customize-hook="sync-out /var/cache/apt/archives ${debs}" \
		--customize-hook="\"${here}/debian/customize.sh\" \"\$1\"" \
		bookworm "${root}" "${sources[@]}" >&2
	local real_kver
	real_kver="$(basename "$(ls -d "${root}"/lib/modules/*/ | head -n1)")"
	[[ "${real_kver}" == "${kver}" ]] || log "warning: image kernel ${real_kver}, expected ${kver}"
	require_files "${root}" "boot/vmlinuz-${real_kver}" "boot/initrd.img-${real_kver}" usr/sbin/metal-phonehome \
		etc/systemd/system/multi-user.target.wants/metal-phonehome.service vmlinuz initrd.img
	if [[ "${name}" == firewall ]]; then
		require_files "${root}" usr/local/bin/firewall-controller usr/sbin/metal-osinit \
			etc/systemd/system/multi-user.target.wants/firewall-controller.service \
			etc/systemd/system/multi-user.target.wants/metalforge-firewall.service \
			etc/systemd/system/multi-user.target.wants/frr.service
	fi
	! compgen -G "${root}/etc/ssh/ssh_host_*" >/dev/null || die "image carries SSH host keys"
	local want listing
	listing="$(lsinitramfs "${root}/boot/initrd.img-${real_kver}")"
	for want in virtio_blk.ko virtio_pci.ko ext4.ko; do
		grep -q "/${want}$" <<<"${listing}" || die "initrd lacks ${want}"
	done
	log "initrd $(($(stat -c %s "${root}/boot/initrd.img-${real_kver}") / 1024)) KiB, root $(du -sm "${root}" | cut -f1) MiB"
	pack "${name}" "${root}" "${out}"
	finish "${name}" "${out}" debian 12 "${features}" "${real_kver}"
}

# --- main ----------------------------------------------------------------------------------------

main() {
	(($# == 1)) || usage
	local name="$1"
	case "${name}" in
	small | debian | firewall) ;;
	*) usage ;;
	esac
	((EUID == 0)) || die "must run as root (mknod, chroot, file ownership)"
	local start=${SECONDS}

	case "${name}" in
	small) "${repo}/hack/deps.sh" zstd cpio kmod gzip ;;
	*) "${repo}/hack/deps.sh" zstd mmdebstrap kmod initramfs-tools-core ;;
	esac
	command -v go >/dev/null || die "go is not in PATH"
	mkdir -p "${debs}"
	# One build per image at a time (tests and people may start the same build together).
	exec 9>"${cache}/.lock-${name}"
	flock 9
	apt_ready

	local kver
	kver="$(kernel_version)"
	[[ -n "${kver}" ]] || die "cannot tell the kernel version (apt-cache depends linux-image-amd64)"

	# Build the binaries first: their hashes are part of the key.
	work="$(mktemp -d "${cache}/.build-${name}.XXXXXX")"
	if [[ -n "${METALFORGE_KEEP_WORK:-}" ]]; then
		trap 'log "work directory kept: ${work}"' EXIT
	else
		trap 'rm -rf "${work:-}"' EXIT
	fi
	mkdir -p "${work}/bin"

	local inputs=("${BASH_SOURCE[0]}" "${kver}")
	local kdeb bbdeb
	case "${name}" in
	small)
		build_go "${work}/bin" metal-phonehome metal-osinit
		kdeb="$(fetch_deb "linux-image-${kver}")"
		bbdeb="$(fetch_deb busybox-static)"
		inputs+=("${here}/small" "${work}/bin/metal-phonehome" "${work}/bin/metal-osinit" "$(basename "${kdeb}")"
			"$(basename "${bbdeb}")" "${small_modules[*]}")
		;;
	debian | firewall)
		build_go "${work}/bin" metal-phonehome
		local packages=("${debian_packages[@]}")
		local features='"machine"'
		inputs+=("${here}/debian" "${work}/bin/metal-phonehome")
		if [[ "${name}" == firewall ]]; then
			[[ -d "${repo}/cmd/firewall-controller" ]] || die "no ./cmd/firewall-controller to put into the firewall image"
			# -trimpath and no VCS stamp: the same sources give the same binary, so the key (the
			# binaries' content) changes only when the controller or metal-osinit really do.
			build_go "${work}/bin" metal-osinit firewall-controller
			packages+=("${firewall_packages[@]}")
			features='"firewall"'
			inputs+=("${here}/firewall" "${work}/bin/metal-osinit" "${work}/bin/firewall-controller")
		fi
		inputs+=("${packages[*]}")
		local p
		for p in "${packages[@]}"; do
			inputs+=("${p}=$(candidate "${p}")")
		done
		;;
	esac
	local out
	out="${cache}/${name}-$(key "${inputs[@]}")"
	if [[ -s "${out}/${name}.tar.zst" && -s "${out}/${name}.tar.zst.sha256" && -s "${out}/${name}.json" ]]; then
		log "${name} is up to date"
		printf '%s\n' "${out}"
		return
	fi

	local staging="${work}/out"
	mkdir -p "${staging}"
	case "${name}" in
	small) build_small "${work}" "${staging}" "${kver}" "${kdeb}" "${bbdeb}" ;;
	debian) build_debian debian "${work}" "${staging}" "${kver}" "${features}" "${packages[@]}" ;;
	firewall) build_debian firewall "${work}" "${staging}" "${kver}" "${features}" "${packages[@]}" ;;
	esac
	rm -rf "${out}"
	mv "${staging}" "${out}"
	# Keep the three newest builds of this image; older keys are dead inputs.
	ls -dt "${cache}/${name}"-*/ | tail -n +4 | xargs -r rm -rf
	log "${name} built in $((SECONDS - start)) s"
	printf '%s\n' "${out}"
}

main "$@"
