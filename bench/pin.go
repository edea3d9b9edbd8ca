package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
)

// pinHarness moves every thread of this process (the load generator, the
// upstream and the webhook) to CPU 0 and returns the CPU list for Caddy:
// all the others. Threads started later inherit the affinity.
func pinHarness() (string, error) {
	n := runtime.NumCPU()
	if n < 2 {
		return "", errors.New("-pin needs at least 2 CPUs")
	}
	out, err := exec.Command("taskset", "--all-tasks", "--pid", "--cpu-list", "0", strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("-pin: taskset (util-linux): %v: %s", err, out)
	}
	runtime.GOMAXPROCS(1)
	if n == 2 {
		return "1", nil
	}
	return fmt.Sprintf("1-%d", n-1), nil
}
