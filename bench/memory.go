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

// memoryRuns are the stores -memory compares: a cap the load overflows, and
// one that holds everything it sends, with the replay guard (the default)
// and without.
var memoryRuns = []struct {
	name     string
	maxItems int
	guard    bool
}{
	{"cap 50000", 50_000, true},
	{"cap 200000", 200_000, true},
	{"cap 200000, replay_guard off", 200_000, false},
}

// memorySamples is how many times memory is read while the load is sent.
const memorySamples = 8

// memorySample is a Caddy's memory after some callbacks.
type memorySample struct {
	requests int64
	rssKiB   int64  // resident set (VmRSS)
	heap     uint64 // live heap right after a garbage collection
}

// runMemory sends the same callbacks to configuration C with each store in
// turn, reading Caddy's memory as it goes, and estimates the memory one
// accepted callback takes in the store.
func runMemory(env environment) error {
	fmt.Printf("memory: %d signed callbacks with unique msgIds to each Caddy (C: dingtalk + dingtalk_reply), each signed\n"+
		"for a millisecond of its own, as DingTalk's callbacks at usual rates are; the live heap is read after a\n"+
		"forced garbage collection\n\n", env.o.requests)
	results := make([][]memorySample, len(memoryRuns))
	for i, run := range memoryRuns {
		options := fmt.Sprintf(`
			store memory {
				max_entries %d
			}`, run.maxItems)
		if !run.guard {
			options += "\n\t\t\treplay_guard off"
		}
		samples, err := memoryRun(env, fmt.Sprintf("memory-%d", i+1), route(dingtalkHandler(options), reply))
		if err != nil {
			return err
		}
		results[i] = samples
	}

	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "callbacks\t"
	for _, run := range memoryRuns {
		header += "RSS, " + run.name + "\tlive heap\t"
	}
	fmt.Fprintln(tw, header)
	for j := range results[0] {
		row := fmt.Sprintf("%d\t", results[0][j].requests)
		for i := range memoryRuns {
			s := results[i][j]
			row += fmt.Sprintf("%.1f MiB\t%.1f MiB\t", float64(s.rssKiB)/1024, float64(s.heap)/(1<<20))
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()

	// A store holds a msgId per callback, and with the replay guard a
	// (timestamp, sign) pair too: two entries per callback.
	full, filling := results[0], results[2]
	perEntry := func(from, to memorySample, entries int64) string {
		n := float64(entries)
		return fmt.Sprintf("%.0f bytes of live heap, %.0f bytes of RSS",
			(float64(to.heap)-float64(from.heap))/n, float64(to.rssKiB-from.rssKiB)*1024/n)
	}
	// The memory store reserves its slots for the whole cap when it
	// starts: its live heap grows with the cap, not with the callbacks, and
	// the resident set with the slots the callbacks touch.
	small, large := results[0][0], results[1][0]
	fmt.Printf("\nlive heap reserved per entry of the cap (%s against %s, before any callback): %.0f bytes\n",
		memoryRuns[1].name, memoryRuns[0].name,
		(float64(large.heap)-float64(small.heap))/float64(memoryRuns[1].maxItems-memoryRuns[0].maxItems))
	last := filling[len(filling)-1]
	fmt.Printf("per remembered msgId (%s, from %d to %d callbacks): %s\n",
		memoryRuns[2].name, filling[2].requests, last.requests, perEntry(filling[2], last, last.requests-filling[2].requests))
	fmt.Printf("per entry of a full store (%s, whose %d entries are full from %d callbacks on): %s\n",
		memoryRuns[0].name, memoryRuns[0].maxItems, memoryRuns[0].maxItems/2, perEntry(full[0], full[len(full)-1], int64(memoryRuns[0].maxItems)))
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
	// Each callback has a millisecond of its own, up to now: all within
	// the window, and each (timestamp, sign) pair is used once.
	first := time.Now().Add(-time.Duration(env.o.requests+1) * time.Millisecond)
	cb, err := newCallback(p.Addr, "", newSignTable(first, int(env.o.requests)))
	if err != nil {
		return nil, err
	}
	cb.ownTimes = true
	before, err := readMemory(p)
	if err != nil {
		return nil, err
	}
	samples := []memorySample{before}
	step := env.o.requests / memorySamples
	var sent int64
	start := time.Now()
	for k := range memorySamples {
		n := step
		if k == memorySamples-1 {
			n = env.o.requests - sent
		}
		res := runLoad(env.ctx, p.Addr, cb, loadPlan{conns: env.o.conns, requests: n, answer: []byte(staticReply)})
		if err := env.ctx.Err(); err != nil {
			return nil, fmt.Errorf("stopped: %v", err)
		}
		if res.ok != n {
			return nil, fmt.Errorf("%s: %d of %d callbacks answered with the reply (%d other answers, the first %s; %d connection errors, statuses %v)",
				name, res.ok, n, res.wrong, res.wrongBody, res.errors, res.others)
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
