package main

import (
	"bufio"
	"strings"
	"testing"
)

func TestParseStatCPU(t *testing.T) {
	// A real line, with a command name holding a space and parentheses.
	stat := "4242 (caddy (x) y) S 1 4242 4242 0 -1 4194560 2143 0 0 0 1234 567 0 0 20 0 9 0 123456 1417216000 11000 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0"
	if got, err := parseStatCPU(stat); err != nil || got != 1234+567 {
		t.Errorf("parseStatCPU = %d, %v; want %d", got, err, 1234+567)
	}
	for _, bad := range []string{"", "4242 caddy S 1", "4242 (caddy) S 1 2 3", "4242 (caddy) S 1 4242 4242 0 -1 4194560 2143 0 0 0 x 567"} {
		if got, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q) = %d, want an error", bad, got)
		}
	}
}

func TestParseStatusKiB(t *testing.T) {
	status := "Name:\tcaddy\nVmPeak:\t 1500000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   48000 kB\nThreads:\t9\n"
	for field, want := range map[string]int64{"VmHWM": 51234, "VmRSS": 48000} {
		got, err := parseStatusKiB(bufio.NewScanner(strings.NewReader(status)), field)
		if err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", field, got, err, want)
		}
	}
	for _, field := range []string{"VmSwap", "Threads", "Vm"} {
		if got, err := parseStatusKiB(bufio.NewScanner(strings.NewReader(status)), field); err == nil {
			t.Errorf("%s = %d, want an error", field, got)
		}
	}
}
