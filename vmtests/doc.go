// Package vmtests holds the end-to-end tests that boot QEMU (TCG) virtual
// machines: the harness self-tests (go test ./vmtests/ -run Harness) and
// the install scenarios. The harness itself is in vmtests/vm (QEMU,
// console, SSH) and vmtests/testimg (cached test images and keys).
package vmtests
