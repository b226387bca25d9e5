// Package images holds the build of metalforge's machine images (build.sh: small, debian,
// firewall) and the tests that check them: an image is installed onto a disk the way the hammer
// does it and booted in QEMU until it phones home; the firewall image also until FRR answers and
// firewall-controller has applied its base ruleset with the SNAT rule to the allocation's egress
// address.
package images
