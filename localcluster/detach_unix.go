//go:build unix

package localcluster

import (
	"os/exec"
	"syscall"
)

// detach puts a worker process in a process group of its own, so that a
// Ctrl-C at the terminal reaches only `ringtrain train`, which then has the
// ring checkpoint before it stops the workers.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }
