package stream

import (
	"math/rand/v2"
	"time"
)

// Defaults of Backoff, as DingTalk's own SDKs wait.
const (
	DefaultBackoffBase  = time.Second
	DefaultBackoffMax   = time.Minute
	DefaultBackoffReset = 2 * time.Minute
)

// Backoff says how long to wait before the next connection attempt. Its
// zero value uses the defaults.
type Backoff struct {
	// Base is the wait after the first failure; each further failure in a
	// row doubles it. Default: 1s.
	Base time.Duration
	// Max caps the wait. Default: 60s.
	Max time.Duration
	// ResetAfter is how long a connection must have stayed up for the next
	// failure to count as the first again. Default: 2m.
	ResetAfter time.Duration
	// Rand returns a number in [0, 1) that jitters each wait, so that many
	// clients dropped at once do not come back at once. Nil means
	// math/rand/v2's Float64.
	Rand func() float64
}

// Delay returns the wait before attempt number failures (1 for the first
// failure in a row): Base doubled failures-1 times, capped at Max, of which
// the upper half is jittered (equal jitter: never less than half of it).
func (b Backoff) Delay(failures int) time.Duration {
	base, limit := b.base(), b.max()
	d := limit
	if shift := failures - 1; shift < 32 && base<<max(shift, 0) < limit {
		d = base << max(shift, 0)
	}
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	return d/2 + time.Duration(r()*float64(d/2))
}

func (b Backoff) base() time.Duration {
	if b.Base > 0 {
		return b.Base
	}
	return DefaultBackoffBase
}

func (b Backoff) max() time.Duration {
	if b.Max > 0 {
		return b.Max
	}
	return DefaultBackoffMax
}

func (b Backoff) resetAfter() time.Duration {
	if b.ResetAfter > 0 {
		return b.ResetAfter
	}
	return DefaultBackoffReset
}
