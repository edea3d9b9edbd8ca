package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// runAgainst compares the Go benchmarks of this checkout with those of an
// older commit, as BENCHMARKS.md's columns were measured: both test
// binaries are built once, then run alternately, runs times each, because
// the machine's speed drifts by ±20% over minutes and only runs close in
// time compare well. It prints each benchmark's medians and the median of
// the per-run ratios (this checkout over the commit).
func runAgainst(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "caddy-dingtalk-against-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	old := filepath.Join(dir, "old")
	if err := os.Mkdir(old, 0o755); err != nil {
		return err
	}
	// A copy of the commit's files, built in its own folder: the
	// repository's worktree and branches stay as they are.
	archive := exec.CommandContext(ctx, "sh", "-c", `git archive --format=tar "$1" | tar -x -C "$2"`, "sh", o.against, old)
	if out, err := archive.CombinedOutput(); err != nil {
		return fmt.Errorf("extracting %s: %v\n%s", o.against, err, out)
	}
	commit := o.against
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", o.against).Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}

	type side struct {
		name, src, bin string
	}
	var pkgs [][2]side // per package: this checkout, the commit
	for _, pkg := range strings.Split(o.pkgs, ",") {
		pair := [2]side{{name: "this checkout", src: "."}, {name: commit, src: old}}
		for i := range pair {
			pair[i].bin = filepath.Join(dir, fmt.Sprintf("%d-%s.test", i, strings.ReplaceAll(filepath.Clean(pkg), "/", "_")))
			fmt.Fprintf(os.Stderr, "building the tests of %s in %s ...\n", pkg, pair[i].name)
			build := exec.CommandContext(ctx, "go", "test", "-c", "-o", pair[i].bin, pkg)
			build.Dir = pair[i].src
			if out, err := build.CombinedOutput(); err != nil {
				return fmt.Errorf("building %s's tests in %s: %v\n%s", pkg, pair[i].name, err, out)
			}
			// A benchmark runs in its package's folder, as go test runs
			// it: its testdata is there.
			pair[i].src = filepath.Join(pair[i].src, pkg)
		}
		pkgs = append(pkgs, pair)
	}

	fmt.Printf("against %s: -bench %q, %d alternating runs of each binary, -benchtime %s\n", commit, o.bench, o.runs, o.benchtime)
	results := [2]benchResults{{}, {}}
	for run := range o.runs {
		for _, pair := range pkgs {
			for k := range 2 {
				i := (run + k) % 2 // who goes first alternates too
				cmd := exec.CommandContext(ctx, pair[i].bin, "-test.run", "^$", "-test.bench", o.bench,
					"-test.benchmem", "-test.benchtime", o.benchtime)
				cmd.Dir = pair[i].src
				out, err := cmd.CombinedOutput()
				if err != nil {
					return fmt.Errorf("run %d of %s's benchmarks in %s: %v\n%s", run+1, pair[i].src, pair[i].name, err, out)
				}
				results[i].add(run, out)
			}
		}
		fmt.Fprintf(os.Stderr, "run %d of %d done\n", run+1, o.runs)
	}
	printAgainst(results[0], results[1], commit)
	return nil
}

// benchResults are the values of each benchmark's metrics, per run:
// name, then unit (ns/op, cpu-ns/op, B/op, allocs/op), then run.
type benchResults map[string]map[string]map[int]float64

// add takes the benchmark lines of one run's output.
func (r benchResults) add(run int, out []byte) {
	lines := bufio.NewScanner(bytes.NewReader(out))
	for lines.Scan() {
		name, metrics, ok := parseBenchLine(lines.Text())
		if !ok {
			continue
		}
		if r[name] == nil {
			r[name] = map[string]map[int]float64{}
		}
		for unit, v := range metrics {
			if r[name][unit] == nil {
				r[name][unit] = map[int]float64{}
			}
			r[name][unit][run] = v
		}
	}
}

// parseBenchLine reads a line of `go test -bench` output such as
// "BenchmarkX/sub-2  1000  4821 ns/op  5012 cpu-ns/op  1384 B/op  4 allocs/op":
// the name without the GOMAXPROCS suffix, and each metric by its unit.
func parseBenchLine(line string) (string, map[string]float64, bool) {
	fields := strings.Fields(line)
	if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") || len(fields)%2 != 0 {
		return "", nil, false
	}
	if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
		return "", nil, false
	}
	name := fields[0]
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	metrics := map[string]float64{}
	for i := 2; i+1 < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return "", nil, false
		}
		metrics[fields[i+1]] = v
	}
	return name, metrics, true
}

// printAgainst prints, for every benchmark and metric both binaries
// reported, their medians and the median of the per-run ratios.
func printAgainst(now, old benchResults, commit string) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\nbenchmark\tmetric\tthis checkout\t%s\tratio (median of runs)\truns with a ratio below 1\n", commit)
	for _, name := range slices.Sorted(maps.Keys(now)) {
		if old[name] == nil {
			fmt.Fprintf(tw, "%s\t\t\t(not in %s)\t\t\n", name, commit)
			continue
		}
		for _, unit := range []string{"ns/op", "cpu-ns/op", "B/op", "allocs/op"} {
			a, b := now[name][unit], old[name][unit]
			if len(a) == 0 || len(b) == 0 {
				continue
			}
			var xs, ys, ratios []float64
			below := 0
			for run, x := range a {
				y, ok := b[run]
				if !ok {
					continue
				}
				xs, ys = append(xs, x), append(ys, y)
				if y != 0 {
					ratios = append(ratios, x/y)
					if x < y {
						below++
					}
				}
			}
			ratio := "-"
			if len(ratios) > 0 {
				ratio = fmt.Sprintf("%.3f", median(ratios))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d of %d\n", name, unit, number(median(xs)), number(median(ys)), ratio, below, len(ratios))
		}
	}
	tw.Flush()
}

// number formats a metric: whole numbers from 100 on, three digits below.
func number(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
