//go:build !unix

package localcluster

import "os/exec"

// detach is a no-op where process groups are not available.
func detach(*exec.Cmd) {}
