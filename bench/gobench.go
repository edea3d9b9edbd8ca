package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// goBenchmarks are the Go benchmarks whose targets the harness checks
// after the comparison, so that one run gives every target of
// BENCHMARKS.md: the handler's allocations, and parallel de-duplication
// against serial.
const goBenchmarks = `^Benchmark(MemoryClaim|MemoryDuplicate)(Parallel)?$|^BenchmarkServeHTTPAccepted$/^quiet$`

// goBenchCount is how many times each runs; ratios are the median of the
// runs' ratios, each run's two benchmarks measured a second apart.
const goBenchCount = 3

// runGoBenchmarks runs goBenchmarks in ./caddymodule and prints their
// numbers and targets.
func runGoBenchmarks(ctx context.Context) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "running the Go benchmarks of the targets ...")
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", goBenchmarks, "-benchmem",
		"-count", fmt.Sprint(goBenchCount), "./caddymodule")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test -bench: %v\n%s", err, out)
	}
	r := benchRuns(out)

	fmt.Printf("\nGo benchmarks (go test -bench, %d runs each; medians, and the median of the runs' ratios):\n", goBenchCount)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	handler := r["BenchmarkServeHTTPAccepted/quiet"]
	allocs := median(values(handler["allocs/op"]))
	fmt.Fprintf(tw, "  handler (ServeHTTPAccepted/quiet)\t%.0f ns/op, %.0f cpu-ns/op, %.0f B/op\t\n",
		median(values(handler["ns/op"])), median(values(handler["cpu-ns/op"])), median(values(handler["B/op"])))
	fmt.Fprintf(tw, "  handler allocations\t%.0f\t%s\n", allocs, verdict("<= 4", allocs <= 4))
	for _, pair := range [][2]string{{"MemoryClaimParallel", "MemoryClaim"}, {"MemoryDuplicateParallel", "MemoryDuplicate"}} {
		parallel, serial := r["Benchmark"+pair[0]]["ns/op"], r["Benchmark"+pair[1]]["ns/op"]
		var ratios []float64
		for run, p := range parallel {
			if s, ok := serial[run]; ok && s > 0 {
				ratios = append(ratios, p/s)
			}
		}
		ratio := median(ratios)
		fmt.Fprintf(tw, "  %s/%s ns/op\t%.3f (%.1f / %.1f ns)\t%s\n", pair[0], pair[1], ratio,
			median(values(parallel)), median(values(serial)), verdict("<= 1.05", ratio <= 1.05))
	}
	return tw.Flush()
}

// benchRuns reads `go test -count n -bench` output: each benchmark's n
// results, numbered in the order they came.
func benchRuns(out []byte) benchResults {
	r := benchResults{}
	seen := map[string]int{}
	for line := range strings.Lines(string(out)) {
		name, _, ok := parseBenchLine(line)
		if !ok {
			continue
		}
		r.add(seen[name], []byte(line))
		seen[name]++
	}
	return r
}

// values are a run-indexed metric's values.
func values(runs map[int]float64) []float64 {
	var xs []float64
	for _, x := range runs {
		xs = append(xs, x)
	}
	return xs
}

// verdict says whether a target is met.
func verdict(target string, met bool) string {
	if met {
		return "target " + target + ": met"
	}
	return "target " + target + ": MISSED"
}
