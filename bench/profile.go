package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// profile fetches a profile from a Caddy's admin endpoint (/debug/pprof/)
// into dir/<name>.<kind>.pprof in the background: a CPU profile over d, or
// with kind "heap", the heap now. Wait for it with the returned function.
func profile(p *caddyProc, kind string, d time.Duration, dir, name string) (wait func() error) {
	url := "http://" + p.Admin + "/debug/pprof/heap"
	if kind == "cpu" {
		url = fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.Admin, max(1, int(math.Round(d.Seconds()))))
	}
	file := filepath.Join(dir, name+"."+kind+".pprof")
	done := make(chan error, 1)
	go func() {
		client := http.Client{Timeout: d + 30*time.Second}
		resp, err := client.Get(url)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
			return
		}
		f, err := os.Create(file)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if closeErr := f.Close(); err == nil {
			err = closeErr
		}
		done <- err
	}()
	return func() error {
		if err := <-done; err != nil {
			return fmt.Errorf("%s profile of %s: %v", kind, name, err)
		}
		fmt.Printf("         %s profile of %s: %s\n", kind, name, file)
		return nil
	}
}
