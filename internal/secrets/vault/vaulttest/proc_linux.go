package vaulttest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the dev server exit if the test binary is killed (a go test
// timeout, say) instead of surviving as an orphan.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
