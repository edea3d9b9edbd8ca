// Command bench measures what the dingtalk handler costs in a real Caddy:
// it runs several Caddy configurations side by side under the same load of
// signed DingTalk callbacks and compares them with plain Caddy. See
// BENCHMARKS.md for what it measures, how, and the latest results.
//
//	go run ./bench                 # the comparison (about 2 minutes)
//	go run ./bench -memory         # memory per remembered msgId
//	go run ./bench -cards          # streamed answers as AI cards
//	go run ./bench -stream         # the Stream bridge against the same route over HTTP
//	go run ./bench -against <rev>  # the Go benchmarks against an older commit
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/internal/redistest"
)

// options are the command's flags.
type options struct {
	caddy    string
	conns    int
	warmup   time.Duration
	duration time.Duration
	rounds   int
	only     string
	pin      bool
	profile  string
	memory   bool
	stream   bool
	requests int64
	gobench  bool

	// -against: the Go benchmarks of this checkout against a commit's.
	against   string
	bench     string
	pkgs      string
	runs      int
	benchtime string

	cards           bool
	cardStreams     int
	cardTokens      int
	cardConcurrency int
}

func main() {
	var o options
	flag.StringVar(&o.caddy, "caddy", "", "the Caddy binary to measure (default: go build ./cmd/caddy into a temporary folder)")
	flag.IntVar(&o.conns, "conns", 16, "concurrent keep-alive connections of the load")
	flag.DurationVar(&o.warmup, "warmup", 250*time.Millisecond, "load sent before each measured period")
	flag.DurationVar(&o.duration, "duration", time.Second, "the measured period of each configuration in each round")
	flag.IntVar(&o.rounds, "rounds", 12, "how many times every configuration is measured, interleaved (ratios are medians of the rounds)")
	flag.StringVar(&o.only, "configs", "", "measure only these configurations, such as AB (default: all)")
	flag.BoolVar(&o.pin, "pin", false, "pin Caddy and the load generator to separate CPUs with taskset")
	flag.StringVar(&o.profile, "profile", "", "save CPU and heap profiles of each Caddy, taken in the last round, into this folder (such as bench/results)")
	flag.BoolVar(&o.memory, "memory", false, "measure Caddy's memory per remembered msgId instead")
	flag.BoolVar(&o.stream, "stream", false, "compare the dingtalk_stream bridge with the same route fed over HTTP instead")
	flag.Int64Var(&o.requests, "requests", 200_000, "with -memory: callbacks sent to each Caddy")
	flag.BoolVar(&o.gobench, "gobench", true, "after the comparison, run the Go benchmarks that BENCHMARKS.md's other targets are about (not with -caddy)")
	flag.StringVar(&o.against, "against", "", "compare the Go benchmarks with this commit's (any git revision) instead, in alternating runs")
	flag.StringVar(&o.bench, "bench", "ServeHTTPAccepted", "with -against: the benchmarks to run (go test's -bench)")
	flag.StringVar(&o.pkgs, "pkgs", "./caddymodule", "with -against: the packages whose benchmarks run, separated by commas")
	flag.IntVar(&o.runs, "runs", 10, "with -against: how many times each binary runs")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "with -against: go test's -benchtime (a time, for the parallel benchmarks: see BENCHMARKS.md)")
	flag.BoolVar(&o.cards, "cards", false, "measure streamed answers shown as AI cards instead (against a fake OpenAPI)")
	flag.IntVar(&o.cardStreams, "card-streams", 20, "with -cards: streamed answers per phase")
	flag.IntVar(&o.cardTokens, "card-tokens", 100, "with -cards: tokens per answer")
	flag.IntVar(&o.cardConcurrency, "card-concurrency", 8, "with -cards: answers at a time in the second phase (the first has 1)")
	flag.Parse()
	if o.conns < 1 || o.rounds < 1 || o.warmup < 0 || o.duration <= 0 || o.requests < 1 || o.runs < 1 || o.cardStreams < 1 || o.cardTokens < 1 || o.cardConcurrency < 1 {
		fmt.Fprintln(os.Stderr, "bench: -conns, -rounds, -duration, -requests, -runs and the -card-* counts must be positive")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A bound whatever happens; a default run takes about 2 minutes.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	do := run
	if o.against != "" {
		do = runAgainst
	}
	if err := do(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "caddy-dingtalk-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	bin := o.caddy
	if bin == "" {
		fmt.Fprintln(os.Stderr, "building ./cmd/caddy ...")
		if bin, err = buildCaddy(ctx, dir); err != nil {
			return err
		}
	} else if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	var caddyCPUs string
	if o.pin {
		if caddyCPUs, err = pinHarness(); err != nil {
			return err
		}
	}

	upstream, err := startPeer(upstreamAnswer, "")
	if err != nil {
		return err
	}
	defer upstream.Close()
	// The relay posts E's reply as the route answered it.
	webhook, err := startPeer(webhookAnswer, staticReply)
	if err != nil {
		return err
	}
	defer webhook.Close()
	env := environment{ctx: ctx, bin: bin, dir: dir, cpus: caddyCPUs, o: o,
		peers: peers{upstream: upstream.Addr, webhook: webhook.Addr, files: dir}, upstream: upstream, webhook: webhook}
	if !o.memory && !o.stream {
		// Like the tests, on a free loopback port; without redis-server,
		// the configurations that need it are skipped.
		redis, err := redistest.Run(dir)
		if err != nil {
			fmt.Printf("no redis-server (%v): the Redis configuration is skipped\n", err)
		} else {
			defer redis.Stop()
			env.peers.redis, env.redisPid = redis.Addr, redis.Pid()
		}
	}

	printHeader(ctx, bin, o, caddyCPUs)
	if o.memory {
		return runMemory(env)
	}
	if o.cards {
		return runCards(env)
	}
	if o.stream {
		return runStream(env)
	}
	if err := runComparison(env); err != nil {
		return err
	}
	if o.gobench && o.caddy == "" {
		return runGoBenchmarks(ctx)
	}
	return nil
}

// environment is what a mode of the harness runs with.
type environment struct {
	ctx      context.Context
	bin      string // the Caddy binary
	dir      string // temporary files
	cpus     string // taskset CPU list for Caddy, or ""
	o        options
	peers    peers
	upstream *peer
	webhook  *peer
	redisPid int // redis-server's process, 0 without one
}

// printHeader says what ran where, for BENCHMARKS.md.
func printHeader(ctx context.Context, bin string, o options, caddyCPUs string) {
	fmt.Printf("machine:  %s, %d CPUs, Linux %s, load average %s\n",
		cpuModel(), runtime.NumCPU(), readTrimmed("/proc/sys/kernel/osrelease"), loadAverage())
	fmt.Printf("go:       %s\ncaddy:    %s\n", runtime.Version(), caddyVersion(ctx, bin))
	pinning := "none (Caddy, the load generator and the peers share every CPU)"
	if caddyCPUs != "" {
		pinning = "Caddy on CPU " + caddyCPUs + ", the load generator and the peers on CPU 0"
	}
	fmt.Printf("load:     %d keep-alive connections, signed group text callbacks with unique msgIds\n", o.conns)
	fmt.Printf("pinning:  %s\n\n", pinning)
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	for line := range strings.Lines(readTrimmed("/proc/cpuinfo")) {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown CPU"
}

// loadAverage is the 1, 5 and 15 minute load averages.
func loadAverage() string {
	fields := strings.Fields(readTrimmed("/proc/loadavg"))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
