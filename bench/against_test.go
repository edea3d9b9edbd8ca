package main

import (
	"reflect"
	"testing"
)

func TestParseBenchLine(t *testing.T) {
	for line, want := range map[string]struct {
		name    string
		metrics map[string]float64
	}{
		"BenchmarkServeHTTPAccepted/quiet-2   \t  245631\t      4821 ns/op\t 136.29 MB/s\t      5012 cpu-ns/op\t    1384 B/op\t       4 allocs/op": {
			"BenchmarkServeHTTPAccepted/quiet",
			map[string]float64{"ns/op": 4821, "MB/s": 136.29, "cpu-ns/op": 5012, "B/op": 1384, "allocs/op": 4},
		},
		"BenchmarkMemoryClaim \t 1000 \t 152.3 ns/op": {"BenchmarkMemoryClaim", map[string]float64{"ns/op": 152.3}},
		"BenchmarkParse-v2-8 100 1.5 ns/op":           {"BenchmarkParse-v2", map[string]float64{"ns/op": 1.5}},
		"goos: linux":                                 {},
		"BenchmarkX-2 --- FAIL":                       {},
		"BenchmarkX-2 10 fast ns/op":                  {},
		"PASS":                                        {},
	} {
		name, metrics, ok := parseBenchLine(line)
		if ok != (want.name != "") || name != want.name || ok && !reflect.DeepEqual(metrics, want.metrics) {
			t.Errorf("parseBenchLine(%q) = %q, %v, %v; want %q, %v", line, name, metrics, ok, want.name, want.metrics)
		}
	}
}
