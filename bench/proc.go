package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is Linux's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat: 100 on every architecture Go supports.
const clockTicks = 100

// cpuSeconds is the CPU time (user + system) pid has used so far.
func cpuSeconds(pid int) (float64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	ticks, err := parseStatCPU(string(stat))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
	}
	return float64(ticks) / clockTicks, nil
}

// parseStatCPU returns utime+stime, in clock ticks, from the text of
// /proc/<pid>/stat. The command name (field 2) is in parentheses and may
// itself hold spaces and parentheses, so the fields are counted from the
// last ')'; utime and stime are fields 14 and 15.
func parseStatCPU(stat string) (int64, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("no command name")
	}
	fields := strings.Fields(stat[end+1:]) // fields[0] is field 3, the state
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("only %d fields after the command name", len(fields))
	}
	var total int64
	for _, i := range []int{utime, stime} {
		n, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("field %d: %v", i+3, err)
		}
		total += n
	}
	return total, nil
}

// memoryKiB reads a kB field of /proc/<pid>/status, such as VmRSS (the
// resident set now) or VmHWM (its peak).
func memoryKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseStatusKiB(bufio.NewScanner(f), field)
}

// parseStatusKiB finds "<field>:   1234 kB" among the lines of a
// /proc/<pid>/status file.
func parseStatusKiB(lines *bufio.Scanner, field string) (int64, error) {
	for lines.Scan() {
		name, value, ok := strings.Cut(lines.Text(), ":")
		if !ok || name != field {
			continue
		}
		number, unit, _ := strings.Cut(strings.TrimSpace(value), " ")
		if unit != "kB" {
			return 0, fmt.Errorf("%s: unexpected unit %q", field, unit)
		}
		return strconv.ParseInt(number, 10, 64)
	}
	if err := lines.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s line", field)
}
