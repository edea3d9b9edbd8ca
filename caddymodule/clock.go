package caddymodule

import "time"

// monotonicNanos is the clock the module times backends with, and the
// memory store's scale: nanoseconds on the monotonic clock since the process
// started. It costs half of time.Now, which reads the wall clock too.
func monotonicNanos() int64 { return int64(time.Since(clockStart)) }

// sinceClockStart puts t on monotonicNanos' scale. For a time that
// time.Now read, the difference is taken on the monotonic clock too; a
// test's fixed time has no monotonic reading and is taken by the wall clock.
func sinceClockStart(t time.Time) int64 { return int64(t.Sub(clockStart)) }

var clockStart = time.Now()
