#!/usr/bin/env bash
# deps.sh installs the Debian packages the build and the tests need, if they are
# missing. Idempotent and non-interactive: safe to run on every `make test` and in
# CI (root, CI=true, no stdin, fresh Debian 12).
#
# Usage: hack/deps.sh [package ...]
#   Without arguments it installs the default set below.
#
# It runs `apt-get update` at most once, and only when something is missing. It
# prints nothing on success; on failure it prints apt's output to stderr and exits
# non-zero. Not root: it uses `sudo -n` when available, else fails with a message.
set -euo pipefail

default_packages=(protobuf-compiler postgresql)

if (($# > 0)); then
	packages=("$@")
else
	packages=("${default_packages[@]}")
fi

# installed reports whether dpkg has the package fully installed. `dpkg -s`
# alone succeeds for removed packages whose config files remain, so read the
# status line too.
installed() {
	local status
	status="$(dpkg -s "$1" 2>/dev/null | sed -n 's/^Status: //p')" || return 1
	[[ "${status}" == "install ok installed" ]]
}

missing=()
for pkg in "${packages[@]}"; do
	if ! installed "${pkg}"; then
		missing+=("${pkg}")
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi

sudo=()
if ((EUID != 0)); then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo=(sudo -n)
	else
		echo "hack/deps.sh: missing packages: ${missing[*]}; run as root (or with passwordless sudo) to install them" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 -q)

log="$(mktemp "${TMPDIR:-/tmp}/metalforge-deps.XXXXXX")"
# Packages such as frr and lldpd would start daemons on the host when installed; the tests start
# their own inside namespaces. A policy-rc.d that denies every start keeps the host quiet.
policy=/usr/sbin/policy-rc.d
own_policy=false
if [[ ! -e "${policy}" ]]; then
	printf '#!/bin/sh\n# metalforge hack/deps.sh: no service starts while installing\nexit 101\n' | "${sudo[@]}" tee "${policy}" >/dev/null
	"${sudo[@]}" chmod 0755 "${policy}"
	own_policy=true
fi
trap 'rm -f "${log}"; if ${own_policy}; then "${sudo[@]}" rm -f "${policy}"; fi' EXIT

run() {
	if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$@" >>"${log}" 2>&1 </dev/null; then
		echo "hack/deps.sh: failed: $*" >&2
		cat "${log}" >&2
		exit 1
	fi
}

run apt-get "${apt_opts[@]}" update
run apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"

# Verify: a package name apt resolved to something else (a virtual package, a
# typo that matched a regex) must not pass silently.
for pkg in "${missing[@]}"; do
	if ! installed "${pkg}"; then
		echo "hack/deps.sh: ${pkg} is still not installed after apt-get install" >&2
		cat "${log}" >&2
		exit 1
	fi
done
