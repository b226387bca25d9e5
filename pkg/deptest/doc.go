// Package deptest guards the shape of the repository with tests: which packages each binary may
// import (wire types stay light, partition components never pull in Kubernetes, nothing depends on
// the metal-stack project's modules) and that every package says what it is for.
package deptest
