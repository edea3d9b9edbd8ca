package caddymodule

import "time"

// monotonicNanos is the clock the module times callbacks and expires keys
// with: nanoseconds on the monotonic clock since the process started. It
// costs half of time.Now, which reads the wall clock too.
func monotonicNanos() int64 { return int64(time.Since(clockStart)) }

var clockStart = time.Now()
