// Package images holds the build of metalforge's machine images (build.sh: small, debian,
// firewall) and the tests that check them: the small image is installed onto a disk the way the
// hammer does it and booted in QEMU until it phones home.
package images
