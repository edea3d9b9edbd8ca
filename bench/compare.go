package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// measurement is one measured period of one configuration.
type measurement struct {
	loadResult
	caddyCPU   float64 // Caddy's CPU seconds in the measured period
	harnessCPU float64 // the load generator's and the peers' CPU seconds
	redisCPU   float64 // redis-server's CPU seconds, for a Redis configuration
}

// redisPer1k is redis-server's CPU seconds per 1000 2xx answers.
func (m measurement) redisPer1k() float64 { return m.redisCPU / float64(m.ok) * 1000 }

// cpuPer1k is Caddy's CPU seconds per 1000 2xx answers.
func (m measurement) cpuPer1k() float64 { return m.caddyCPU / float64(m.ok) * 1000 }

// harnessPer1k is the harness's CPU seconds per 1000 2xx answers.
func (m measurement) harnessPer1k() float64 { return m.harnessCPU / float64(m.ok) * 1000 }

func (m measurement) p50() float64 { return float64(percentile(m.latencies, 50)) }
func (m measurement) p99() float64 { return float64(percentile(m.latencies, 99)) }

// runComparison measures every configuration once per round, in an order
// that rotates from round to round, and prints the medians and the ratios.
func runComparison(env environment) error {
	chosen := slices.DeleteFunc(slices.Clone(configs), func(c config) bool {
		return env.o.only != "" && !strings.Contains(env.o.only, c.name) || c.redis && env.peers.redis == ""
	})
	procs := map[string]*caddyProc{}
	for _, c := range chosen {
		p, err := startCaddy(env.bin, env.dir, c.name, c.site(env.peers), env.cpus, env.o.profile != "")
		if err != nil {
			return err
		}
		defer p.Stop()
		procs[c.name] = p
	}

	fmt.Printf("%d rounds; in each, every configuration gets %v of warm-up and %v measured, in a rotating order\n",
		env.o.rounds, env.o.warmup, env.o.duration)
	results := map[string][]measurement{}
	var acked int64 // async configurations' acks: replies the webhook, which they share, must receive
	for round := range env.o.rounds {
		line := fmt.Sprintf("round %2d:", round+1)
		for i := range chosen {
			c := chosen[(i+round)%len(chosen)]
			m, err := measure(env, c, procs[c.name], round == env.o.rounds-1 && env.o.profile != "")
			if err != nil {
				return err
			}
			if err := env.ctx.Err(); err != nil {
				return fmt.Errorf("stopped: %v", err)
			}
			results[c.name] = append(results[c.name], m)
			line += fmt.Sprintf("  %s %6.0f", c.name, m.rate())
			if c.async {
				acked += m.acked
				if err := waitForReplies(env, c, acked, procs[c.name]); err != nil {
					return err
				}
			}
		}
		fmt.Println(line, " req/s")
	}
	peaks := map[string]int64{}
	for name, p := range procs {
		peaks[name], _ = memoryKiB(p.Pid(), "VmHWM")
	}
	fmt.Println()
	printTable(chosen, results, peaks)
	printRatios(results)
	fmt.Printf("\nload average at the end: %s\n", loadAverage())
	return nil
}

// measure sends the load to one configuration and reads Caddy's CPU time
// around the measured period; with profile, it also profiles Caddy then.
func measure(env environment, c config, p *caddyProc, profiling bool) (measurement, error) {
	hook := ""
	if c.async {
		hook = "http://" + env.peers.webhook + dingtalktest.WebhookPath + "?session=" + dingtalktest.NewSession()
	}
	span := env.o.warmup + env.o.duration + 2*time.Second
	cb, err := newCallback(p.Addr, hook, newSignTable(time.Now(), int(span.Milliseconds())))
	if err != nil {
		return measurement{}, err
	}
	var caddyCPU, harnessCPU, redisCPU [2]float64
	var marks int
	var cpuErr error
	waitProfile := func() error { return nil }
	mark := func() {
		if profiling && marks == 0 {
			waitProfile = profile(p, "cpu", env.o.duration, env.o.profile, c.name)
		}
		var err error
		if caddyCPU[marks], err = cpuSeconds(p.Pid()); err != nil {
			cpuErr = err
		}
		if harnessCPU[marks], err = cpuSeconds(os.Getpid()); err != nil {
			cpuErr = err
		}
		if c.redis {
			if redisCPU[marks], err = cpuSeconds(env.redisPid); err != nil {
				cpuErr = err
			}
		}
		marks++
	}
	upstream := env.upstream.Served()
	res := runLoad(env.ctx, p.Addr, cb, loadPlan{conns: env.o.conns, warmup: env.o.warmup, measure: env.o.duration, mark: mark,
		answer: []byte(c.answer)})
	if res.wrong > 0 {
		return measurement{}, fmt.Errorf("%s: %d answers were not the expected %s; the first: %s (see %s)", c.name, res.wrong, c.answer, res.wrongBody, p.Log)
	}
	if got := env.upstream.Served() - upstream; c.proxied && got != res.acked {
		return measurement{}, fmt.Errorf("%s: the upstream received %d callbacks for %d answers (%d connection errors, statuses %v; see %s)",
			c.name, got, res.acked, res.errors, res.others, p.Log)
	}
	if err := waitProfile(); err != nil {
		return measurement{}, err
	}
	if profiling {
		if err := profile(p, "heap", 0, env.o.profile, c.name)(); err != nil {
			return measurement{}, err
		}
	}
	if cpuErr != nil {
		return measurement{}, fmt.Errorf("%s: %v (did Caddy exit? see %s.out)", c.name, cpuErr, p.Log)
	}
	if res.ok == 0 {
		return measurement{}, fmt.Errorf("%s: no request succeeded (%d connection errors, statuses %v); see %s and %s.out",
			c.name, res.errors, res.others, p.Log, p.Log)
	}
	return measurement{loadResult: res, caddyCPU: caddyCPU[1] - caddyCPU[0], harnessCPU: harnessCPU[1] - harnessCPU[0],
		redisCPU: redisCPU[1] - redisCPU[0]}, nil
}

// waitForReplies waits until the webhook has received every reply of an
// async configuration, so that its background work does not run into the
// next measurement, and fails the run when an ack led to no reply (nothing
// arrives for 5 seconds), to more than one, or to another reply.
func waitForReplies(env environment, c config, want int64, p *caddyProc) error {
	last, quiet := env.webhook.Served(), time.Now()
	for env.webhook.Served() < want {
		if n := env.webhook.Served(); n != last {
			last, quiet = n, time.Now()
		}
		if time.Since(quiet) > 5*time.Second {
			return fmt.Errorf("%s: the webhook received %d replies for %d acks (see %s)", c.name, last, want, p.Log)
		}
		sleep(env.ctx, 20*time.Millisecond)
		if err := env.ctx.Err(); err != nil {
			return err
		}
	}
	if got := env.webhook.Served(); got != want {
		return fmt.Errorf("%s: the webhook received %d replies for %d acks (see %s)", c.name, got, want, p.Log)
	}
	return env.webhook.checkBodies(c.name + ": the webhook")
}

// printTable prints the medians of every configuration's rounds.
func printTable(chosen []config, results map[string][]measurement, peaks map[string]int64) {
	fmt.Println("medians of the rounds:")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "config\t\treq/s\tp50\tp99\tcaddy CPU-s/1k req\tharness CPU-s/1k req\tredis CPU-s/1k req\tcaddy peak RSS\tnot 2xx")
	for _, c := range chosen {
		runs := results[c.name]
		redis := "-"
		if c.redis {
			redis = fmt.Sprintf("%.3f", medianOf(runs, measurement.redisPer1k))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%.3f\t%.3f\t%s\t%.1f MiB\t%s\n", c.name, c.title,
			medianOf(runs, measurement.rate),
			ms(medianOf(runs, measurement.p50)), ms(medianOf(runs, measurement.p99)),
			medianOf(runs, measurement.cpuPer1k), medianOf(runs, measurement.harnessPer1k), redis,
			float64(peaks[c.name])/1024, failures(runs))
	}
	tw.Flush()
}

// failures sums the answers that were not 2xx and the connection errors.
func failures(runs []measurement) string {
	others, errors := map[int]int64{}, int64(0)
	for _, m := range runs {
		for status, n := range m.others {
			others[status] += n
		}
		errors += m.errors
	}
	var parts []string
	for _, status := range slices.Sorted(maps.Keys(others)) {
		parts = append(parts, fmt.Sprintf("%d× %d", others[status], status))
	}
	if errors > 0 {
		parts = append(parts, fmt.Sprintf("%d connection errors", errors))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, ", ")
}

// printRatios prints the ratios the targets are about: the median, and the
// quartiles, of the ratios measured in each round.
func printRatios(results map[string][]measurement) {
	fmt.Println("\nratios: median of the rounds' ratios (quartiles in parentheses)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	ratio := func(name, num, den string, f func(measurement) float64, target string, met func(float64) bool) {
		a, b := results[num], results[den]
		if len(a) == 0 || len(a) != len(b) {
			return
		}
		var rs []float64
		for i := range a {
			rs = append(rs, f(a[i])/f(b[i]))
		}
		v := ""
		if target != "" {
			v = verdict(target, met(median(rs)))
		}
		sorted := slices.Sorted(slices.Values(rs))
		fmt.Fprintf(tw, "  %s\t%.3f\t(%.3f-%.3f)\t%s\n", name, median(rs), percentile(sorted, 25), percentile(sorted, 75), v)
	}
	atLeast := func(x float64) func(float64) bool { return func(r float64) bool { return r >= x } }
	atMost := func(x float64) func(float64) bool { return func(r float64) bool { return r <= x } }
	ratio("B/A throughput", "B", "A", measurement.rate, ">= 0.97", atLeast(0.97))
	ratio("B/A p99 latency", "B", "A", measurement.p99, "<= 1.10", atMost(1.10))
	ratio("C/D throughput", "C", "D", measurement.rate, ">= 0.93", atLeast(0.93))
	ratio("E/C throughput", "E", "C", measurement.rate, "", nil)
	ratio("F/B throughput", "F", "B", measurement.rate, "", nil)
	ratio("G/B throughput", "G", "B", measurement.rate, ">= 0.90", atLeast(0.90))
	ratio("H/E throughput (acks)", "H", "E", measurement.rate, ">= 0.70", atLeast(0.70))
	ratio("I/B throughput", "I", "B", measurement.rate, "", nil)
	ratio("J/E throughput (acks)", "J", "E", measurement.rate, ">= 0.70", atLeast(0.70))
	// Caddy's CPU time per request does not drop when other programs take
	// the CPUs, as throughput does: the steadier view of the same cost.
	ratio("B/A caddy CPU per request", "B", "A", measurement.cpuPer1k, "<= 1.03", atMost(1.03))
	ratio("C/D caddy CPU per request", "C", "D", measurement.cpuPer1k, "<= 1.05", atMost(1.05))
	ratio("F/B caddy CPU per request", "F", "B", measurement.cpuPer1k, "", nil)
	ratio("G/B caddy CPU per request", "G", "B", measurement.cpuPer1k, "", nil)
	tw.Flush()
	for _, durable := range []string{"H", "J"} { // async with its jobs in a store
		runs := results[durable]
		if len(runs) == 0 {
			continue
		}
		p99 := medianOf(runs, measurement.p99)
		fmt.Printf("  %s ack p99 latency: %s (median of the rounds), %s\n", durable, ms(p99), verdict("< 10ms", p99 < float64(10*time.Millisecond)))
	}
}

func medianOf(runs []measurement, f func(measurement) float64) float64 {
	xs := make([]float64, len(runs))
	for i, m := range runs {
		xs[i] = f(m)
	}
	return median(xs)
}

// ms formats a latency in nanoseconds as milliseconds.
func ms(ns float64) string { return fmt.Sprintf("%.2fms", ns/float64(time.Millisecond)) }
