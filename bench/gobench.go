package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// goBenchmarks are the Go benchmarks whose targets the harness checks
// after the comparison, so that one run gives every target of
// BENCHMARKS.md: the handler's allocations, and parallel de-duplication
// against serial, beside the floor under parallel inserts on this
// machine (SharedLine).
const goBenchmarks = `^Benchmark(MemoryClaim|MemoryDuplicate|SharedLine)(Parallel)?$|^BenchmarkServeHTTPAccepted$/^quiet$`

// goBenchCount is how many times each runs; ratios are the median of the
// runs' ratios. The runs take turns, each running every benchmark once, so
// that a parallel benchmark and its serial twin are measured a second
// apart: runs minutes apart compare badly on a shared machine (the
// parallel ones pay most when the other engineers' work takes a core).
const goBenchCount = 5

// runGoBenchmarks runs goBenchmarks in ./caddymodule and prints their
// numbers and targets.
func runGoBenchmarks(ctx context.Context) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return err
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	dir, err := os.MkdirTemp("", "caddy-dingtalk-gobench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "caddymodule.test")
	fmt.Fprintln(os.Stderr, "running the Go benchmarks of the targets ...")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "./caddymodule")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the benchmarks: %v\n%s", err, out)
	}
	r := benchResults{}
	for run := range goBenchCount {
		cmd := exec.CommandContext(ctx, bin, "-test.run", "^$", "-test.bench", goBenchmarks, "-test.benchmem")
		cmd.Dir = filepath.Join(root, "caddymodule") // where go test runs it: its testdata is there
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("run %d of the Go benchmarks: %v\n%s", run+1, err, out)
		}
		r.add(run, out)
	}

	fmt.Printf("\nGo benchmarks (go test -bench, %d runs each; medians, and the median of the runs' ratios):\n", goBenchCount)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	handler := r["BenchmarkServeHTTPAccepted/quiet"]
	allocs := median(values(handler["allocs/op"]))
	fmt.Fprintf(tw, "  handler (ServeHTTPAccepted/quiet)\t%.0f ns/op, %.0f cpu-ns/op, %.0f B/op\t\n",
		median(values(handler["ns/op"])), median(values(handler["cpu-ns/op"])), median(values(handler["B/op"])))
	fmt.Fprintf(tw, "  handler allocations\t%.0f\t%s\n", allocs, verdict("<= 4", allocs <= 4))
	for _, pair := range [][2]string{{"MemoryClaimParallel", "MemoryClaim"}, {"MemoryDuplicateParallel", "MemoryDuplicate"}, {"SharedLineParallel", "SharedLine"}} {
		parallel, serial := r["Benchmark"+pair[0]]["ns/op"], r["Benchmark"+pair[1]]["ns/op"]
		var ratios []float64
		for run, p := range parallel {
			if s, ok := serial[run]; ok && s > 0 {
				ratios = append(ratios, p/s)
			}
		}
		if len(ratios) == 0 {
			return fmt.Errorf("the Go benchmarks gave no %s or %s", pair[0], pair[1])
		}
		ratio := median(ratios)
		target := verdict("<= 1.05", ratio <= 1.05)
		if pair[1] == "SharedLine" {
			target = "the floor under MemoryClaim's ratio, no target"
		}
		fmt.Fprintf(tw, "  %s/%s ns/op\t%.3f (runs %.2f-%.2f; %.1f / %.1f ns)\t%s\n", pair[0], pair[1], ratio,
			slices.Min(ratios), slices.Max(ratios), median(values(parallel)), median(values(serial)), target)
		// Information: CPU time per operation, both cores' together. Above
		// 1, the cores spend time on what they share (cache lines moving
		// between them), which the wall-time ratio hides while the second
		// core is free and shows when it is not.
		cpuP, cpuS := median(values(r["Benchmark"+pair[0]]["cpu-ns/op"])), median(values(r["Benchmark"+pair[1]]["cpu-ns/op"]))
		fmt.Fprintf(tw, "  %s/%s cpu-ns/op\t%.3f (%.1f / %.1f ns)\t\n", pair[0], pair[1], cpuP/cpuS, cpuP, cpuS)
	}
	return tw.Flush()
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
