package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"
	"time"
)

// memoryCaps are the de-duplication entry caps -memory compares: one the
// load overflows and one that holds every msgId it sends.
var memoryCaps = []int{50_000, 200_000}

// memorySamples is how many times memory is read while the load is sent.
const memorySamples = 8

// memorySample is a Caddy's memory after some callbacks.
type memorySample struct {
	requests int64
	rssKiB   int64  // resident set (VmRSS)
	heap     uint64 // live heap right after a garbage collection
}

// runMemory sends the same callbacks to configuration C with each entry
// cap in turn, reading Caddy's memory as it goes, and estimates the memory
// one remembered msgId takes.
func runMemory(env environment) error {
	fmt.Printf("memory: %d signed callbacks with unique msgIds to each Caddy (C: dingtalk + dingtalk_reply), "+
		"de-duplication in the memory store; the live heap is read after a forced garbage collection\n\n", env.o.requests)
	results := make([][]memorySample, len(memoryCaps))
	for i, limit := range memoryCaps {
		site := route(dingtalkHandler(fmt.Sprintf(`
			store memory {
				max_entries %d
			}`, limit)), reply)
		samples, err := memoryRun(env, fmt.Sprintf("memory-%d", limit), site)
		if err != nil {
			return err
		}
		results[i] = samples
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "callbacks\t"
	for _, limit := range memoryCaps {
		header += fmt.Sprintf("RSS, cap %d\tlive heap, cap %d\t", limit, limit)
	}
	fmt.Fprintln(tw, header)
	for j := range results[0] {
		row := fmt.Sprintf("%d\t", results[0][j].requests)
		for i := range memoryCaps {
			s := results[i][j]
			row += fmt.Sprintf("%.1f MiB\t%.1f MiB\t", float64(s.rssKiB)/1024, float64(s.heap)/(1<<20))
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()

	small, large := results[0][len(results[0])-1], results[1][len(results[1])-1]
	extra := float64(min(large.requests, int64(memoryCaps[1])) - int64(memoryCaps[0]))
	fmt.Printf("\nper remembered msgId, from the difference between the caps after %d callbacks:\n", large.requests)
	fmt.Printf("  live heap %.0f bytes, RSS %.0f bytes\n",
		(float64(large.heap)-float64(small.heap))/extra, float64(large.rssKiB-small.rssKiB)*1024/extra)
	return nil
}

// memoryRun starts a Caddy for site, sends it env.o.requests callbacks and
// samples its memory before and while it does.
func memoryRun(env environment, name, site string) ([]memorySample, error) {
	p, err := startCaddy(env.bin, env.dir, name, site, env.cpus, true)
	if err != nil {
		return nil, err
	}
	defer p.Stop()
	cb, err := newCallback(p.Addr, "")
	if err != nil {
		return nil, err
	}
	first, err := readMemory(p)
	if err != nil {
		return nil, err
	}
	samples := []memorySample{first}
	step := env.o.requests / memorySamples
	var sent int64
	start := time.Now()
	for k := range memorySamples {
		n := step
		if k == memorySamples-1 {
			n = env.o.requests - sent
		}
		res := runLoad(env.ctx, p.Addr, cb, loadPlan{conns: env.o.conns, requests: n})
		if err := env.ctx.Err(); err != nil {
			return nil, fmt.Errorf("stopped: %v", err)
		}
		if res.ok != n {
			return nil, fmt.Errorf("%s: %d of %d callbacks accepted (%d connection errors, statuses %v)", name, res.ok, n, res.errors, res.others)
		}
		sent += n
		s, err := readMemory(p)
		if err != nil {
			return nil, err
		}
		s.requests = sent
		samples = append(samples, s)
	}
	peak, _ := memoryKiB(p.Pid(), "VmHWM")
	fmt.Printf("%s: %d callbacks in %v, peak RSS %.1f MiB\n", name, sent, time.Since(start).Round(time.Millisecond), float64(peak)/1024)
	return samples, nil
}

// readMemory collects Caddy's garbage through its admin endpoint, then
// reads its live heap (expvar's memstats) and its resident set.
func readMemory(p *caddyProc) (memorySample, error) {
	client := http.Client{Timeout: 30 * time.Second}
	get := func(path string) ([]byte, error) {
		resp, err := client.Get("http://" + p.Admin + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
		}
		return body, err
	}
	if _, err := get("/debug/pprof/heap?gc=1"); err != nil {
		return memorySample{}, err
	}
	vars, err := get("/debug/vars")
	if err != nil {
		return memorySample{}, err
	}
	var expvars struct {
		MemStats struct{ HeapAlloc uint64 } `json:"memstats"`
	}
	if err := json.Unmarshal(vars, &expvars); err != nil {
		return memorySample{}, fmt.Errorf("/debug/vars: %v", err)
	}
	rss, err := memoryKiB(p.Pid(), "VmRSS")
	return memorySample{rssKiB: rss, heap: expvars.MemStats.HeapAlloc}, err
}
