//go:build !linux

package main

import "os/exec"

// procCPUSeconds is unknown off Linux.
func procCPUSeconds(pid int) float64 { return -1 }

// procRSSMiB is unknown off Linux.
func procRSSMiB(pid int) (rss, peak float64) { return 0, 0 }

// setParentDeathSignal has no portable equivalent; the generator stops the server itself.
func setParentDeathSignal(cmd *exec.Cmd) {}
