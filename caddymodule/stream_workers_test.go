package caddymodule

import (
	"testing"
	"time"
)

// TestWorkersNeverWaitForABusyOne checks that a delivery starts while
// another is under way: the ack of a frame must not wait for anything.
func TestWorkersNeverWaitForABusyOne(t *testing.T) {
	w := newWorkers()
	defer w.close()
	release := make(chan struct{})
	defer close(release)
	started := make(chan string, 3)
	go func() { // as the frame's handler, which acks once run returns
		w.run(func() { started <- "busy"; <-release })
		w.run(func() { started <- "second" })
		w.run(func() { started <- "third" })
	}()
	deadline := time.After(5 * time.Second)
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case s := <-started:
			seen[s] = true
		case <-deadline:
			t.Fatalf("started %v while one delivery was busy; want all three", seen)
		}
	}
}
