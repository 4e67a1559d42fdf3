// Command pause is the sandbox ("infra") container of every pod on the test node: it holds the
// pod's namespaces open, reaps the orphans it inherits as PID 1, and exits on SIGTERM/SIGINT.
// It is built here because the upstream pause image cannot be pulled where no registry is
// reachable; it does what registry.k8s.io/pause does, in Go instead of C.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
