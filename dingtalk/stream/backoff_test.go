package stream

import (
	"testing"
	"time"
)

func TestBackoffDoublesFromBaseToMaxWithEqualJitter(t *testing.T) {
	top := Backoff{Rand: func() float64 { return 1 }}
	bottom := Backoff{Rand: func() float64 { return 0 }}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60}
	for i, w := range want {
		w *= time.Second
		if got := top.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) with the largest jitter = %v, want %v", i+1, got, w)
		}
		if got := bottom.Delay(i + 1); got != w/2 {
			t.Errorf("Delay(%d) with the smallest jitter = %v, want %v", i+1, got, w/2)
		}
	}
	if got := top.Delay(1000); got != time.Minute {
		t.Errorf("Delay(1000) = %v, want the cap", got)
	}
	custom := Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond, Rand: func() float64 { return 1 }}
	if got := custom.Delay(4); got != 50*time.Millisecond {
		t.Errorf("custom Delay(4) = %v, want 50ms", got)
	}
}
